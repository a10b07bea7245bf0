#include "common/lmdb/group_committer.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>

namespace mikcar::lmdb {
namespace {

constexpr size_t kMaxBatch = 4096;
constexpr char kVersionKey[] = "last_version";
constexpr char kPut = 1, kDel = 2;       // log record op kinds
constexpr unsigned char kMetaDb = 0xff;  // the `meta` database's id in log records
// Between checkpoints the file grows by the pages written meanwhile (the pin keeps LMDB from
// reusing them): at 20,000 random writes a second, about 100 MB. Measured on this machine, 500 ms
// gives the throughput of 1 s with half the growth.
constexpr std::chrono::milliseconds kCheckpointEvery{500};
// The checkpoint writes LMDB's dirty pages this many bytes at a time, waiting for each: a single
// fdatasync of them all queues so much I/O that the log's fsyncs stall behind it (p99 80 ms at
// 50 connections, against 8 ms in steps of 1 MiB).
constexpr off_t kCheckpointStep = off_t{1} << 20;
constexpr uint64_t kSegmentBytes = uint64_t{64} << 20;  // or sooner, once the log is this long
// Threads that keep a read transaction (and an LMDB reader slot) per store; further threads
// take a transaction per read.
constexpr size_t kMaxCachedReaders = 64;

// Stores are told apart by an id that is never reused (an address could be), so a thread's
// cached reader of a closed store is never taken for one of a new store.
std::mutex live_mu;
std::vector<uint64_t> live_ids;  // the ids of open stores
uint64_t next_id = 0;

uint64_t NewStoreId() {
  std::lock_guard lock(live_mu);
  live_ids.push_back(++next_id);
  return next_id;
}

void ForgetStoreId(uint64_t id) {
  std::lock_guard lock(live_mu);
  std::erase(live_ids, id);
}

}  // namespace

Error LmdbError(int rc, std::string_view what) {
  ErrorCode code =
      rc == MDB_MAP_FULL || rc == ENOSPC ? ErrorCode::kUnavailable : ErrorCode::kBackend;
  return Error{code, "lmdb: " + std::string(what) + ": " + mdb_strerror(rc), {}};
}

int WriteTxn::Put(size_t db, std::string_view key, std::string_view value) {
  MDB_val k{key.size(), const_cast<char*>(key.data())};
  MDB_val v{value.size(), const_cast<char*>(value.data())};
  int rc = mdb_put(txn_, store_.dbis_[db], &k, &v, 0);
  if (rc == 0) {
    store_.Record(kPut, db, key, value);
  } else {
    store_.txn_error_ = rc;
  }
  return rc;
}

int WriteTxn::Del(size_t db, std::string_view key) {
  MDB_val k{key.size(), const_cast<char*>(key.data())};
  int rc = mdb_del(txn_, store_.dbis_[db], &k, nullptr);
  if (rc == 0) {
    store_.Record(kDel, db, key, {});
  } else if (rc != MDB_NOTFOUND) {
    store_.txn_error_ = rc;
  }
  return rc;
}

// A record is the transaction's changes in order: u8 kind | u8 db | u32 key size |
// (put: u32 value size) | key | (put: value).
void GroupCommitter::Record(char kind, size_t db, std::string_view key, std::string_view value) {
  record_.push_back(kind);
  // Databases are named by their place in Open's list (new ones go at its end); `meta`, kept
  // after them, by a fixed id, so that a longer list still replays an older log.
  record_.push_back(static_cast<char>(db == dbis_.size() - 1 ? kMetaDb : db));
  auto size = [this](size_t n) {
    uint32_t u = static_cast<uint32_t>(n);
    record_.append(reinterpret_cast<const char*>(&u), sizeof u);
  };
  size(key.size());
  if (kind == kPut) size(value.size());
  record_.append(key);
  if (kind == kPut) record_.append(value);
}

Result<std::unique_ptr<GroupCommitter>> GroupCommitter::Open(const std::string& dir,
                                                             const std::vector<std::string>& dbs,
                                                             size_t initial_map_size) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec)
    return Fail(ErrorCode::kBackend, "lmdb: cannot create directory " + dir + ": " + ec.message());
  std::unique_ptr<GroupCommitter> store(new GroupCommitter());
  store->id_ = NewStoreId();
  if (auto recovered = store->Recover(dir, dbs, initial_map_size); !recovered)
    return Fail(recovered.error());
  store->writer_ = std::thread([s = store.get()] { s->WriterLoop(); });
  return store;
}

Result<void> GroupCommitter::Recover(const std::string& dir, const std::vector<std::string>& dbs,
                                     size_t initial_map_size) {
  // One store per directory: a second one would restore old meta pages under the first, and
  // retire its log.
  std::string lock_path = dir + "/wal.lock";
  lock_fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd_ < 0 || ::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    return Fail(ErrorCode::kUnavailable,
                "lmdb: " + dir + " is in use by another store (" + std::strerror(errno) + ")");
  }
  auto log = WriteAheadLog::Recover(dir);
  if (!log) return Fail(log.error());
  auto open_env = [&]() -> Result<uint64_t> {
    int rc = mdb_env_create(&env_);
    if (rc == 0) rc = mdb_env_set_maxdbs(env_, static_cast<MDB_dbi>(dbs.size() + 1));
    if (rc == 0) rc = mdb_env_set_maxreaders(env_, 1024);
    if (rc == 0) rc = mdb_env_set_mapsize(env_, initial_map_size);
    // MDB_NOSYNC: the log makes commits durable. MDB_NOTLS: the writer thread holds the pin
    // next to its own transactions.
    if (rc == 0) rc = mdb_env_open(env_, dir.c_str(), MDB_NOSYNC | MDB_NOTLS, 0600);
    if (rc != 0) return Fail(LmdbError(rc, "open environment at " + dir));
    MDB_envinfo info;
    mdb_env_info(env_, &info);
    map_size_ = info.me_mapsize;
    return static_cast<uint64_t>(info.me_last_txnid);
  };
  const auto& saved = log->checkpoint;
  // Without the log's records, a file at the checkpoint's snapshot needs nothing more.
  Result<uint64_t> txnid = Fail(ErrorCode::kBackend, "lmdb: log to replay");
  if (!saved || log->records.empty()) {
    txnid = open_env();
    if (!txnid && !saved) return Fail(txnid.error());
  }
  if (saved && (!txnid || *txnid != saved->txnid)) {
    // Commits after the checkpoint were never synced, and a crash may have left any of their
    // pages unwritten: go back to the checkpoint's snapshot (its pages were pinned, so they are
    // intact) and redo the commits from the log.
    if (env_) mdb_env_close(env_);
    env_ = nullptr;
    std::string data = dir + "/data.mdb";
    int fd = ::open(data.c_str(), O_WRONLY | O_CLOEXEC);
    bool ok = fd >= 0 &&
              ::pwrite(fd, saved->metas.data(), saved->metas.size(), 0) ==
                  static_cast<ssize_t>(saved->metas.size()) &&
              ::fdatasync(fd) == 0;
    int err = errno;
    if (fd >= 0) ::close(fd);
    if (!ok) {
      return Fail(ErrorCode::kBackend,
                  "lmdb: cannot restore the checkpoint in " + data + ": " + std::strerror(err));
    }
    txnid = open_env();
    if (!txnid) return Fail(txnid.error());
    if (*txnid != saved->txnid) {
      return Fail(ErrorCode::kBackend, "lmdb: " + data + " does not match its checkpoint (txn " +
                                           std::to_string(*txnid) + ", expected " +
                                           std::to_string(saved->txnid) + ")");
    }
    spdlog::info("lmdb: {}: replaying {} log records after the checkpoint", dir,
                 log->records.size());
  }

  MDB_txn* txn = nullptr;
  int rc = mdb_txn_begin(env_, nullptr, 0, &txn);
  if (rc != 0) return Fail(LmdbError(rc, "begin"));
  std::vector<std::string> names = dbs;
  names.push_back("meta");
  for (const auto& name : names) {
    MDB_dbi dbi;
    if ((rc = mdb_dbi_open(txn, name.c_str(), MDB_CREATE, &dbi)) != 0) {
      mdb_txn_abort(txn);
      return Fail(LmdbError(rc, "open database " + name));
    }
    dbis_.push_back(dbi);
  }
  if ((rc = mdb_txn_commit(txn)) != 0) return Fail(LmdbError(rc, "commit"));
  if (auto replayed = Replay(log->records); !replayed) return replayed;

  auto version = Read([&](MDB_txn* read) -> Result<uint64_t> {
    MDB_val k{sizeof kVersionKey - 1, const_cast<char*>(kVersionKey)}, v;
    uint64_t last = 0;
    if (mdb_get(read, dbis_.back(), &k, &v) == 0 && v.mv_size == sizeof last)
      std::memcpy(&last, v.mv_data, sizeof last);
    return last;
  });
  if (!version) return Fail(version.error());
  last_version_ = *version;

  // A fresh checkpoint of everything so far, and a fresh log after it.
  if ((rc = mdb_env_sync(env_, 1)) != 0) return Fail(LmdbError(rc, "sync"));
  if ((rc = mdb_txn_begin(env_, nullptr, MDB_RDONLY, &pin_)) != 0)
    return Fail(LmdbError(rc, "begin read transaction"));
  auto metas = MetaPages();
  if (!metas) return Fail(metas.error());
  WriteAheadLog::Checkpoint cp{log->last_lsn, mdb_txn_id(pin_), std::move(*metas)};
  auto created = WriteAheadLog::Create(dir, log->last_lsn, cp);
  if (!created) return Fail(created.error());
  wal_ = std::move(*created);
  checkpoint_lsn_ = log->last_lsn;
  last_checkpoint_ = std::chrono::steady_clock::now();
  return {};
}

Result<void> GroupCommitter::Replay(const std::vector<std::string>& records) {
  if (records.empty()) return {};
  for (;;) {
    MDB_txn* txn = nullptr;
    if (int rc = mdb_txn_begin(env_, nullptr, 0, &txn); rc != 0)
      return Fail(LmdbError(rc, "begin write transaction"));
    int rc = 0;
    for (const auto& record : records) {
      std::string_view in(record);
      while (rc == 0 && !in.empty()) {
        uint32_t key_size = 0, value_size = 0;
        char kind = in[0];
        size_t db = in.size() > 1 ? static_cast<unsigned char>(in[1]) : dbis_.size();
        if (db == kMetaDb) db = dbis_.size() - 1;
        size_t header = 2 + 4 + (kind == kPut ? 4 : 0);
        if (in.size() < header || db >= dbis_.size() || (kind != kPut && kind != kDel)) {
          rc = MDB_CORRUPTED;
          break;
        }
        std::memcpy(&key_size, in.data() + 2, 4);
        if (kind == kPut) std::memcpy(&value_size, in.data() + 6, 4);
        if (in.size() - header < uint64_t{key_size} + value_size) {
          rc = MDB_CORRUPTED;
          break;
        }
        MDB_val k{key_size, const_cast<char*>(in.data() + header)};
        MDB_val v{value_size, const_cast<char*>(in.data() + header + key_size)};
        rc = kind == kPut ? mdb_put(txn, dbis_[db], &k, &v, 0)
                          : mdb_del(txn, dbis_[db], &k, nullptr);
        if (rc == MDB_NOTFOUND) rc = 0;
        in.remove_prefix(header + key_size + value_size);
      }
      if (rc != 0) break;
    }
    if (rc == 0)
      rc = mdb_txn_commit(txn);
    else
      mdb_txn_abort(txn);
    if (rc == 0) return {};
    if (rc != MDB_MAP_FULL) return Fail(LmdbError(rc, "replay the log"));
    if (auto grown = Grow(); !grown) return grown;
  }
}

// LMDB's two meta pages as they are now (the writer thread is between transactions).
Result<std::string> GroupCommitter::MetaPages() {
  MDB_stat stat;
  mdb_env_stat(env_, &stat);
  int fd = -1;
  mdb_env_get_fd(env_, &fd);
  std::string metas(size_t{stat.ms_psize} * 2, '\0');
  if (::pread(fd, metas.data(), metas.size(), 0) != static_cast<ssize_t>(metas.size()))
    return Fail(ErrorCode::kBackend,
                std::string("lmdb: cannot read the meta pages: ") + std::strerror(errno));
  return metas;
}

GroupCommitter::~GroupCommitter() { Close(); }

GroupCommitter::Reader* GroupCommitter::ThreadReader() {
  struct Entry {
    uint64_t store;
    Reader* reader;
  };
  thread_local std::vector<Entry> cache;
  for (const auto& e : cache) {
    if (e.store == id_) return e.reader;
  }
  {  // first read of this store on this thread: drop the entries of closed stores
    std::lock_guard lock(live_mu);
    std::erase_if(cache, [](const Entry& e) { return std::ranges::count(live_ids, e.store) == 0; });
  }
  std::lock_guard lock(readers_mu_);
  if (readers_.size() >= kMaxCachedReaders) return nullptr;
  Reader* reader = readers_.emplace_back(std::make_unique<Reader>()).get();
  cache.push_back({id_, reader});
  return reader;
}

Result<GroupCommitter::Reader*> GroupCommitter::BeginRead() {
  Reader* reader = ThreadReader();
  if (reader && reader->active.load(std::memory_order_relaxed)) {
    // A Read inside a Read: a transaction of its own. The outer reader is active, so a resize
    // cannot start meanwhile.
    auto nested = std::make_unique<Reader>();
    nested->kind = Reader::kNested;
    if (int rc = mdb_txn_begin(env_, nullptr, MDB_RDONLY, &nested->txn); rc != 0)
      return Fail(LmdbError(rc, "begin read transaction"));
    return nested.release();
  }
  if (!reader) {  // more reading threads than cached readers: one registered for this read only
    std::lock_guard lock(readers_mu_);
    reader = readers_.emplace_back(std::make_unique<Reader>()).get();
    reader->kind = Reader::kTemporary;
  }
  for (;;) {  // Dekker-style with Grow(): each side sets its flag, then reads the other's
    reader->active.store(true, std::memory_order_seq_cst);
    if (!resizing_.load(std::memory_order_seq_cst)) break;
    reader->active.store(false, std::memory_order_seq_cst);
    while (resizing_.load(std::memory_order_acquire)) std::this_thread::yield();
  }
  int rc = reader->txn ? mdb_txn_renew(reader->txn)
                       : mdb_txn_begin(env_, nullptr, MDB_RDONLY, &reader->txn);
  if (rc == 0) return reader;
  if (reader->txn) mdb_txn_abort(reader->txn);
  reader->txn = nullptr;
  Error error = LmdbError(rc, "begin read transaction");
  EndRead(*reader);
  return Fail(std::move(error));
}

void GroupCommitter::EndRead(Reader& reader) {
  switch (reader.kind) {
    case Reader::kCached:
      if (reader.txn) mdb_txn_reset(reader.txn);  // keeps the reader slot, holds no snapshot
      reader.active.store(false, std::memory_order_release);
      return;
    case Reader::kNested:
      if (reader.txn) mdb_txn_abort(reader.txn);
      delete &reader;
      return;
    case Reader::kTemporary: {
      if (reader.txn) mdb_txn_abort(reader.txn);
      // Inactive before taking the lock: Grow() holds it while it waits for active readers.
      reader.active.store(false, std::memory_order_release);
      std::lock_guard lock(readers_mu_);
      std::erase_if(readers_, [&](const auto& r) { return r.get() == &reader; });
      return;
    }
  }
}

void GroupCommitter::SetPeriodic(std::chrono::milliseconds period,
                                 std::function<bool(WriteTxn&)> task) {
  std::lock_guard lock(mu_);
  period_ = period;
  periodic_ = std::move(task);
}

void GroupCommitter::Enqueue(Op op) {
  {
    std::lock_guard lock(mu_);
    if (closing_) {
      Error e{ErrorCode::kUnavailable, "lmdb: store is shutting down", {}};
      op.complete(&e);
      return;
    }
    queue_.push_back(std::move(op));
  }
  cv_.notify_one();
}

void GroupCommitter::Close() {
  {
    std::lock_guard lock(mu_);
    if (closing_) return;
    closing_ = true;
  }
  cv_.notify_one();
  if (writer_.joinable()) writer_.join();
  if (env_) {
    {
      std::lock_guard lock(readers_mu_);
      for (auto& reader : readers_) {
        if (reader->txn) mdb_txn_abort(reader->txn);
      }
      readers_.clear();
    }
    ForgetStoreId(id_);
    if (pin_) mdb_txn_abort(pin_);
    pin_ = nullptr;
    mdb_env_close(env_);
    env_ = nullptr;
  }
  if (lock_fd_ >= 0) ::close(lock_fd_);  // releases the directory
  lock_fd_ = -1;
}

void GroupCommitter::WriterLoop() {
  auto last_periodic = std::chrono::steady_clock::now();
  std::vector<Op> batch;
  std::chrono::milliseconds period{0};
  std::function<bool(WriteTxn&)> periodic;
  for (;;) {
    bool checkpointed = false;
    {
      std::unique_lock lock(mu_);
      if (!periodic && periodic_) std::tie(period, periodic) = std::tie(period_, periodic_);
      auto wait = period.count() > 0 ? std::min(period, kCheckpointEvery) : kCheckpointEvery;
      cv_.wait_for(lock, wait,
                   [&] { return closing_ || !queue_.empty() || (pending_ && pending_->done); });
      while (!queue_.empty() && batch.size() < kMaxBatch) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      checkpointed = pending_ && pending_->done;
      if (batch.empty() && closing_) break;
    }
    if (checkpointed) FinishCheckpoint();
    if (!batch.empty()) {
      auto result = CommitBatch(batch);
      for (auto& op : batch) op.complete(result ? nullptr : &result.error());
      batch.clear();
    }
    auto now = std::chrono::steady_clock::now();
    if (periodic && now - last_periodic >= period) {
      last_periodic = now;
      RunPeriodic(periodic);
    }
    if (!pending_ && wal_->last_lsn() > checkpoint_lsn_ &&
        (now - last_checkpoint_ >= kCheckpointEvery || wal_->segment_bytes() >= kSegmentBytes)) {
      StartCheckpoint();
    }
  }
  // A clean close leaves a checkpoint of everything and no log to replay.
  if (pending_) FinishCheckpoint();
  if (wal_->last_lsn() > checkpoint_lsn_ && !wal_error_) {
    StartCheckpoint();
    if (pending_) FinishCheckpoint();
  }
}

Result<void> GroupCommitter::CommitBatch(std::vector<Op>& batch) {
  if (wal_error_) return Fail(*wal_error_);
  for (int attempt = 0; attempt < 8; ++attempt) {
    txn_error_ = 0;
    record_.clear();
    uint64_t version_before = last_version_;
    MDB_txn* txn = nullptr;
    int rc = mdb_txn_begin(env_, nullptr, 0, &txn);
    if (rc != 0) return Fail(LmdbError(rc, "begin write transaction"));
    WriteTxn write(*this, txn);
    bool usable = true;
    for (auto& op : batch) {
      if (!(usable = op.apply(write))) break;
    }
    if (usable && record_.empty()) {  // every write was refused: nothing to commit
      mdb_txn_abort(txn);
      return {};
    }
    if (usable) {
      if (last_version_ != version_before) rc = PutVersion(write);
      if (rc == 0) {
        rc = mdb_txn_commit(txn);  // not synced: the log record below makes it durable
        txn = nullptr;
        if (rc == 0) {
          // The one fsync every write of the batch shares.
          auto logged = wal_->Append(record_);
          auto synced = logged ? wal_->Sync() : Result<void>(Fail(logged.error()));
          if (synced) return {};
          // LMDB has the batch but the log may not: later writes could not be recovered.
          Broke(synced.error());
          return synced;
        }
      }
    } else {
      rc = txn_error_ != 0 ? txn_error_ : MDB_PANIC;
    }
    if (txn) mdb_txn_abort(txn);
    last_version_ = version_before;
    if (rc != MDB_MAP_FULL) return Fail(LmdbError(rc, "commit"));
    if (auto grown = Grow(); !grown) {
      Broke(grown.error());  // LMDB may have lost its map: no transaction is safe any more
      return grown;
    }
  }
  return Fail(ErrorCode::kUnavailable, "lmdb: map still full after growing");
}

void GroupCommitter::Broke(const Error& error) {
  spdlog::error("{}; the store refuses writes until restarted", error.message);
  if (!wal_error_) wal_error_ = error;
}

int GroupCommitter::PutVersion(WriteTxn& write) {
  return write.Put(
      dbis_.size() - 1, kVersionKey,
      std::string_view(reinterpret_cast<const char*>(&last_version_), sizeof last_version_));
}

// The periodic task's changes are logged but not synced: nobody waits for them, and the next
// batch's sync carries them.
void GroupCommitter::RunPeriodic(const std::function<bool(WriteTxn&)>& periodic) {
  if (wal_error_) return;
  record_.clear();
  txn_error_ = 0;
  MDB_txn* txn = nullptr;
  if (mdb_txn_begin(env_, nullptr, 0, &txn) != 0) return;
  WriteTxn write(*this, txn);
  uint64_t version_before = last_version_;
  bool keep = periodic(write) && !record_.empty();
  if (keep && last_version_ != version_before) keep = PutVersion(write) == 0;
  if (!keep) {
    mdb_txn_abort(txn);
    last_version_ = version_before;
    return;
  }
  if (int rc = mdb_txn_commit(txn); rc != 0) {
    spdlog::warn("lmdb periodic commit: {}", mdb_strerror(rc));
    return;
  }
  if (auto logged = wal_->Append(record_); !logged) {
    Broke(logged.error());
  }
}

// Pins the last commit's snapshot, notes its meta pages and moves the log to a new segment; a
// thread then fdatasyncs LMDB and saves the checkpoint while the writer goes on.
void GroupCommitter::StartCheckpoint() {
  if (wal_error_) return;
  auto pending = std::make_unique<PendingCheckpoint>();
  if (int rc = mdb_txn_begin(env_, nullptr, MDB_RDONLY, &pending->pin); rc != 0) {
    spdlog::warn("lmdb checkpoint: {}", mdb_strerror(rc));
    return;
  }
  auto metas = MetaPages();
  auto segments = metas ? wal_->Rotate() : Result<std::vector<std::string>>(Fail(metas.error()));
  if (!segments) {
    Broke(segments.error());
    mdb_txn_abort(pending->pin);
    return;
  }
  pending->checkpoint = {wal_->last_lsn(), mdb_txn_id(pending->pin), std::move(*metas)};
  pending->segments = std::move(*segments);
  int fd = -1;
  mdb_env_get_fd(env_, &fd);
  pending->thread = std::thread([this, p = pending.get(), fd] {
    // A write error is reported once per open file: whichever call sees it, the checkpoint fails.
    struct stat st;
    bool written = ::fstat(fd, &st) == 0;
    for (off_t at = 0; written && at < st.st_size; at += kCheckpointStep) {
      written = ::sync_file_range(fd, at, kCheckpointStep,
                                  SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                                      SYNC_FILE_RANGE_WAIT_AFTER) == 0;
    }
    Result<void> result;  // the fdatasync makes it durable (and flushes the disk's cache)
    if (!written || ::fdatasync(fd) != 0) {
      result =
          Fail(ErrorCode::kBackend, std::string("lmdb: checkpoint sync: ") + std::strerror(errno));
    } else {
      result = wal_->SaveCheckpoint(p->checkpoint);
    }
    {
      std::lock_guard lock(mu_);
      p->result = std::move(result);
      p->done = true;
    }
    cv_.notify_one();
  });
  pending_ = std::move(pending);
  last_checkpoint_ = std::chrono::steady_clock::now();
}

// The saved checkpoint's snapshot takes over the pin, and the log drops what it covers.
void GroupCommitter::FinishCheckpoint() {
  pending_->thread.join();
  auto& segments = pending_->segments;
  if (pending_->result) {
    mdb_txn_abort(pin_);
    pin_ = pending_->pin;
    checkpoint_lsn_ = pending_->checkpoint.lsn;
    wal_->Retire(segments);
  } else {
    // A failed sync may have lost pages for good (a later sync would not say so): the last
    // saved checkpoint and the log after it stay as they are, and nothing more is written.
    Broke(pending_->result.error());
    mdb_txn_abort(pending_->pin);
  }
  pending_.reset();
}
Result<void> GroupCommitter::Grow() {
  // mdb_env_set_mapsize needs no live transaction in this process: hold readers off meanwhile
  // (their reset transactions hold no snapshot; a renew after the resize sees the new map).
  resizing_.store(true, std::memory_order_seq_cst);
  int rc = 0;
  size_t next = map_size_ * 2;
  {
    std::lock_guard lock(readers_mu_);
    for (auto& reader : readers_) {
      while (reader->active.load(std::memory_order_seq_cst)) std::this_thread::yield();
    }
    rc = mdb_env_set_mapsize(env_, next);
  }
  resizing_.store(false, std::memory_order_release);
  if (rc != 0) return Fail(LmdbError(rc, "grow map"));
  map_size_ = next;
  spdlog::info("lmdb: map grown to {} MiB", next >> 20);
  return {};
}

}  // namespace mikcar::lmdb
