// An LMDB environment with one writer thread that group-commits through a write-ahead log.
//
// Reads run on the caller's thread in a read-only transaction that each thread keeps and renews
// per read, so threads share no lock (LMDB readers never wait for the writer). Writes are closures
// queued to the writer thread: everything queued while a commit is in flight shares the next
// transaction. A closure validates before it writes, so a refused write changes nothing and shares
// the batch safely; an LMDB failure aborts the batch.
//
// Durability comes from the log, not from LMDB's own fsyncs. A batch is committed to LMDB
// without a sync (MDB_NOSYNC: visible to readers at once), its physical changes (every Put and
// Del of WriteTxn) are appended to the log as one record, and the log is fdatasynced: one
// sequential page or two, where an LMDB sync writes one scattered leaf page per key. Only then
// does the write's awaitable complete, so a 200 built on it survives kill -9 and power loss.
//
// A checkpoint makes LMDB durable on its own about every second (a second thread fdatasyncs the
// file while the writer goes on) and lets the log drop what it covers. Until the next checkpoint
// is saved, a read transaction pins the checkpointed snapshot, so LMDB never reuses its pages:
// whatever an unsynced commit left half-written on disk, that snapshot is intact. Open restores
// its two meta pages (kept in the checkpoint file) and replays the log after it.
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
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/async.h"
#include "common/lmdb/write_ahead_log.h"
#include "mikcar/error.h"

namespace mikcar::lmdb {

// Translates an LMDB return code into an Error naming the operation.
Error LmdbError(int rc, std::string_view what);

class GroupCommitter;

// The write transaction a write closure gets. Reads use raw() (mdb_get, cursors); every change
// must go through Put and Del, which the log records: a change made with mdb_put directly would
// not survive a crash.
class WriteTxn {
 public:
  MDB_txn* raw() const { return txn_; }
  // mdb_put / mdb_del on the store's `db`-th database; LMDB's return code.
  int Put(size_t db, std::string_view key, std::string_view value);
  int Del(size_t db, std::string_view key);

 private:
  friend class GroupCommitter;
  WriteTxn(GroupCommitter& store, MDB_txn* txn) : store_(store), txn_(txn) {}
  GroupCommitter& store_;
  MDB_txn* txn_;
};

class GroupCommitter {
 public:
  // `dbs` are the named databases to open (created if missing); Dbi(i) returns the i-th.
  // `initial_map_size` is address space, not disk (tests pass a small one to make the map grow).
  static Result<std::unique_ptr<GroupCommitter>> Open(const std::string& dir,
                                                      const std::vector<std::string>& dbs,
                                                      size_t initial_map_size = size_t{64} << 30);
  ~GroupCommitter();

  MDB_dbi Dbi(size_t i) const { return dbis_[i]; }

  // Runs `fn(txn)` in a read-only transaction on this thread. `fn` must not suspend.
  template <typename Fn>
  auto Read(Fn&& fn) -> decltype(fn(static_cast<MDB_txn*>(nullptr))) {
    auto reader = BeginRead();
    if (!reader) return Fail(reader.error());
    struct End {  // also when `fn` throws: an active reader would hold off map growth forever
      GroupCommitter* store;
      Reader* reader;
      ~End() { store->EndRead(*reader); }
    } end{this, *reader};
    return fn(end.reader->txn);
  }

  // Queues `fn(txn)` for the writer thread; resumes once its batch is durable, with its result.
  // `fn` may run more than once (batch retry) and must not have effects outside the transaction.
  // Not a coroutine: `fn` moves into the queued operation at once.
  template <typename T>
  boost::asio::awaitable<Result<T>> Write(std::function<Result<T>(WriteTxn&)>&& fn) {
    auto start = [this, fn = std::move(fn)](std::shared_ptr<Completion<T>> done) mutable {
      auto result = std::make_shared<Result<T>>(Fail(ErrorCode::kInternal, "lmdb: write not run"));
      Enqueue(Op{[result, fn = std::move(fn)](WriteTxn& txn) {
                   *result = fn(txn);
                   // A refused write (precondition, bad value) changed nothing; an LMDB failure
                   // may have left half its writes in the shared transaction.
                   return result->has_value() || (result->error().code != ErrorCode::kBackend &&
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
  void SetPeriodic(std::chrono::milliseconds period, std::function<bool(WriteTxn&)> task);

  // Drains queued writes, stops the writer, checkpoints and closes the environment. Idempotent.
  void Close();

  // Writer-thread state shared by write closures: the last version handed out.
  uint64_t& last_version() { return last_version_; }

 private:
  friend class WriteTxn;
  // A thread's read transaction on this store, reset between reads and renewed for the next: a
  // renew reuses LMDB's reader slot, where a begin takes the reader table's lock (shared by
  // every thread). `active` is written only by its thread, on a cache line of its own; a map
  // resize waits until every reader is inactive.
  struct alignas(64) Reader {
    std::atomic<bool> active{false};
    // kNested: a Read inside a Read on this thread; kTemporary: a thread beyond the cached ones.
    enum Kind { kCached, kNested, kTemporary } kind = kCached;
    MDB_txn* txn = nullptr;
  };
  Result<Reader*> BeginRead();
  void EndRead(Reader& reader);
  Reader* ThreadReader();

  struct Op {
    std::function<bool(WriteTxn&)> apply;  // false: the transaction must be aborted
    std::function<void(const Error*)> complete;
  };
  // A checkpoint between its start on the writer thread and its end on the checkpoint thread.
  struct PendingCheckpoint {
    MDB_txn* pin = nullptr;  // pins the snapshot being checkpointed
    WriteAheadLog::Checkpoint checkpoint;
    std::vector<std::string> segments;  // covered once it is saved
    std::thread thread;
    bool done = false;  // guarded by mu_
    Result<void> result;
  };
  GroupCommitter() = default;
  Result<void> Recover(const std::string& dir, const std::vector<std::string>& dbs,
                       size_t initial_map_size);
  Result<void> Replay(const std::vector<std::string>& records);
  Result<std::string> MetaPages();
  void Enqueue(Op op);
  void WriterLoop();
  Result<void> CommitBatch(std::vector<Op>& batch);
  void RunPeriodic(const std::function<bool(WriteTxn&)>& periodic);
  int PutVersion(WriteTxn& write);
  void Broke(const Error& error);
  void StartCheckpoint();
  void FinishCheckpoint();
  Result<void> Grow();
  void Record(char kind, size_t db, std::string_view key, std::string_view value);

  MDB_env* env_ = nullptr;
  int lock_fd_ = -1;                   // holds an flock on the directory's wal.lock
  std::vector<MDB_dbi> dbis_;          // the caller's databases, then `meta`
  uint64_t id_ = 0;                    // tells this store apart in threads' reader caches
  std::atomic<bool> resizing_{false};  // set while the map grows: readers wait
  std::mutex readers_mu_;              // guards readers_ (registration, resize, close)
  std::vector<std::unique_ptr<Reader>> readers_;
  size_t map_size_ = 0;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Op> queue_;
  bool closing_ = false;
  std::thread writer_;

  std::chrono::milliseconds period_{0};  // guarded by mu_
  std::function<bool(WriteTxn&)> periodic_;
  // Writer thread only:
  uint64_t last_version_ = 0;
  int txn_error_ = 0;   // the last LMDB failure of a Put/Del (MDB_MAP_FULL: grow, retry)
  std::string record_;  // the log record of the transaction being built
  std::unique_ptr<WriteAheadLog> wal_;
  std::optional<Error> wal_error_;  // the log or LMDB failed: no write is accepted any more
  MDB_txn* pin_ = nullptr;          // pins the snapshot of the saved checkpoint
  uint64_t checkpoint_lsn_ = 0;
  std::chrono::steady_clock::time_point last_checkpoint_;
  std::unique_ptr<PendingCheckpoint> pending_;
};

}  // namespace mikcar::lmdb
