#include "queue/embedded/embedded_queue.h"

#include <algorithm>
#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <charconv>
#include <cstring>
#include <set>

#include "common/clock.h"
#include "common/units.h"
#include "common/watch_hub.h"

namespace mikcar::queue::embedded {
namespace {

namespace asio = boost::asio;

// Waiters re-check this often: lease expiries and writers in other processes are not notified.
constexpr auto kPoll = std::chrono::milliseconds(250);
constexpr size_t kReclaimPerWrite = 1000;
constexpr size_t kDedupSweepPerWrite = 64;

void AppendBe64(std::string& out, uint64_t v) {
  for (int i = 7; i >= 0; --i) out.push_back(static_cast<char>(v >> (i * 8)));
}
uint64_t ReadBe64(std::string_view s) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<unsigned char>(s[i]);
  return v;
}
std::string Be64(uint64_t v) {
  std::string out;
  AppendBe64(out, v);
  return out;
}

// A stored message: be64 seq | be64 received_at | be64 attempts | be64 id length | id | payload.
struct Record {
  uint64_t seq = 0;
  int64_t received_at_ms = 0;
  uint32_t attempts = 0;  // deliveries so far
  std::string id;
  std::string payload;
};

std::string Encode(const Record& r) {
  std::string out;
  out.reserve(32 + r.id.size() + r.payload.size());
  AppendBe64(out, r.seq);
  AppendBe64(out, static_cast<uint64_t>(r.received_at_ms));
  AppendBe64(out, r.attempts);
  AppendBe64(out, r.id.size());
  out += r.id;
  out += r.payload;
  return out;
}

Result<Record> Decode(std::string_view v) {
  if (v.size() < 32) return Fail(ErrorCode::kBackend, "queue store: corrupt message record");
  Record r;
  r.seq = ReadBe64(v);
  r.received_at_ms = static_cast<int64_t>(ReadBe64(v.substr(8)));
  r.attempts = static_cast<uint32_t>(ReadBe64(v.substr(16)));
  uint64_t id_size = ReadBe64(v.substr(24));
  if (id_size > v.size() - 32)
    return Fail(ErrorCode::kBackend, "queue store: corrupt message record");
  r.id.assign(v.substr(32, id_size));
  r.payload.assign(v.substr(32 + id_size));
  return r;
}

// Queue keys: "q<name>" for a queue, "t<topic>\x01<group>" for a subscriber group. Names never
// contain bytes below 0x20, so "<queue key>\0" is a prefix no other queue's keys share.
std::string QueueKey(std::string_view queue) { return "q" + std::string(queue); }
std::string GroupKey(std::string_view topic, std::string_view group) {
  return "t" + std::string(topic) + '\x01' + std::string(group);
}
std::string DeadLetterKey(std::string_view qkey) {
  if (qkey[0] == 'q') return std::string(qkey) + ".dlq";
  return "q" + std::string(qkey.substr(1, qkey.find('\x01') - 1)) + ".dlq";
}
std::string Prefix(std::string_view qkey) { return std::string(qkey) + '\0'; }
std::string ReadyKey(std::string_view qkey, int64_t due, uint64_t seq) {
  std::string k = Prefix(qkey);
  AppendBe64(k, static_cast<uint64_t>(std::max<int64_t>(due, 0)));
  AppendBe64(k, seq);
  return k;
}
bool StartsWith(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}
std::string FormatId(uint64_t seq) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id(16, '0');
  for (int i = 15; i >= 0; --i, seq >>= 4) id[i] = kHex[seq & 15];
  return id;
}

// The queue logic, each function one step inside a store transaction.
class Engine {
 public:
  explicit Engine(Options options) : options_(options) {}

  Result<void> Enqueue(Txn& t, std::string_view qkey, const Record& r, int64_t due) {
    if (auto ok = t.Put(Table::kReady, ReadyKey(qkey, due, r.seq), Encode(r)); !ok) return ok;
    return AdjustCounts(t, qkey, 1, 0);
  }

  Result<std::vector<std::string>> Push(Txn& t, std::string_view qkey,
                                        const std::vector<NewMessage>& messages, int64_t now) {
    std::vector<std::string> ids;
    ids.reserve(messages.size());
    if (auto swept = SweepDedup(t, now, kDedupSweepPerWrite); !swept) return Fail(swept.error());
    for (const auto& m : messages) {
      std::string dedup_key;
      if (!m.dedup_id.empty()) {
        dedup_key = Prefix(qkey) + m.dedup_id;
        auto seen = t.Get(Table::kDedup, dedup_key);
        if (!seen) return Fail(seen.error());
        if (*seen && (*seen)->size() >= 8 && static_cast<int64_t>(ReadBe64(**seen)) > now) {
          ids.emplace_back((*seen)->substr(8));
          continue;
        }
      }
      Record r{t.NextSeq(), now, 0, {}, m.payload};
      r.id = FormatId(r.seq);
      if (auto ok = Enqueue(t, qkey, r, now + m.delay_ms); !ok) return Fail(ok.error());
      if (!dedup_key.empty()) {
        int64_t expires = now + options_.dedup_window.count();
        std::string seen = Be64(static_cast<uint64_t>(expires)) + r.id;
        if (auto ok = t.Put(Table::kDedup, dedup_key, seen); !ok) return Fail(ok.error());
        if (auto ok =
                t.Put(Table::kDedupExpiry, Be64(static_cast<uint64_t>(expires)) + dedup_key, "");
            !ok)
          return Fail(ok.error());
      }
      ids.push_back(std::move(r.id));
    }
    return ids;
  }

  // Fans `payload` out to every group of `topic`; the groups' queue keys go to `woken`.
  Result<std::string> Publish(Txn& t, std::string_view topic, const std::string& payload,
                              int64_t now, std::vector<std::string>& woken) {
    woken.clear();
    Record r{t.NextSeq(), now, 0, {}, payload};
    r.id = FormatId(r.seq);
    std::string prefix = std::string(topic) + '\0';
    std::string from = prefix;
    for (;;) {
      auto entry = t.Seek(Table::kGroups, from);
      if (!entry) return Fail(entry.error());
      if (!*entry || !StartsWith((*entry)->first, prefix)) break;
      std::string key((*entry)->first);
      woken.push_back(GroupKey(topic, std::string_view(key).substr(prefix.size())));
      if (auto ok = Enqueue(t, woken.back(), r, now); !ok) return Fail(ok.error());
      from = key + '\0';
    }
    return r.id;
  }

  Result<bool> HasGroup(Txn& t, std::string_view topic, std::string_view group) {
    auto found = t.Get(Table::kGroups, std::string(topic) + '\0' + std::string(group));
    if (!found) return Fail(found.error());
    return found->has_value();
  }
  Result<void> AddGroup(Txn& t, std::string_view topic, std::string_view group) {
    auto has = HasGroup(t, topic, group);
    if (!has) return Fail(has.error());
    if (*has) return {};
    return t.Put(Table::kGroups, std::string(topic) + '\0' + std::string(group), "");
  }

  // Whether a Take would find something (a due message, an expired lease), or else when the
  // next delayed message of `qkey` is due (0: none).
  Result<bool> Peek(Txn& t, std::string_view qkey, int64_t now, int64_t& next_due) {
    next_due = 0;
    auto lease = t.Seek(Table::kLeaseExpiry, "");
    if (!lease) return Fail(lease.error());
    if (*lease && static_cast<int64_t>(ReadBe64((*lease)->first)) <= now) return true;
    std::string prefix = Prefix(qkey);
    auto entry = t.Seek(Table::kReady, prefix);
    if (!entry) return Fail(entry.error());
    if (!*entry || !StartsWith((*entry)->first, prefix)) return false;
    auto due = static_cast<int64_t>(ReadBe64((*entry)->first.substr(prefix.size())));
    if (due <= now) return true;
    next_due = due;
    return false;
  }

  // Takes up to `max` due messages of `qkey`, oldest first; leases them for `visibility` or
  // removes them.
  Result<void> Take(Txn& t, std::string_view qkey, size_t max,
                    std::optional<std::chrono::milliseconds> visibility, int64_t now,
                    std::vector<Message>& out) {
    out.clear();
    if (auto ok = Reclaim(t, now, kReclaimPerWrite, nullptr); !ok) return Fail(ok.error());
    std::string prefix = Prefix(qkey);
    while (out.size() < max) {
      auto entry = t.Seek(Table::kReady, prefix);
      if (!entry) return Fail(entry.error());
      if (!*entry || !StartsWith((*entry)->first, prefix)) break;
      if (static_cast<int64_t>(ReadBe64((*entry)->first.substr(prefix.size()))) > now) break;
      std::string key((*entry)->first);
      auto r = Decode((*entry)->second);
      if (!r) return Fail(r.error());
      if (auto ok = t.Del(Table::kReady, key); !ok) return ok;
      ++r->attempts;
      if (visibility) {
        int64_t expires = now + visibility->count();
        std::string lease_key = prefix + r->id;
        if (auto ok = t.Put(Table::kLeases, lease_key, Be64(expires) + Encode(*r)); !ok) return ok;
        if (auto ok = t.Put(Table::kLeaseExpiry, Be64(expires) + lease_key, ""); !ok) return ok;
        if (auto ok = AdjustCounts(t, qkey, -1, 1); !ok) return ok;
      } else if (auto ok = AdjustCounts(t, qkey, -1, 0); !ok) {
        return ok;
      }
      out.push_back(
          Message{std::move(r->id), std::move(r->payload), r->received_at_ms, r->attempts});
    }
    return {};
  }

  // Ends the lease of `id` on `qkey`: acked (removed) or nacked (ready again at `due`, or dead-
  // lettered). NOT_FOUND, before any write, when there is no live lease.
  Result<void> EndLease(Txn& t, std::string_view qkey, std::string_view id, int64_t now,
                        std::optional<int64_t> nack_due) {
    std::string lease_key = Prefix(qkey) + std::string(id);
    auto lease = t.Get(Table::kLeases, lease_key);
    if (!lease) return Fail(lease.error());
    if (!*lease || (*lease)->size() < 8 || static_cast<int64_t>(ReadBe64(**lease)) <= now) {
      return Fail(ErrorCode::kNotFound,
                  "no live lease for message " + std::string(id) +
                      " (unknown id, lease expired, or already acknowledged)");
    }
    int64_t expires = static_cast<int64_t>(ReadBe64(**lease));
    auto r = Decode((*lease)->substr(8));
    if (!r) return Fail(r.error());
    if (auto ok = t.Del(Table::kLeases, lease_key); !ok) return ok;
    if (auto ok = t.Del(Table::kLeaseExpiry, Be64(expires) + lease_key); !ok) return ok;
    if (auto ok = AdjustCounts(t, qkey, 0, -1); !ok) return ok;
    if (nack_due) return Requeue(t, qkey, *r, *nack_due, now);
    return {};
  }

  // Returns expired leases (oldest first, at most `limit`) to their queues; the queue keys that
  // got messages back go to `woken` when given.
  Result<bool> Reclaim(Txn& t, int64_t now, size_t limit, std::set<std::string>* woken) {
    bool any = false;
    for (size_t i = 0; i < limit; ++i) {
      auto entry = t.Seek(Table::kLeaseExpiry, "");
      if (!entry) return Fail(entry.error());
      if (!*entry || (*entry)->first.size() < 9) break;
      auto expires = static_cast<int64_t>(ReadBe64((*entry)->first));
      if (expires > now) break;
      std::string index_key((*entry)->first);
      std::string lease_key = index_key.substr(8);
      if (auto ok = t.Del(Table::kLeaseExpiry, index_key); !ok) return Fail(ok.error());
      any = true;
      auto lease = t.Get(Table::kLeases, lease_key);
      if (!lease) return Fail(lease.error());
      if (!*lease || (*lease)->size() < 8 || static_cast<int64_t>(ReadBe64(**lease)) != expires)
        continue;  // acked, or a stale index entry
      auto r = Decode((*lease)->substr(8));
      if (!r) return Fail(r.error());
      std::string qkey = lease_key.substr(0, lease_key.find('\0'));
      if (auto ok = t.Del(Table::kLeases, lease_key); !ok) return Fail(ok.error());
      if (auto ok = AdjustCounts(t, qkey, 0, -1); !ok) return Fail(ok.error());
      if (auto ok = Requeue(t, qkey, *r, now, now); !ok) return Fail(ok.error());
      if (woken) woken->insert(qkey);
    }
    return any;
  }

  Result<bool> SweepDedup(Txn& t, int64_t now, size_t limit) {
    bool any = false;
    for (size_t i = 0; i < limit; ++i) {
      auto entry = t.Seek(Table::kDedupExpiry, "");
      if (!entry) return Fail(entry.error());
      if (!*entry || (*entry)->first.size() < 8) break;
      if (static_cast<int64_t>(ReadBe64((*entry)->first)) > now) break;
      std::string index_key((*entry)->first);
      std::string dedup_key = index_key.substr(8);
      if (auto ok = t.Del(Table::kDedupExpiry, index_key); !ok) return Fail(ok.error());
      auto seen = t.Get(Table::kDedup, dedup_key);
      if (!seen) return Fail(seen.error());
      if (*seen && (*seen)->size() >= 8 && static_cast<int64_t>(ReadBe64(**seen)) <= now) {
        if (auto ok = t.Del(Table::kDedup, dedup_key); !ok) return Fail(ok.error());
      }
      any = true;
    }
    return any;
  }

  Result<Length> Len(Txn& t, std::string_view qkey, int64_t now) {
    Length len;
    auto counts = t.Get(Table::kCounts, qkey);
    if (!counts) return Fail(counts.error());
    uint64_t pending = 0;
    if (*counts && (*counts)->size() == 16) {
      pending = ReadBe64(**counts);
      len.leased = ReadBe64((*counts)->substr(8));
    }
    // Leases that expired but are not reclaimed yet are ready again (or dead).
    std::string prefix = Prefix(qkey);
    std::string from;
    for (size_t i = 0; i < kReclaimPerWrite * 10; ++i) {
      auto entry = t.Seek(Table::kLeaseExpiry, from);
      if (!entry) return Fail(entry.error());
      if (!*entry || static_cast<int64_t>(ReadBe64((*entry)->first)) > now) break;
      std::string key((*entry)->first);
      if (StartsWith(std::string_view(key).substr(8), prefix)) {
        auto lease = t.Get(Table::kLeases, key.substr(8));
        if (!lease) return Fail(lease.error());
        if (*lease && (*lease)->size() >= 40 && len.leased > 0) {
          --len.leased;
          if (auto r = Decode((*lease)->substr(8)); r && r->attempts < options_.max_attempts)
            ++pending;
        }
      }
      from = key + '\0';
    }
    from = ReadyKey(qkey, now + 1, 0);
    for (;;) {
      auto entry = t.Seek(Table::kReady, from);
      if (!entry) return Fail(entry.error());
      if (!*entry || !StartsWith((*entry)->first, prefix)) break;
      ++len.delayed;
      from = std::string((*entry)->first) + '\0';
    }
    len.ready = pending > len.delayed ? pending - len.delayed : 0;
    return len;
  }

 private:
  // A message whose delivery ended without an ack: ready again at `due`, or, with its attempts
  // used up, appended to the dead-letter queue with its id, payload and a fresh attempt count.
  Result<void> Requeue(Txn& t, std::string_view qkey, Record r, int64_t due, int64_t now) {
    if (r.attempts < options_.max_attempts) return Enqueue(t, qkey, r, due);
    r.attempts = 0;
    r.seq = t.NextSeq();
    return Enqueue(t, DeadLetterKey(qkey), r, now);
  }

  Result<void> AdjustCounts(Txn& t, std::string_view qkey, int64_t pending, int64_t leased) {
    auto counts = t.Get(Table::kCounts, qkey);
    if (!counts) return Fail(counts.error());
    uint64_t p = 0, l = 0;
    if (*counts && (*counts)->size() == 16) {
      p = ReadBe64(**counts);
      l = ReadBe64((*counts)->substr(8));
    }
    p = static_cast<uint64_t>(std::max<int64_t>(0, static_cast<int64_t>(p) + pending));
    l = static_cast<uint64_t>(std::max<int64_t>(0, static_cast<int64_t>(l) + leased));
    if (p == 0 && l == 0) return t.Del(Table::kCounts, qkey);
    return t.Put(Table::kCounts, qkey, Be64(p) + Be64(l));
  }

  Options options_;
};

class EmbeddedQueueBackend final : public QueueBackend {
 public:
  EmbeddedQueueBackend(std::unique_ptr<Store> store, Options options)
      : store_(std::move(store)), engine_(options) {
    store_->SetPeriodic(std::chrono::milliseconds(100), [this](Txn& t) {
      std::set<std::string> woken;
      int64_t now = UnixNowMs();
      auto reclaimed = engine_.Reclaim(t, now, kReclaimPerWrite, &woken);
      auto swept = engine_.SweepDedup(t, now, kDedupSweepPerWrite);
      for (const auto& qkey : woken) hub_.Notify(qkey);  // early: a waiter re-checks anyway
      return (reclaimed && *reclaimed) || (swept && *swept);
    });
  }

  // The store's periodic task uses this object: stop it first.
  ~EmbeddedQueueBackend() override { store_->Close(); }

  std::string name() const override { return store_->name(); }

  Task<std::vector<std::string>> Push(std::string queue,
                                      std::vector<NewMessage> messages) override {
    std::string qkey = QueueKey(queue);
    std::vector<std::string> ids;
    auto write = [&](Txn& t) -> Result<void> {
      auto pushed = engine_.Push(t, qkey, messages, UnixNowMs());
      if (!pushed) return Fail(pushed.error());
      ids = std::move(*pushed);
      return {};
    };
    if (auto ok = co_await store_->Write(write); !ok) co_return Fail(ok.error());
    hub_.Notify(qkey);
    co_return ids;
  }

  Task<std::vector<Message>> Pop(std::string queue, Receive receive) override {
    co_return co_await Take(QueueKey(queue), receive);
  }

  Task<void> Ack(std::string queue, std::string group, std::string id) override {
    // A queue's lease first; else the lease of a topic's group by the same name.
    auto acked = co_await EndLease(QueueKey(queue), id, std::nullopt);
    if (acked || acked.error().code != ErrorCode::kNotFound) co_return acked;
    auto group_acked = co_await EndLease(GroupKey(queue, group), id, std::nullopt);
    if (!group_acked && group_acked.error().code == ErrorCode::kNotFound) co_return acked;
    co_return group_acked;
  }

  Task<void> Nack(std::string queue, std::string id, std::chrono::milliseconds delay) override {
    std::string qkey = QueueKey(queue);
    auto nacked = co_await EndLease(qkey, id, delay);
    if (nacked) {
      hub_.Notify(qkey);
      hub_.Notify(DeadLetterKey(qkey));
    }
    co_return nacked;
  }

  Task<std::string> Publish(std::string topic, NewMessage message) override {
    std::string id;
    std::vector<std::string> woken;
    auto write = [&](Txn& t) -> Result<void> {
      auto published = engine_.Publish(t, topic, message.payload, UnixNowMs(), woken);
      if (!published) return Fail(published.error());
      id = std::move(*published);
      return {};
    };
    if (auto ok = co_await store_->Write(write); !ok) co_return Fail(ok.error());
    for (const auto& qkey : woken) hub_.Notify(qkey);
    co_return id;
  }

  Task<std::vector<Message>> Subscribe(std::string topic, std::string group,
                                       Receive receive) override {
    bool known = false;
    auto read = store_->Read([&](Txn& t) -> Result<void> {
      auto has = engine_.HasGroup(t, topic, group);
      if (!has) return Fail(has.error());
      known = *has;
      return {};
    });
    if (!read) co_return Fail(read.error());
    if (!known) {
      auto add = [&](Txn& t) { return engine_.AddGroup(t, topic, group); };
      if (auto ok = co_await store_->Write(add); !ok) co_return Fail(ok.error());
    }
    co_return co_await Take(GroupKey(topic, group), receive);
  }

  Task<Length> Len(std::string queue) override {
    Length len;
    std::string qkey = QueueKey(queue);
    auto read = store_->Read([&](Txn& t) -> Result<void> {
      auto counted = engine_.Len(t, qkey, UnixNowMs());
      if (!counted) return Fail(counted.error());
      len = *counted;
      return {};
    });
    if (!read) co_return Fail(read.error());
    co_return len;
  }

  Task<void> Ready() override {
    co_return store_->Read([](Txn&) -> Result<void> { return {}; });
  }

  void Drain() override {
    draining_ = true;
    hub_.NotifyAll();
  }

  void Close() override { store_->Close(); }

 private:
  Task<void> EndLease(std::string qkey, const std::string& id,
                      std::optional<std::chrono::milliseconds> nack_delay) {
    auto write = [&](Txn& t) -> Result<void> {
      int64_t now = UnixNowMs();
      std::optional<int64_t> due;
      if (nack_delay) due = now + nack_delay->count();
      return engine_.EndLease(t, qkey, id, now, due);
    };
    co_return co_await store_->Write(write);
  }

  // The long-poll: a read-only peek first (an idle wait writes nothing), a write to take what is
  // due, then a wait for a push here, the next delayed message, or the poll interval.
  Task<std::vector<Message>> Take(std::string qkey, Receive receive) {
    auto waiter = std::make_shared<WatchHub::Waiter>(co_await asio::this_coro::executor);
    WatchHub::Registration registration(hub_, qkey, waiter);
    std::vector<Message> got;
    std::optional<Clock::time_point> gather_until;
    for (;;) {
      if (receive.client_gone && *receive.client_gone) co_return got;  // nobody to deliver to
      waiter->notified = false;
      int64_t next_due = 0;
      bool due = false;
      auto peek = store_->Read([&](Txn& t) -> Result<void> {
        auto found = engine_.Peek(t, qkey, UnixNowMs(), next_due);
        if (!found) return Fail(found.error());
        due = *found;
        return {};
      });
      if (!peek) co_return Fail(peek.error());
      if (due) {
        std::vector<Message> taken;
        size_t want = receive.max_messages - got.size();
        auto write = [&](Txn& t) {
          return engine_.Take(t, qkey, want, receive.visibility, UnixNowMs(), taken);
        };
        if (auto ok = co_await store_->Write(write); !ok) {
          // Messages taken by an earlier round are already gone: deliver them, not the error.
          if (got.empty()) co_return Fail(ok.error());
          co_return got;
        }
        for (auto& m : taken) got.push_back(std::move(m));
      }
      auto now = Clock::now();
      if (got.size() >= receive.max_messages || draining_ || now >= receive.wait_until)
        co_return got;
      if (!got.empty()) {
        if (!gather_until) gather_until = std::min(now + receive.gather, receive.wait_until);
        if (now >= *gather_until) co_return got;
      }
      if (waiter->notified) continue;  // pushed while we looked
      auto wake = std::min(receive.wait_until, now + kPoll);
      if (gather_until) wake = std::min(wake, *gather_until);
      if (next_due > 0)
        wake = std::min(
            wake, now + std::chrono::milliseconds(std::max<int64_t>(0, next_due - UnixNowMs())));
      waiter->timer.expires_at(wake);
      co_await waiter->timer.async_wait(asio::as_tuple(asio::use_awaitable));
    }
  }

  std::unique_ptr<Store> store_;
  Engine engine_;
  WatchHub hub_;
  std::atomic<bool> draining_{false};
};

}  // namespace

Result<Options> ParseOptions(const Uri& uri) {
  Options options;
  if (auto v = uri.query_param("max_attempts")) {
    uint32_t n = 0;
    auto [ptr, ec] = std::from_chars(v->data(), v->data() + v->size(), n);
    if (v->empty() || ec != std::errc() || ptr != v->data() + v->size() || n < 1 || n > 1000) {
      return Fail(ErrorCode::kBadRequest,
                  "max_attempts: expected a number of deliveries 1-1000; got '" + *v + "'");
    }
    options.max_attempts = n;
  }
  if (auto v = uri.query_param("dedup_window")) {
    auto window = ParseDuration(*v);
    if (!window) return Fail(ErrorCode::kBadRequest, "dedup_window: " + window.error().message);
    options.dedup_window = *window;
  }
  return options;
}

std::unique_ptr<QueueBackend> NewEmbeddedQueueBackend(std::unique_ptr<Store> store,
                                                      Options options) {
  return std::make_unique<EmbeddedQueueBackend>(std::move(store), options);
}

}  // namespace mikcar::queue::embedded
