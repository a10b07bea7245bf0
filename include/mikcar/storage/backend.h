// `StorageBackend`: the interface an object store implements (file, memory, or an embedder's;
// S3, GCS and Azure later).
//
// The storage service validates every argument before calling a backend: paths follow SPEC §4.3
// (1-1024 bytes, no NUL, no leading '/', no ".." segment), ranges lie inside the object.
// Backends translate native errors into mikcar::Error at their edge and never pick HTTP
// statuses. All methods may be called concurrently from any I/O thread and must not block it.
//
// Bodies move as `BodyStream`s in bounded chunks, both ways: a backend never needs a whole object
// in memory (the memory backend is the exception by nature).
#pragma once

#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "mikcar/error.h"
#include "mikcar/http.h"

namespace mikcar::storage {

template <typename T>
using Task = boost::asio::awaitable<Result<T>>;

using Metadata =
    std::vector<std::pair<std::string, std::string>>;  // user metadata, names lower-case

struct ObjectInfo {
  std::string path;
  uint64_t size = 0;
  std::chrono::system_clock::time_point modified;
  std::string etag;          // quoted, e.g. "\"9e107d9d372bb6826bd81d3542a419d6\""
  std::string content_type;  // never empty
  Metadata metadata;
};

struct PutOptions {
  std::string content_type = "application/octet-stream";
  Metadata metadata;
  // Conditions on the current object, as If-Match / If-None-Match lists ("*" or quoted ETags):
  // if_match needs an existing object it names; if_none_match fails when it names the existing
  // object ("*": create only).
  std::optional<std::string> if_match;
  std::optional<std::string> if_none_match;
  std::optional<std::string> md5;  // expected MD5 (16 raw bytes) of the whole body
  uint64_t max_size = 0;           // refuse bodies above this many bytes (0 = no limit)
};

struct ByteRange {
  uint64_t offset = 0;
  uint64_t length = 0;
};

// A Range header before the object size is known: `bytes=first-last`, `first-`, or `-suffix`.
struct RangeSpec {
  std::optional<uint64_t> first;  // nullopt: the last `suffix` bytes
  std::optional<uint64_t> last;   // inclusive; nullopt: to the end
  uint64_t suffix = 0;
};

// An open object: its description and its bytes, the whole object or `range` of it. When the
// requested range lies outside the object, `unsatisfiable` is set and `body` is empty.
struct Object {
  ObjectInfo info;
  std::optional<ByteRange> range;
  bool unsatisfiable = false;
  std::shared_ptr<BodyStream> body;
};

struct ListOptions {
  std::string prefix;       // plain string prefix ("" = everything)
  std::string start_after;  // exclusive start key ("" = from the start)
  std::string delimiter;    // "" = flat listing; else group keys into common prefixes
  size_t limit = 1000;
};

struct ListPage {
  std::vector<ObjectInfo> objects;           // ascending byte order of path
  std::vector<std::string> common_prefixes;  // each ends with the delimiter
  std::optional<std::string> next;           // pass as start_after to continue; nullopt when done
};

enum class PresignMethod { kGet, kPut };

// The part of an object of `size` bytes that `spec` asks for; nullopt when none of it exists.
inline std::optional<ByteRange> ResolveRange(const RangeSpec& spec, uint64_t size) {
  if (!spec.first) {
    if (spec.suffix == 0 || size == 0) return std::nullopt;
    uint64_t length = spec.suffix < size ? spec.suffix : size;
    return ByteRange{size - length, length};
  }
  if (*spec.first >= size) return std::nullopt;
  uint64_t last = spec.last && *spec.last < size - 1 ? *spec.last : size - 1;
  return ByteRange{*spec.first, last - *spec.first + 1};
}

class StorageBackend {
 public:
  virtual ~StorageBackend() = default;

  // Short name for logs and /health/ready, e.g. "file".
  virtual std::string name() const = 0;

  // Stores the whole body atomically: readers see the old or the new object, never a part; a
  // failure (or a crash) leaves the old object. PRECONDITION_FAILED when if_match/if_none_match
  // is not met; BAD_DIGEST when md5 does not match; PAYLOAD_TOO_LARGE above max_size; the body
  // stream's own error when it fails.
  virtual Task<ObjectInfo> Put(std::string path, PutOptions options, BodyStream& body) = 0;
  // Opens the object, or the requested range of it (resolved against its size with
  // ResolveRange()). NOT_FOUND when absent. The info and the bytes are of one version even while
  // writers replace the object.
  virtual Task<Object> Get(std::string path, std::optional<RangeSpec> range) = 0;
  // NOT_FOUND when absent.
  virtual Task<ObjectInfo> Head(std::string path) = 0;
  // NOT_FOUND when absent.
  virtual Task<void> Delete(std::string path) = 0;
  virtual Task<ListPage> List(ListOptions options) = 0;
  // Server-side copy with content type and metadata; the new object's info. NOT_FOUND when
  // `from` is absent.
  virtual Task<ObjectInfo> Copy(std::string from, std::string to) = 0;
  // A native presigned URL (cloud stores). The default, an empty string, means the backend has
  // none and the service issues a mikcar URL signed with its own key.
  virtual Task<std::string> Presign(std::string path, PresignMethod method,
                                    std::chrono::system_clock::time_point expires) {
    (void)path, (void)method, (void)expires;
    co_return std::string();
  }
  // Readiness: success when the store answers.
  virtual Task<void> Ready() = 0;
  // Called once at shutdown, after the last request: finish background work.
  virtual void Close() {}
};

}  // namespace mikcar::storage
