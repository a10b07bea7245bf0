#include "queue/lmdb/lmdb_queue_backend.h"

#include <array>

#include "common/lmdb/group_committer.h"
#include "queue/embedded/embedded_queue.h"

namespace mikcar::queue {
namespace {

using embedded::Table;
using lmdb::GroupCommitter;
using lmdb::LmdbError;

MDB_val Val(std::string_view s) { return MDB_val{s.size(), const_cast<char*>(s.data())}; }
std::string_view View(const MDB_val& v) {
  return std::string_view(static_cast<const char*>(v.mv_data), v.mv_size);
}

// One LMDB database per table; writes go through the group committer, so every write of a
// batch shares one fsync and a 200 means the message is on disk.
class LmdbStore final : public embedded::Store {
 public:
  explicit LmdbStore(std::unique_ptr<GroupCommitter> committer) : committer_(std::move(committer)) {
    for (int i = 0; i < embedded::kTableCount; ++i) dbis_[i] = committer_->Dbi(i);
  }

  std::string name() const override { return "lmdb"; }

  boost::asio::awaitable<Result<void>> Write(
      std::function<Result<void>(embedded::Txn&)> fn) override {
    std::function<Result<void>(lmdb::WriteTxn&)> op = [this,
                                                       fn = std::move(fn)](lmdb::WriteTxn& txn) {
      Txn t(*this, txn.raw(), &txn);
      return fn(t);
    };
    co_return co_await committer_->Write<void>(std::move(op));
  }

  Result<void> Read(const std::function<Result<void>(embedded::Txn&)>& fn) override {
    return committer_->Read([&](MDB_txn* txn) -> Result<void> {
      Txn t(*this, txn);
      return fn(t);
    });
  }

  void SetPeriodic(std::chrono::milliseconds period,
                   std::function<bool(embedded::Txn&)> task) override {
    committer_->SetPeriodic(period, [this, task = std::move(task)](lmdb::WriteTxn& txn) {
      Txn t(*this, txn.raw(), &txn);
      return task(t);
    });
  }

  void Close() override { committer_->Close(); }

 private:
  class Txn final : public embedded::Txn {
   public:
    // `write` is null in a read-only transaction.
    Txn(LmdbStore& store, MDB_txn* txn, lmdb::WriteTxn* write = nullptr)
        : store_(store), txn_(txn), write_(write) {}

    Result<std::optional<std::string_view>> Get(Table table, std::string_view key) override {
      MDB_val k = Val(key), v;
      int rc = mdb_get(txn_, store_.Dbi(table), &k, &v);
      if (rc == MDB_NOTFOUND) return std::optional<std::string_view>();
      if (rc != 0) return Fail(LmdbError(rc, "get"));
      return std::optional<std::string_view>(View(v));
    }

    Result<std::optional<std::pair<std::string_view, std::string_view>>> Seek(
        Table table, std::string_view from) override {
      using Entry = std::pair<std::string_view, std::string_view>;
      MDB_cursor* cur = nullptr;
      if (int rc = mdb_cursor_open(txn_, store_.Dbi(table), &cur); rc != 0)
        return Fail(LmdbError(rc, "open cursor"));
      MDB_val k = Val(from), v;
      // LMDB refuses an empty key: an empty `from` means the first entry.
      int rc = mdb_cursor_get(cur, &k, &v, from.empty() ? MDB_FIRST : MDB_SET_RANGE);
      mdb_cursor_close(cur);  // the pages stay valid until the transaction writes
      if (rc == MDB_NOTFOUND) return std::optional<Entry>();
      if (rc != 0) return Fail(LmdbError(rc, "seek"));
      return std::optional<Entry>(Entry{View(k), View(v)});
    }

    Result<void> Put(Table table, std::string_view key, std::string_view value) override {
      if (!write_) return Fail(ErrorCode::kInternal, "lmdb: write in a read transaction");
      if (int rc = write_->Put(static_cast<size_t>(table), key, value); rc != 0)
        return Fail(LmdbError(rc, "put"));
      return {};
    }

    Result<void> Del(Table table, std::string_view key) override {
      if (!write_) return Fail(ErrorCode::kInternal, "lmdb: write in a read transaction");
      int rc = write_->Del(static_cast<size_t>(table), key);
      if (rc != 0 && rc != MDB_NOTFOUND) return Fail(LmdbError(rc, "delete"));
      return {};
    }

    uint64_t NextSeq() override { return ++store_.committer_->last_version(); }

   private:
    LmdbStore& store_;
    MDB_txn* txn_;
    lmdb::WriteTxn* write_;
  };

  MDB_dbi Dbi(Table table) const { return dbis_[static_cast<size_t>(table)]; }

  std::unique_ptr<GroupCommitter> committer_;
  std::array<MDB_dbi, embedded::kTableCount> dbis_{};
};

}  // namespace

Result<std::unique_ptr<QueueBackend>> OpenLmdbQueueBackend(const Uri& uri) {
  if (uri.path.empty() || (!uri.host.empty() && uri.host != "localhost")) {
    return Fail(ErrorCode::kBadRequest,
                "expected file:///absolute/dir or lmdb:///absolute/dir (three slashes)");
  }
  auto options = embedded::ParseOptions(uri);
  if (!options) return Fail(options.error());
  auto committer = GroupCommitter::Open(
      uri.path, {"ready", "leases", "lease_expiry", "counts", "dedup", "dedup_expiry", "groups"});
  if (!committer) return Fail(committer.error());
  return embedded::NewEmbeddedQueueBackend(std::make_unique<LmdbStore>(std::move(*committer)),
                                           *options);
}

}  // namespace mikcar::queue
