// The storage under the embedded queue: a few ordered byte-keyed tables with transactions.
//
// The queue's semantics live once, in embedded_queue.cc, on top of this interface; `memory://`
// (std::map under a mutex) and `file://` (LMDB, group-committed) differ only in the store, so
// they cannot drift apart. Views returned by Get/Seek are valid until the next Put/Del in the
// same transaction.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "mikcar/error.h"

namespace mikcar::queue::embedded {

enum class Table {
  kReady,        // queue key | 0 | be64 due ms | be64 seq → message record
  kLeases,       // queue key | 0 | id → be64 lease expiry ms | message record
  kLeaseExpiry,  // be64 lease expiry ms | queue key | 0 | id → ""
  kCounts,       // queue key → u64 pending (ready + delayed) | u64 leased
  kDedup,        // queue key | 0 | dedup id → be64 expiry ms | message id
  kDedupExpiry,  // be64 expiry ms | queue key | 0 | dedup id → ""
  kGroups,       // topic | 0 | group → ""
};
inline constexpr int kTableCount = 7;

class Txn {
 public:
  virtual ~Txn() = default;
  virtual Result<std::optional<std::string_view>> Get(Table table, std::string_view key) = 0;
  // The first entry whose key is >= `from`.
  virtual Result<std::optional<std::pair<std::string_view, std::string_view>>> Seek(
      Table table, std::string_view from) = 0;
  // Writes fail only on storage errors (BACKEND_ERROR, or UNAVAILABLE when the disk is full).
  virtual Result<void> Put(Table table, std::string_view key, std::string_view value) = 0;
  virtual Result<void> Del(Table table, std::string_view key) = 0;
  // A number greater than any this store handed out before, restarts included.
  virtual uint64_t NextSeq() = 0;
};

class Store {
 public:
  virtual ~Store() = default;
  virtual std::string name() const = 0;
  // Runs `fn` in a write transaction, committed (durably, for durable stores) before the
  // awaitable completes. `fn` may run more than once (retried batch) and must leave its outputs
  // as of its last run; an error other than BACKEND_ERROR/UNAVAILABLE must come before any write.
  virtual boost::asio::awaitable<Result<void>> Write(std::function<Result<void>(Txn&)> fn) = 0;
  // Runs `fn` on a read-only snapshot, on the calling thread, without waiting for writers.
  virtual Result<void> Read(const std::function<Result<void>(Txn&)>& fn) = 0;
  // A task the store runs about every `period` in a write transaction of its own, when it can
  // (the LMDB writer thread between batches). Stores without one rely on the queue doing the
  // same work lazily. Set before the first write.
  virtual void SetPeriodic(std::chrono::milliseconds period, std::function<bool(Txn&)> task) {
    (void)period;
    (void)task;
  }
  virtual void Close() {}
};

}  // namespace mikcar::queue::embedded
