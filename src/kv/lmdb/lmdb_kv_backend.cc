#include "kv/lmdb/lmdb_kv_backend.h"

#include <spdlog/spdlog.h>

#include <cstring>

#include "common/lmdb/group_committer.h"
#include "kv/glob.h"
#include "kv/kv_rules.h"

namespace mikcar::kv {
namespace {

using lmdb::GroupCommitter;
using lmdb::LmdbError;
using lmdb::WriteTxn;

constexpr size_t kKv = 0, kExpiry = 1;  // the store's databases

// LMDB keys are at most 511 bytes. Keys up to kDirectKey bytes are stored as they are; longer
// ones as their first kLongPrefix bytes + SHA-like 32-byte digest, with the full key kept in the
// record. Such long keys still sort by their first kLongPrefix bytes.
constexpr size_t kDirectKey = 480;
constexpr size_t kLongPrefix = 448;

// Record: u64 version | i64 expires_at_ms | u16 content-type length | u16 full-key length
//         | content type | full key (long keys only) | value.
constexpr size_t kHeader = 8 + 8 + 2 + 2;

struct Record {
  uint64_t version = 0;
  int64_t expires_at_ms = 0;
  std::string_view content_type;
  std::string_view full_key;  // empty unless the key is long
  std::string_view value;
};

std::string DbKey(std::string_view key) {
  if (key.size() <= kDirectKey) return std::string(key);
  // FNV-1a 256 would do; a 4×64-bit FNV-1a with different seeds keeps this dependency-free and
  // collisions are checked against the stored full key anyway.
  std::string out(key.substr(0, kLongPrefix));
  for (uint64_t seed : {0xcbf29ce484222325ull, 0x84222325cbf29ce4ull, 0x9e3779b97f4a7c15ull,
                        0xc2b2ae3d27d4eb4full}) {
    uint64_t h = seed;
    for (unsigned char c : key) h = (h ^ c) * 0x100000001b3ull;
    for (int i = 7; i >= 0; --i) out.push_back(static_cast<char>(h >> (i * 8)));
  }
  return out;
}

std::string Encode(uint64_t version, int64_t expires, std::string_view content_type,
                   std::string_view key, std::string_view value) {
  std::string_view full_key = key.size() > kDirectKey ? key : std::string_view{};
  uint16_t ct = static_cast<uint16_t>(std::min<size_t>(content_type.size(), 1024));
  uint16_t fk = static_cast<uint16_t>(full_key.size());
  std::string out;
  out.resize(kHeader + ct + fk + value.size());
  char* p = out.data();
  std::memcpy(p, &version, 8);
  std::memcpy(p + 8, &expires, 8);
  std::memcpy(p + 16, &ct, 2);
  std::memcpy(p + 18, &fk, 2);
  // Empty views may have a null data(): memcpy must not see it even for 0 bytes.
  if (ct) std::memcpy(p + kHeader, content_type.data(), ct);
  if (fk) std::memcpy(p + kHeader + ct, full_key.data(), fk);
  if (!value.empty()) std::memcpy(p + kHeader + ct + fk, value.data(), value.size());
  return out;
}

bool Decode(const MDB_val& v, Record& r) {
  if (v.mv_size < kHeader) return false;
  const char* p = static_cast<const char*>(v.mv_data);
  uint16_t ct, fk;
  std::memcpy(&r.version, p, 8);
  std::memcpy(&r.expires_at_ms, p + 8, 8);
  std::memcpy(&ct, p + 16, 2);
  std::memcpy(&fk, p + 18, 2);
  if (kHeader + ct + fk > v.mv_size) return false;
  r.content_type = std::string_view(p + kHeader, ct);
  r.full_key = std::string_view(p + kHeader + ct, fk);
  r.value = std::string_view(p + kHeader + ct + fk, v.mv_size - kHeader - ct - fk);
  return true;
}

MDB_val Val(std::string_view s) { return MDB_val{s.size(), const_cast<char*>(s.data())}; }

std::string ExpiryKey(int64_t expires, std::string_view db_key) {
  std::string out(8, '\0');
  uint64_t e = static_cast<uint64_t>(expires);
  for (int i = 0; i < 8; ++i)
    out[i] = static_cast<char>(e >> ((7 - i) * 8));  // big-endian: time order
  out.append(db_key);
  return out;
}

class LmdbKvBackend final : public KvBackend {
 public:
  explicit LmdbKvBackend(std::unique_ptr<GroupCommitter> store) : store_(std::move(store)) {
    kv_ = store_->Dbi(kKv);
    exp_ = store_->Dbi(kExpiry);
    store_->SetPeriodic(std::chrono::milliseconds(100),
                        [this](WriteTxn& txn) { return Sweep(txn); });
  }

  std::string name() const override { return "lmdb"; }

  Task<Entry> Get(std::string key) override {
    co_return store_->Read([&](MDB_txn* txn) -> Result<Entry> {
      Record r;
      auto found = Find(txn, key, r, NowMs());
      if (!found) return Fail(found.error());
      if (!*found) return Fail(ErrorCode::kNotFound, "key not found");
      return Entry{std::string(r.value), std::string(r.content_type), r.version, r.expires_at_ms};
    });
  }

  Task<std::vector<std::optional<Entry>>> GetMany(std::vector<std::string> keys) override {
    co_return store_->Read([&](MDB_txn* txn) -> Result<std::vector<std::optional<Entry>>> {
      std::vector<std::optional<Entry>> out;
      out.reserve(keys.size());
      int64_t now = NowMs();
      for (const auto& key : keys) {
        Record r;
        auto found = Find(txn, key, r, now);
        if (!found) return Fail(found.error());
        out.push_back(
            *found ? std::optional<Entry>(Entry{std::string(r.value), std::string(r.content_type),
                                                r.version, r.expires_at_ms})
                   : std::nullopt);
      }
      return out;
    });
  }

  Task<uint64_t> Set(std::string key, std::string value, SetOptions options) override {
    std::function<Result<uint64_t>(WriteTxn&)> op =
        [this, key = std::move(key), value = std::move(value),
         options = std::move(options)](WriteTxn& txn) -> Result<uint64_t> {
      int64_t now = NowMs();
      Record current;
      auto found = Find(txn.raw(), key, current, now);
      if (!found) return Fail(found.error());
      if (options.only_if_absent && *found)
        return Fail(ErrorCode::kPreconditionFailed, "key exists (nx)");
      if (options.only_if_present && !*found)
        return Fail(ErrorCode::kPreconditionFailed, "key does not exist (xx)");
      if (options.if_version && (*found ? current.version : 0) != *options.if_version) {
        return Fail(ErrorCode::kPreconditionFailed, "version does not match If-Match");
      }
      int64_t expires = options.ttl_ms > 0             ? now + options.ttl_ms
                        : (options.keep_ttl && *found) ? current.expires_at_ms
                                                       : 0;
      return Put(txn, key, value, options.content_type, expires);
    };
    co_return co_await store_->Write<uint64_t>(std::move(op));
  }

  Task<void> SetMany(std::vector<std::pair<std::string, std::string>> items,
                     int64_t ttl_ms) override {
    std::function<Result<void>(WriteTxn&)> op = [this, items = std::move(items),
                                                 ttl_ms](WriteTxn& txn) -> Result<void> {
      int64_t expires = ttl_ms > 0 ? NowMs() + ttl_ms : 0;
      for (const auto& [key, value] : items) {
        if (auto v = Put(txn, key, value, "", expires); !v) return Fail(v.error());
      }
      return {};
    };
    co_return co_await store_->Write<void>(std::move(op));
  }

  Task<bool> Delete(std::string key, std::optional<uint64_t> if_version) override {
    std::function<Result<bool>(WriteTxn&)> op = [this, key = std::move(key),
                                                 if_version](WriteTxn& txn) -> Result<bool> {
      Record current;
      auto found = Find(txn.raw(), key, current, NowMs());
      if (!found) return Fail(found.error());
      if (if_version && (*found ? current.version : 0) != *if_version) {
        return Fail(ErrorCode::kPreconditionFailed, "version does not match If-Match");
      }
      if (auto erased = Erase(txn, key); !erased) return Fail(erased.error());
      return *found;
    };
    co_return co_await store_->Write<bool>(std::move(op));
  }

  Task<uint64_t> DeleteMany(std::vector<std::string> keys) override {
    std::function<Result<uint64_t>(WriteTxn&)> op =
        [this, keys = std::move(keys)](WriteTxn& txn) -> Result<uint64_t> {
      uint64_t n = 0;
      int64_t now = NowMs();
      for (const auto& key : keys) {
        Record current;
        auto found = Find(txn.raw(), key, current, now);
        if (!found) return Fail(found.error());
        if (auto erased = Erase(txn, key); !erased) return Fail(erased.error());
        if (*found) ++n;
      }
      return n;
    };
    co_return co_await store_->Write<uint64_t>(std::move(op));
  }

  Task<int64_t> Increment(std::string key, int64_t by) override {
    std::function<Result<int64_t>(WriteTxn&)> op = [this, key = std::move(key),
                                                    by](WriteTxn& txn) -> Result<int64_t> {
      Record current;
      auto found = Find(txn.raw(), key, current, NowMs());
      if (!found) return Fail(found.error());
      auto sum =
          AddToInteger(*found ? std::optional<std::string_view>(current.value) : std::nullopt, by);
      if (!sum) return Fail(sum.error());
      std::string content_type(*found ? current.content_type : std::string_view{});
      int64_t expires = *found ? current.expires_at_ms : 0;
      if (auto v = Put(txn, key, std::to_string(*sum), content_type, expires); !v)
        return Fail(v.error());
      return *sum;
    };
    co_return co_await store_->Write<int64_t>(std::move(op));
  }

  Task<std::optional<int64_t>> ExpiresAt(std::string key) override {
    co_return store_->Read([&](MDB_txn* txn) -> Result<std::optional<int64_t>> {
      Record r;
      auto found = Find(txn, key, r, NowMs());
      if (!found) return Fail(found.error());
      return *found ? std::optional<int64_t>(r.expires_at_ms) : std::nullopt;
    });
  }

  Task<bool> Expire(std::string key, int64_t ttl_ms) override {
    std::function<Result<bool>(WriteTxn&)> op = [this, key = std::move(key),
                                                 ttl_ms](WriteTxn& txn) -> Result<bool> {
      return Retime(txn, key, ttl_ms, /*persist=*/false);
    };
    co_return co_await store_->Write<bool>(std::move(op));
  }

  Task<bool> Persist(std::string key) override {
    std::function<Result<bool>(WriteTxn&)> op =
        [this, key = std::move(key)](WriteTxn& txn) -> Result<bool> {
      return Retime(txn, key, 0, /*persist=*/true);
    };
    co_return co_await store_->Write<bool>(std::move(op));
  }

  Task<uint64_t> Version(std::string key) override {
    co_return store_->Read([&](MDB_txn* txn) -> Result<uint64_t> {
      Record r;
      auto found = Find(txn, key, r, NowMs());
      if (!found) return Fail(found.error());
      return *found ? r.version : 0;
    });
  }

  Task<KeysPage> Keys(std::string pattern, std::string cursor, size_t limit) override {
    co_return store_->Read([&](MDB_txn* txn) -> Result<KeysPage> {
      KeysPage page;
      std::string prefix = GlobLiteralPrefix(pattern);
      if (prefix.size() > kLongPrefix) prefix.resize(kLongPrefix);
      MDB_cursor* cur = nullptr;
      if (int rc = mdb_cursor_open(txn, kv_, &cur); rc != 0)
        return Fail(LmdbError(rc, "open cursor"));
      std::string start = cursor.empty() || cursor < prefix ? prefix : cursor;
      MDB_val k = Val(start), v;
      // LMDB refuses an empty key: an empty start means the first key.
      int rc = mdb_cursor_get(cur, &k, &v, start.empty() ? MDB_FIRST : MDB_SET_RANGE);
      if (rc == 0 && !cursor.empty() &&
          std::string_view(static_cast<char*>(k.mv_data), k.mv_size) == cursor) {
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
      }
      int64_t now = NowMs();
      size_t examined = 0, work = 0;
      std::string last;
      for (; rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        std::string_view db_key(static_cast<char*>(k.mv_data), k.mv_size);
        if (db_key.substr(0, prefix.size()) != prefix) break;
        if (page.keys.size() == limit || ++examined > kMaxKeysExamined || work > kMaxGlobWork) {
          page.cursor = EncodeCursor(last);
          break;
        }
        last.assign(db_key);
        Record r;
        if (!Decode(v, r) || !IsLive(r.expires_at_ms, now)) continue;
        std::string_view key = r.full_key.empty() ? db_key : r.full_key;
        if (GlobMatch(pattern, key, &work)) page.keys.emplace_back(key);
      }
      mdb_cursor_close(cur);
      if (rc != 0 && rc != MDB_NOTFOUND) return Fail(LmdbError(rc, "scan"));
      return page;
    });
  }

  Task<void> Ping() override {
    co_return store_->Read([](MDB_txn*) -> Result<void> { return {}; });
  }

  void Close() override { store_->Close(); }

 private:
  // Looks up a live record; the views in `r` point into the transaction's pages.
  Result<bool> Find(MDB_txn* txn, std::string_view key, Record& r, int64_t now) {
    std::string db_key = DbKey(key);
    MDB_val k = Val(db_key), v;
    int rc = mdb_get(txn, kv_, &k, &v);
    if (rc == MDB_NOTFOUND) return false;
    if (rc != 0) return Fail(LmdbError(rc, "get"));
    if (!Decode(v, r)) return Fail(ErrorCode::kBackend, "lmdb: corrupt record");
    if (!r.full_key.empty() && r.full_key != key) return false;  // digest collision: another key
    return IsLive(r.expires_at_ms, now);
  }

  // Writes `key` with a new version and keeps the expiry index in step (same transaction).
  Result<uint64_t> Put(WriteTxn& txn, std::string_view key, std::string_view value,
                       std::string_view content_type, int64_t expires) {
    std::string db_key = DbKey(key);
    if (auto idx = DropExpiry(txn, db_key); !idx) return Fail(idx.error());
    uint64_t version = ++store_->last_version();
    std::string record = Encode(version, expires, content_type, key, value);
    if (int rc = txn.Put(kKv, db_key, record); rc != 0) return Fail(LmdbError(rc, "put"));
    if (expires != 0) {
      if (int rc = txn.Put(kExpiry, ExpiryKey(expires, db_key), {}); rc != 0)
        return Fail(LmdbError(rc, "put expiry"));
    }
    return version;
  }

  // Removes the expiry index entry of the stored record (live or not), if any.
  Result<void> DropExpiry(WriteTxn& txn, const std::string& db_key) {
    MDB_val k = Val(db_key), v;
    int rc = mdb_get(txn.raw(), kv_, &k, &v);
    if (rc == MDB_NOTFOUND) return {};
    if (rc != 0) return Fail(LmdbError(rc, "get"));
    Record old;
    if (Decode(v, old) && old.expires_at_ms != 0) {
      rc = txn.Del(kExpiry, ExpiryKey(old.expires_at_ms, db_key));
      if (rc != 0 && rc != MDB_NOTFOUND) return Fail(LmdbError(rc, "delete expiry"));
    }
    return {};
  }

  Result<void> Erase(WriteTxn& txn, std::string_view key) {
    std::string db_key = DbKey(key);
    if (auto idx = DropExpiry(txn, db_key); !idx) return idx;
    int rc = txn.Del(kKv, db_key);
    if (rc != 0 && rc != MDB_NOTFOUND) return Fail(LmdbError(rc, "delete"));
    return {};
  }

  Result<bool> Retime(WriteTxn& txn, std::string_view key, int64_t ttl_ms, bool persist) {
    Record current;
    int64_t now = NowMs();
    auto found = Find(txn.raw(), key, current, now);
    if (!found) return Fail(found.error());
    if (!*found) return false;
    if (!persist && ttl_ms <= 0) {
      if (auto erased = Erase(txn, key); !erased) return Fail(erased.error());
      return true;
    }
    std::string value(current.value), content_type(current.content_type);
    if (auto v = Put(txn, key, value, content_type, persist ? 0 : now + ttl_ms); !v)
      return Fail(v.error());
    return true;
  }

  // Deletes up to 1000 expired records per run, oldest expiry first. A record is deleted only if
  // its own expiry still equals the index entry's (a later set may have moved it).
  bool Sweep(WriteTxn& txn) {
    MDB_cursor* cur = nullptr;
    if (mdb_cursor_open(txn.raw(), exp_, &cur) != 0) return false;
    int64_t now = NowMs();
    std::vector<std::string> due;  // expiry index keys, collected before anything changes
    MDB_val k, v;
    for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && due.size() < 1000;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
      if (k.mv_size < 8) continue;
      const auto* p = static_cast<const unsigned char*>(k.mv_data);
      uint64_t expires = 0;
      for (int i = 0; i < 8; ++i) expires = (expires << 8) | p[i];
      if (static_cast<int64_t>(expires) > now) break;
      due.emplace_back(static_cast<const char*>(k.mv_data), k.mv_size);
    }
    mdb_cursor_close(cur);
    for (const auto& index_key : due) {
      uint64_t expires = 0;
      for (int i = 0; i < 8; ++i)
        expires = (expires << 8) | static_cast<unsigned char>(index_key[i]);
      std::string_view db_key = std::string_view(index_key).substr(8);
      MDB_val rk = Val(db_key), rv;
      Record r;
      if (mdb_get(txn.raw(), kv_, &rk, &rv) == 0 && Decode(rv, r) &&
          r.expires_at_ms == static_cast<int64_t>(expires)) {
        txn.Del(kKv, db_key);
      }
      txn.Del(kExpiry, index_key);
    }
    return !due.empty();
  }

  std::unique_ptr<GroupCommitter> store_;
  MDB_dbi kv_ = 0, exp_ = 0;
};

}  // namespace

Result<std::unique_ptr<KvBackend>> OpenLmdbKvBackend(const Uri& uri) {
  if (uri.path.empty() || (!uri.host.empty() && uri.host != "localhost")) {
    return Fail(ErrorCode::kBadRequest,
                "expected file:///absolute/dir or lmdb:///absolute/dir (three slashes)");
  }
  if (uri.scheme == "redb")
    spdlog::info("kv: redb:// is served by LMDB (on-disk format is LMDB, not redb)");
  auto store = GroupCommitter::Open(uri.path, {"kv", "expiry"});
  if (!store) return Fail(store.error());
  return std::unique_ptr<KvBackend>(std::make_unique<LmdbKvBackend>(std::move(*store)));
}

}  // namespace mikcar::kv
