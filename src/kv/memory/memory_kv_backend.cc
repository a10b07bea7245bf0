#include "kv/memory/memory_kv_backend.h"

#include <map>
#include <mutex>
#include <set>
#include <shared_mutex>

#include "kv/glob.h"
#include "kv/kv_rules.h"

namespace mikcar::kv {
namespace {

class MemoryKvBackend final : public KvBackend {
 public:
  std::string name() const override { return "memory"; }

  Task<Entry> Get(std::string key) override {
    std::shared_lock lock(mu_);
    const Entry* e = Live(key, NowMs());
    if (e == nullptr) co_return Fail(ErrorCode::kNotFound, "key not found");
    co_return *e;
  }

  Task<std::vector<std::optional<Entry>>> GetMany(std::vector<std::string> keys) override {
    std::vector<std::optional<Entry>> out;
    out.reserve(keys.size());
    std::shared_lock lock(mu_);
    int64_t now = NowMs();
    for (const auto& key : keys) {
      const Entry* e = Live(key, now);
      out.push_back(e ? std::optional<Entry>(*e) : std::nullopt);
    }
    co_return out;
  }

  Task<uint64_t> Set(std::string key, std::string value, SetOptions options) override {
    std::unique_lock lock(mu_);
    int64_t now = Sweep();
    Entry* current = LiveMutable(key, now);
    if (options.only_if_absent && current)
      co_return Fail(ErrorCode::kPreconditionFailed, "key exists (nx)");
    if (options.only_if_present && !current)
      co_return Fail(ErrorCode::kPreconditionFailed, "key does not exist (xx)");
    if (options.if_version && (current ? current->version : 0) != *options.if_version) {
      co_return Fail(ErrorCode::kPreconditionFailed, "version does not match If-Match");
    }
    int64_t expires = options.ttl_ms > 0              ? now + options.ttl_ms
                      : (options.keep_ttl && current) ? current->expires_at_ms
                                                      : 0;
    co_return Put(key, std::move(value), std::move(options.content_type), expires);
  }

  Task<void> SetMany(std::vector<std::pair<std::string, std::string>> items,
                     int64_t ttl_ms) override {
    std::unique_lock lock(mu_);
    int64_t now = Sweep();
    for (auto& [key, value] : items) Put(key, std::move(value), "", ttl_ms > 0 ? now + ttl_ms : 0);
    co_return Result<void>{};
  }

  Task<bool> Delete(std::string key, std::optional<uint64_t> if_version) override {
    std::unique_lock lock(mu_);
    int64_t now = Sweep();
    Entry* current = LiveMutable(key, now);
    if (if_version && (current ? current->version : 0) != *if_version) {
      co_return Fail(ErrorCode::kPreconditionFailed, "version does not match If-Match");
    }
    co_return Erase(key) && current != nullptr;
  }

  Task<uint64_t> DeleteMany(std::vector<std::string> keys) override {
    std::unique_lock lock(mu_);
    int64_t now = Sweep();
    uint64_t n = 0;
    for (const auto& key : keys) {
      bool live = LiveMutable(key, now) != nullptr;
      if (Erase(key) && live) ++n;
    }
    co_return n;
  }

  Task<int64_t> Increment(std::string key, int64_t by) override {
    std::unique_lock lock(mu_);
    int64_t now = Sweep();
    Entry* current = LiveMutable(key, now);
    auto sum =
        AddToInteger(current ? std::optional<std::string_view>(current->value) : std::nullopt, by);
    if (!sum) co_return Fail(sum.error());
    Put(key, std::to_string(*sum), current ? current->content_type : "",
        current ? current->expires_at_ms : 0);
    co_return *sum;
  }

  Task<std::optional<int64_t>> ExpiresAt(std::string key) override {
    std::shared_lock lock(mu_);
    const Entry* e = Live(key, NowMs());
    co_return e ? std::optional<int64_t>(e->expires_at_ms) : std::nullopt;
  }

  Task<bool> Expire(std::string key, int64_t ttl_ms) override {
    std::unique_lock lock(mu_);
    int64_t now = Sweep();
    Entry* current = LiveMutable(key, now);
    if (!current) co_return false;
    if (ttl_ms <= 0) {
      Erase(key);
    } else {
      SetExpiry(key, *current, now + ttl_ms);
      current->version = ++last_version_;
    }
    co_return true;
  }

  Task<bool> Persist(std::string key) override {
    std::unique_lock lock(mu_);
    Entry* current = LiveMutable(key, Sweep());
    if (!current) co_return false;
    SetExpiry(key, *current, 0);
    current->version = ++last_version_;
    co_return true;
  }

  Task<uint64_t> Version(std::string key) override {
    std::shared_lock lock(mu_);
    const Entry* e = Live(key, NowMs());
    co_return e ? e->version : 0;
  }

  Task<KeysPage> Keys(std::string pattern, std::string cursor, size_t limit) override {
    KeysPage page;
    std::string prefix = GlobLiteralPrefix(pattern);
    std::shared_lock lock(mu_);
    int64_t now = NowMs();
    auto it = cursor.empty() ? data_.lower_bound(prefix) : data_.upper_bound(cursor);
    if (!cursor.empty() && cursor < prefix) it = data_.lower_bound(prefix);
    size_t examined = 0, work = 0;
    for (; it != data_.end(); ++it) {
      const std::string& key = it->first;
      if (key.compare(0, prefix.size(), prefix) != 0) break;
      if (page.keys.size() == limit || ++examined > kMaxKeysExamined || work > kMaxGlobWork) {
        page.cursor = EncodeCursor(std::prev(it)->first);  // the last key examined
        break;
      }
      if (IsLive(it->second.expires_at_ms, now) && GlobMatch(pattern, key, &work))
        page.keys.push_back(key);
    }
    co_return page;
  }

  Task<void> Ping() override { co_return Result<void>{}; }

 private:
  const Entry* Live(const std::string& key, int64_t now) const {
    auto it = data_.find(key);
    if (it == data_.end() || !IsLive(it->second.expires_at_ms, now)) return nullptr;
    return &it->second;
  }
  Entry* LiveMutable(const std::string& key, int64_t now) {
    return const_cast<Entry*>(Live(key, now));
  }

  uint64_t Put(const std::string& key, std::string value, std::string content_type,
               int64_t expires) {
    Entry& e = data_[key];
    SetExpiry(key, e, expires);
    e.value = std::move(value);
    e.content_type = std::move(content_type);
    e.version = ++last_version_;
    return e.version;
  }

  void SetExpiry(const std::string& key, Entry& e, int64_t expires) {
    if (e.expires_at_ms != 0) expiry_.erase({e.expires_at_ms, key});
    e.expires_at_ms = expires;
    if (expires != 0) expiry_.emplace(expires, key);
  }

  bool Erase(const std::string& key) {
    auto it = data_.find(key);
    if (it == data_.end()) return false;
    if (it->second.expires_at_ms != 0) expiry_.erase({it->second.expires_at_ms, key});
    data_.erase(it);
    return true;
  }

  // Purges a bounded number of expired keys; every write pays a little so dead keys never pile up.
  int64_t Sweep() {
    int64_t now = NowMs();
    for (int i = 0; i < 64 && !expiry_.empty() && expiry_.begin()->first <= now; ++i) {
      auto node = expiry_.extract(expiry_.begin());
      data_.erase(node.value().second);
    }
    return now;
  }

  std::shared_mutex mu_;
  std::map<std::string, Entry, std::less<>> data_;
  std::set<std::pair<int64_t, std::string>> expiry_;
  uint64_t last_version_ = 0;
};

}  // namespace

std::unique_ptr<KvBackend> NewMemoryKvBackend() { return std::make_unique<MemoryKvBackend>(); }

}  // namespace mikcar::kv
