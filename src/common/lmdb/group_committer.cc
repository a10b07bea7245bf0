#include "common/lmdb/group_committer.h"

#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <cstring>
#include <filesystem>

namespace mikcar::lmdb {
namespace {

constexpr size_t kInitialMapSize = size_t{64} << 30;  // sparse: address space, not disk
constexpr size_t kMaxBatch = 4096;
constexpr char kVersionKey[] = "last_version";

}  // namespace

Error LmdbError(int rc, std::string_view what) {
  ErrorCode code =
      rc == MDB_MAP_FULL || rc == ENOSPC ? ErrorCode::kUnavailable : ErrorCode::kBackend;
  return Error{code, "lmdb: " + std::string(what) + ": " + mdb_strerror(rc), {}};
}

Result<std::unique_ptr<GroupCommitter>> GroupCommitter::Open(const std::string& dir,
                                                             const std::vector<std::string>& dbs) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec)
    return Fail(ErrorCode::kBackend, "lmdb: cannot create directory " + dir + ": " + ec.message());
  std::unique_ptr<GroupCommitter> store(new GroupCommitter());
  int rc = mdb_env_create(&store->env_);
  if (rc == 0) rc = mdb_env_set_maxdbs(store->env_, static_cast<MDB_dbi>(dbs.size() + 1));
  if (rc == 0) rc = mdb_env_set_maxreaders(store->env_, 1024);
  if (rc == 0) rc = mdb_env_set_mapsize(store->env_, kInitialMapSize);
  // MDB_NOMETASYNC: a commit fsyncs its data pages and writes its meta page unsynced. The next
  // commit's data fsync (or an explicit sync when nothing follows) makes it durable, and only then
  // are its writes acknowledged (see WriterLoop): one fsync per batch instead of two.
  if (rc == 0) rc = mdb_env_open(store->env_, dir.c_str(), MDB_NOMETASYNC, 0600);
  if (rc != 0) return Fail(LmdbError(rc, "open environment at " + dir));
  MDB_envinfo info;
  mdb_env_info(store->env_, &info);
  store->map_size_ = info.me_mapsize;

  MDB_txn* txn = nullptr;
  if ((rc = mdb_txn_begin(store->env_, nullptr, 0, &txn)) != 0) return Fail(LmdbError(rc, "begin"));
  for (const auto& name : dbs) {
    MDB_dbi dbi;
    if ((rc = mdb_dbi_open(txn, name.c_str(), MDB_CREATE, &dbi)) != 0) {
      mdb_txn_abort(txn);
      return Fail(LmdbError(rc, "open database " + name));
    }
    store->dbis_.push_back(dbi);
  }
  if ((rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &store->meta_dbi_)) != 0) {
    mdb_txn_abort(txn);
    return Fail(LmdbError(rc, "open database meta"));
  }
  MDB_val k{sizeof kVersionKey - 1, const_cast<char*>(kVersionKey)}, v;
  if (mdb_get(txn, store->meta_dbi_, &k, &v) == 0 && v.mv_size == sizeof(uint64_t)) {
    std::memcpy(&store->last_version_, v.mv_data, sizeof(uint64_t));
  }
  if ((rc = mdb_txn_commit(txn)) != 0) return Fail(LmdbError(rc, "commit"));
  store->writer_ = std::thread([s = store.get()] { s->WriterLoop(); });
  return store;
}

GroupCommitter::~GroupCommitter() { Close(); }

void GroupCommitter::SetPeriodic(std::chrono::milliseconds period,
                                 std::function<bool(MDB_txn*)> task) {
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
    mdb_env_close(env_);
    env_ = nullptr;
  }
}

void GroupCommitter::WriterLoop() {
  auto last_periodic = std::chrono::steady_clock::now();
  std::vector<Op> batch;
  // Committed, but the meta page that makes the commit durable is not yet on disk.
  std::vector<Op> unsynced;
  auto complete = [](std::vector<Op>& ops, const Error* error) {
    for (auto& op : ops) op.complete(error);
    ops.clear();
  };
  for (;;) {
    {
      std::unique_lock lock(mu_);
      if (unsynced.empty()) {
        auto wait = period_.count() > 0 ? period_ : std::chrono::milliseconds(1000);
        cv_.wait_for(lock, wait, [this] { return closing_ || !queue_.empty(); });
      }
      while (!queue_.empty() && batch.size() < kMaxBatch) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      if (batch.empty() && unsynced.empty() && closing_) return;
    }
    if (!batch.empty()) {
      // The data fsync of this commit also lands the previous commit's meta page.
      if (auto result = CommitBatch(batch); result) {
        complete(unsynced, nullptr);
        std::swap(unsynced, batch);
      } else {
        complete(batch, &result.error());  // `unsynced` waits for the next sync
      }
    } else if (!unsynced.empty()) {
      // Nothing else to commit: sync the last meta page on its own.
      if (int rc = mdb_env_sync(env_, 1); rc != 0) {
        Error error = LmdbError(rc, "sync");
        complete(unsynced, &error);
      } else {
        complete(unsynced, nullptr);
      }
    }
    auto now = std::chrono::steady_clock::now();
    if (periodic_ && now - last_periodic >= period_) {
      last_periodic = now;
      MDB_txn* txn = nullptr;
      if (mdb_txn_begin(env_, nullptr, 0, &txn) == 0) {
        if (periodic_(txn)) {
          if (int rc = mdb_txn_commit(txn); rc != 0)
            spdlog::warn("lmdb periodic commit: {}", mdb_strerror(rc));
        } else {
          mdb_txn_abort(txn);
        }
      }
    }
  }
}

Result<void> GroupCommitter::CommitBatch(std::vector<Op>& batch) {
  for (int attempt = 0; attempt < 8; ++attempt) {
    txn_error_ = 0;
    uint64_t version_before = last_version_;
    MDB_txn* txn = nullptr;
    int rc = mdb_txn_begin(env_, nullptr, 0, &txn);
    if (rc != 0) return Fail(LmdbError(rc, "begin write transaction"));
    bool usable = true;
    for (auto& op : batch) {
      if (!(usable = op.apply(txn))) break;
    }
    if (usable) {
      MDB_val k{sizeof kVersionKey - 1, const_cast<char*>(kVersionKey)};
      MDB_val v{sizeof(uint64_t), &last_version_};
      rc = mdb_put(txn, meta_dbi_, &k, &v, 0);
      if (rc == 0) {
        rc = mdb_txn_commit(txn);  // the one fsync every write of the batch shares
        if (rc == 0) return {};
        txn = nullptr;
      }
    } else {
      rc = txn_error_ != 0 ? txn_error_ : MDB_PANIC;
    }
    if (txn) mdb_txn_abort(txn);
    last_version_ = version_before;
    if (rc != MDB_MAP_FULL) return Fail(LmdbError(rc, "commit"));
    if (auto grown = Grow(); !grown) return grown;
  }
  return Fail(ErrorCode::kUnavailable, "lmdb: map still full after growing");
}

Result<void> GroupCommitter::Grow() {
  // mdb_env_set_mapsize needs no live transaction in this process: hold readers off meanwhile.
  std::unique_lock lock(resize_mu_);
  size_t next = map_size_ * 2;
  if (int rc = mdb_env_set_mapsize(env_, next); rc != 0) return Fail(LmdbError(rc, "grow map"));
  map_size_ = next;
  spdlog::info("lmdb: map grown to {} GiB", next >> 30);
  return {};
}

}  // namespace mikcar::lmdb
