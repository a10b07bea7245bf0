#include "queue/memory/memory_queue_backend.h"

#include <array>
#include <map>
#include <mutex>

#include "queue/embedded/embedded_queue.h"

namespace mikcar::queue {
namespace {

using embedded::Table;

// Ordered maps under one mutex: a "transaction" is the mutex held. Engine steps refuse before
// they write, and a map write cannot fail, so there is nothing to roll back.
class MemoryStore final : public embedded::Store {
 public:
  std::string name() const override { return "memory"; }

  boost::asio::awaitable<Result<void>> Write(
      std::function<Result<void>(embedded::Txn&)> fn) override {
    std::lock_guard lock(mu_);
    Txn txn(*this);
    co_return fn(txn);
  }

  Result<void> Read(const std::function<Result<void>(embedded::Txn&)>& fn) override {
    std::lock_guard lock(mu_);
    Txn txn(*this);
    return fn(txn);
  }

 private:
  using Map = std::map<std::string, std::string, std::less<>>;

  class Txn final : public embedded::Txn {
   public:
    explicit Txn(MemoryStore& store) : store_(store) {}
    Result<std::optional<std::string_view>> Get(Table table, std::string_view key) override {
      auto& map = store_.Tab(table);
      auto it = map.find(key);
      if (it == map.end()) return std::optional<std::string_view>();
      return std::optional<std::string_view>(it->second);
    }
    Result<std::optional<std::pair<std::string_view, std::string_view>>> Seek(
        Table table, std::string_view from) override {
      auto& map = store_.Tab(table);
      auto it = map.lower_bound(from);
      using Entry = std::pair<std::string_view, std::string_view>;
      if (it == map.end()) return std::optional<Entry>();
      return std::optional<Entry>(Entry{it->first, it->second});
    }
    Result<void> Put(Table table, std::string_view key, std::string_view value) override {
      store_.Tab(table).insert_or_assign(std::string(key), std::string(value));
      return {};
    }
    Result<void> Del(Table table, std::string_view key) override {
      auto& map = store_.Tab(table);
      if (auto it = map.find(key); it != map.end()) map.erase(it);
      return {};
    }
    uint64_t NextSeq() override { return ++store_.seq_; }

   private:
    MemoryStore& store_;
  };

  Map& Tab(Table table) { return tables_[static_cast<size_t>(table)]; }

  std::mutex mu_;
  std::array<Map, embedded::kTableCount> tables_;
  uint64_t seq_ = 0;
};

}  // namespace

Result<std::unique_ptr<QueueBackend>> OpenMemoryQueueBackend(const Uri& uri) {
  auto options = embedded::ParseOptions(uri);
  if (!options) return Fail(options.error());
  return embedded::NewEmbeddedQueueBackend(std::make_unique<MemoryStore>(), *options);
}

}  // namespace mikcar::queue
