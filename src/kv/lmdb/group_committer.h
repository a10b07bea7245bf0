// An LMDB environment with one writer thread that group-commits.
//
// Reads run on the caller's thread in a short read-only transaction (LMDB readers never wait for
// the writer). Writes are closures queued to the writer thread: everything queued while a commit
// is in flight shares the next transaction and its fsync, and each closure runs in its own nested
// transaction so one failing write never spoils the others. A write's awaitable completes only
// after the commit is on disk, so a 200 built on it survives kill -9 and power loss.
//
// The map grows on MDB_MAP_FULL (the batch is retried after the resize). An optional periodic
// task (the TTL sweeper) runs on the writer thread between batches. Thread-safe.
#pragma once

#include <lmdb.h>

#include <atomic>
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

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "mikcar/error.h"

namespace mikcar::lmdb {

// Translates an LMDB return code into an Error naming the operation.
Error LmdbError(int rc, std::string_view what);

class GroupCommitter {
 public:
  // `dbs` are the named databases to open (created if missing); Dbi(i) returns the i-th.
  static Result<std::unique_ptr<GroupCommitter>> Open(const std::string& dir, const std::vector<std::string>& dbs);
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
  // `fn` runs in a nested transaction that is kept only if it returns success. MDB_MAP_FULL
  // from inside `fn` must be returned as an error; the batch is then retried with a larger map,
  // so `fn` may run more than once and must not have effects outside the transaction.
  // Not a coroutine on purpose: `fn` moves into the operation at once (GCC 12 mis-destroys
  // capturing lambdas that are temporaries of a co_await expression; callers pass a named local).
  template <typename T>
  boost::asio::awaitable<Result<T>> Write(std::function<Result<T>(MDB_txn*)>&& fn) {
    using Handler = boost::asio::any_completion_handler<void(Result<T>)>;
    auto initiation = [this, fn = std::move(fn)](auto handler) mutable {
      struct State {
        boost::asio::any_io_executor executor;  // where the awaiting coroutine resumes
        Handler handler;
        Result<T> result;
      };
      boost::asio::any_io_executor ex = boost::asio::get_associated_executor(handler);
      auto state = std::make_shared<State>(State{ex, Handler(std::move(handler)), Fail(ErrorCode::kInternal, "not run")});
      Enqueue(Op{[state, fn = std::move(fn)](MDB_txn* txn) {
                   state->result = fn(txn);
                   return state->result.has_value();
                 },
                 [state](const Error* commit_error) {
                   if (commit_error) state->result = Fail(*commit_error);
                   boost::asio::post(state->executor, [state] { std::move(state->handler)(std::move(state->result)); });
                 }});
    };
    return boost::asio::async_initiate<decltype(boost::asio::use_awaitable), void(Result<T>)>(
        std::move(initiation), boost::asio::use_awaitable);
  }

  // A task run by the writer thread about every `period` in its own transaction (e.g. a sweeper).
  // `task(txn)` returns true to commit. Set before the first write.
  void SetPeriodic(std::chrono::milliseconds period, std::function<bool(MDB_txn*)> task);

  // Drains queued writes, stops the writer and closes the environment. Idempotent.
  void Close();

  // Writer-thread state shared by write closures: the last version handed out.
  uint64_t& last_version() { return last_version_; }
  // Set by a write closure that saw MDB_MAP_FULL.
  void NoteMapFull() { map_full_ = true; }

 private:
  struct Op {
    std::function<bool(MDB_txn*)> apply;
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
  bool map_full_ = false;      // writer thread only
};

}  // namespace mikcar::lmdb
