// `KvBackend`: the interface a key-value store implements (memory, LMDB, Redis, or an embedder's).
//
// The KV service validates every argument before calling a backend: keys are 1–1024 bytes of
// UTF-8, TTLs are positive. Backends translate native errors into mikcar::Error at their edge
// and never pick HTTP statuses. All methods may be called concurrently from any I/O thread and
// must not block it (blocking work goes to a worker thread and is co_awaited).
//
// Semantics are Redis's (SPEC §3.3): expired keys are invisible to every method at once; every
// write gives the key a new version, strictly greater than any version it had before (0 means
// "absent"); a plain set clears the TTL unless keep_ttl.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "mikcar/error.h"

namespace mikcar::kv {

template <typename T>
using Task = boost::asio::awaitable<Result<T>>;

struct Entry {
  std::string value;
  std::string content_type;  // as given at set time; empty if none
  uint64_t version = 0;
  int64_t expires_at_ms = 0;  // unix ms; 0 = no TTL
};

struct SetOptions {
  int64_t ttl_ms = 0;                  // > 0 sets a TTL; 0 = no TTL (cleared unless keep_ttl)
  bool keep_ttl = false;               // keep the existing TTL
  bool only_if_absent = false;         // NX
  bool only_if_present = false;        // XX
  std::optional<uint64_t> if_version;  // compare-and-swap on the current version
  std::string content_type;
};

struct KeysPage {
  std::vector<std::string> keys;      // ascending byte order
  std::optional<std::string> cursor;  // pass back to continue; nullopt when done
};

class KvBackend {
 public:
  virtual ~KvBackend() = default;

  // Short name for logs and /health/ready, e.g. "lmdb".
  virtual std::string name() const = 0;

  // NOT_FOUND when absent or expired.
  virtual Task<Entry> Get(std::string key) = 0;
  // One snapshot; nullopt for absent keys; same order as `keys`.
  virtual Task<std::vector<std::optional<Entry>>> GetMany(std::vector<std::string> keys) = 0;
  // Returns the new version. PRECONDITION_FAILED when NX/XX/if_version is not met.
  virtual Task<uint64_t> Set(std::string key, std::string value, SetOptions options) = 0;
  // All or nothing, in one transaction. ttl_ms > 0 applies to every key; 0 clears TTLs.
  virtual Task<void> SetMany(std::vector<std::pair<std::string, std::string>> items,
                             int64_t ttl_ms) = 0;
  // true if a live key was deleted. PRECONDITION_FAILED when if_version is given and differs
  // (an absent key has version 0).
  virtual Task<bool> Delete(std::string key, std::optional<uint64_t> if_version) = 0;
  // Number of live keys deleted, atomically.
  virtual Task<uint64_t> DeleteMany(std::vector<std::string> keys) = 0;
  // Adds `by` to the base-10 i64 value (missing = 0), keeping the TTL. NOT_AN_INTEGER, OVERFLOW.
  virtual Task<int64_t> Increment(std::string key, int64_t by) = 0;
  // Expiry in unix ms: nullopt if absent, 0 if no TTL.
  virtual Task<std::optional<int64_t>> ExpiresAt(std::string key) = 0;
  // Sets the TTL of a live key (ttl_ms <= 0 deletes it). false if absent.
  virtual Task<bool> Expire(std::string key, int64_t ttl_ms) = 0;
  // Removes the TTL of a live key. false if absent.
  virtual Task<bool> Persist(std::string key) = 0;
  // Current version, 0 if absent.
  virtual Task<uint64_t> Version(std::string key) = 0;
  // Live keys matching the Redis glob `pattern` (anchored), after `cursor`, at most `limit`.
  // May return fewer than `limit` with a cursor when it has examined many non-matching keys.
  virtual Task<KeysPage> Keys(std::string pattern, std::string cursor, size_t limit) = 0;

  // Readiness: the store answers.
  virtual Task<void> Ping() = 0;
  // Flush and close; called once at shutdown after the last request.
  virtual void Close() {}
};

}  // namespace mikcar::kv
