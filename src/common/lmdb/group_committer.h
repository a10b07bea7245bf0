// An LMDB environment with one writer thread that group-commits.
//
// Reads run on the caller's thread in a short read-only transaction (LMDB readers never wait for
// the writer). Writes are closures queued to the writer thread: everything queued while a commit
// is in flight shares the next transaction and its fsync. A closure validates before it writes, so
// a refused write changes nothing and shares the batch safely; an LMDB failure aborts the batch. A
// write's awaitable completes only after the commit is on disk, so a 200 built on it survives kill
// -9 and power loss. Commits are pipelined: a commit fsyncs its data, and its meta page reaches the
// disk with the next commit's fsync, so under load each batch costs one fsync, not LMDB's usual
// two. (Readers may see a commit a moment before it is durable, as with LMDB's own ordering.)
//
// The map grows on MDB_MAP_FULL (the batch is retried after the resize). An optional periodic
// task (the TTL sweeper) runs on the writer thread between batches. Thread-safe.
#pragma once

#include <lmdb.h>

#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/async.h"
#include "mikcar/error.h"

namespace mikcar::lmdb {

// Translates an LMDB return code into an Error naming the operation.
Error LmdbError(int rc, std::string_view what);

class GroupCommitter {
 public:
  // `dbs` are the named databases to open (created if missing); Dbi(i) returns the i-th.
  static Result<std::unique_ptr<GroupCommitter>> Open(const std::string& dir,
                                                      const std::vector<std::string>& dbs);
  ~GroupCommitter();

  MDB_dbi Dbi(size_t i) const { return dbis_[i]; }

  // Runs `fn(txn)` in a read-only transaction on this thread. `fn` must not suspend.
  template <typename Fn>
  auto Read(Fn&& fn) -> decltype(fn(static_cast<MDB_txn*>(nullptr))) {
    std::shared_lock lock(resize_mu_);
    MDB_txn* txn = nullptr;
    if (int rc = mdb_txn_begin(env_, nullptr, MDB_RDONLY, &txn); rc != 0) {
      return Fail(LmdbError(rc, "begin read transaction"));
    }
    auto result = fn(txn);
    mdb_txn_abort(txn);
    return result;
  }

  // Queues `fn(txn)` for the writer thread; resumes after the group commit with its result.
  // `fn` may run more than once (batch retry) and must not have effects outside the transaction.
  // Not a coroutine: `fn` moves into the queued operation at once.
  template <typename T>
  boost::asio::awaitable<Result<T>> Write(std::function<Result<T>(MDB_txn*)>&& fn) {
    auto start = [this, fn = std::move(fn)](std::shared_ptr<Completion<T>> done) mutable {
      auto result = std::make_shared<Result<T>>(Fail(ErrorCode::kInternal, "lmdb: write not run"));
      Enqueue(Op{[result, fn = std::move(fn)](MDB_txn* txn) {
                   *result = fn(txn);
                   // A refused write (precondition, bad value) changed nothing; an LMDB failure
                   // may have left half its writes in the shared transaction.
                   return result || (result->error().code != ErrorCode::kBackend &&
                                     result->error().code != ErrorCode::kUnavailable);
                 },
                 [result, done](const Error* commit_error) {
                   done->Complete(commit_error ? Fail(*commit_error) : std::move(*result));
                 }});
    };
    return Suspend<T>(std::move(start));
  }

  // A task run by the writer thread about every `period` in its own transaction (e.g. a sweeper).
  // `task(txn)` returns true to commit. Set before the first write.
  void SetPeriodic(std::chrono::milliseconds period, std::function<bool(MDB_txn*)> task);

  // Drains queued writes, stops the writer and closes the environment. Idempotent.
  void Close();

  // Writer-thread state shared by write closures: the last version handed out.
  uint64_t& last_version() { return last_version_; }
  // A write closure saw LMDB fail with `rc` (writer thread only): lets the batch tell
  // MDB_MAP_FULL (grow and retry) from other failures.
  void NoteTxnError(int rc) { txn_error_ = rc; }

 private:
  struct Op {
    std::function<bool(MDB_txn*)> apply;  // false: the transaction must be aborted
    std::function<void(const Error*)> complete;
  };
  GroupCommitter() = default;
  void Enqueue(Op op);
  void WriterLoop();
  Result<void> CommitBatch(std::vector<Op>& batch);
  Result<void> Grow();

  MDB_env* env_ = nullptr;
  std::vector<MDB_dbi> dbis_;
  MDB_dbi meta_dbi_ = 0;
  std::shared_mutex resize_mu_;  // readers shared; a map resize exclusive
  size_t map_size_ = 0;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Op> queue_;
  bool closing_ = false;
  std::thread writer_;

  std::chrono::milliseconds period_{0};
  std::function<bool(MDB_txn*)> periodic_;
  uint64_t last_version_ = 0;  // writer thread only
  int txn_error_ = 0;          // writer thread only
};

}  // namespace mikcar::lmdb
