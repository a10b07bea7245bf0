// Long-polling for queue backends whose server cannot push to us cheaply (Redis Streams read
// inside Lua scripts, RabbitMQ basic.get): a receive tries its server, then sleeps until the
// next poll or until this process makes a message ready on the same key, whichever is first.
// So a push through this sidecar is seen at once and one through another sidecar within the
// poll interval. Thread-safe; the cancel of a sleeping timer is posted to the timer's own
// executor (mikcar runs one io_context per thread, so the post runs after the wait began).
#pragma once

#include <algorithm>
#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "mikcar/queue/backend.h"

namespace mikcar::queue {

class LocalWake {
 public:
  // Interest in one key for the length of a receive (a slot exists only while watched, so
  // pushes to unwatched queues cost one hash lookup and no memory).
  class Watch {
   public:
    Watch(LocalWake* owner, std::string key, uint64_t seen)
        : owner_(owner), key_(std::move(key)), seen_(seen) {}
    Watch(const Watch&) = delete;
    Watch& operator=(const Watch&) = delete;
    ~Watch() { owner_->Unwatch(key_); }

   private:
    friend class LocalWake;
    LocalWake* owner_;
    std::string key_;
    uint64_t seen_;
  };

  std::unique_ptr<Watch> Start(std::string key) {
    std::lock_guard lock(mu_);
    Slot& slot = slots_[key];
    ++slot.watchers;
    return std::make_unique<Watch>(this, std::move(key), slot.generation);
  }

  // Sleeps until `until`, or returns early after a Notify(key) or NotifyAll() that came after
  // the previous Wait on `watch` (or its Start) returned.
  boost::asio::awaitable<void> Wait(Watch& watch, Clock::time_point until) {
    auto timer = std::make_shared<boost::asio::steady_timer>(
        co_await boost::asio::this_coro::executor, until);
    {
      std::lock_guard lock(mu_);
      Slot& slot = slots_[watch.key_];
      if (slot.generation != watch.seen_) {
        watch.seen_ = slot.generation;
        co_return;
      }
      slot.timers.push_back(timer);
    }
    co_await timer->async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
    std::lock_guard lock(mu_);
    Slot& slot = slots_[watch.key_];
    std::erase(slot.timers, timer);
    watch.seen_ = slot.generation;
  }

  void Notify(const std::string& key) {
    std::lock_guard lock(mu_);
    auto it = slots_.find(key);
    if (it != slots_.end()) Wake(it->second);
  }

  void NotifyAll() {
    std::lock_guard lock(mu_);
    for (auto& [key, slot] : slots_) Wake(slot);
  }

 private:
  struct Slot {
    uint64_t generation = 0;
    size_t watchers = 0;
    std::vector<std::shared_ptr<boost::asio::steady_timer>> timers;
  };

  static void Wake(Slot& slot) {
    ++slot.generation;
    for (auto& timer : slot.timers) {
      boost::asio::post(timer->get_executor(), [timer] { timer->cancel(); });
    }
    slot.timers.clear();
  }

  void Unwatch(const std::string& key) {
    std::lock_guard lock(mu_);
    auto it = slots_.find(key);
    if (it != slots_.end() && --it->second.watchers == 0) slots_.erase(it);
  }

  std::mutex mu_;
  std::unordered_map<std::string, Slot> slots_;
};

// The receive loop of a polling backend. `fetch(n)` takes up to n ready messages now (and
// leases or removes them). Returns the first batch at once, keeps gathering for
// `receive.gather`, and never starts a fetch at or after `receive.wait_until` except the first
// one, so no message is taken for a request that has already given up. A failed fetch after
// some messages were taken returns those (they are gone from the server already).
template <typename Fetch>
boost::asio::awaitable<Result<std::vector<Message>>> PollReceive(LocalWake& wake, std::string key,
                                                                 const Receive& receive,
                                                                 std::chrono::milliseconds poll,
                                                                 const std::atomic<bool>& draining,
                                                                 Fetch fetch) {
  auto watch = wake.Start(std::move(key));
  std::vector<Message> out;
  std::optional<Clock::time_point> gather_end;
  const size_t max = std::max<size_t>(receive.max_messages, 1);
  for (;;) {
    Result<std::vector<Message>> got = co_await fetch(max - out.size());
    if (!got) {
      if (out.empty()) co_return tl::unexpected<Error>(std::move(got.error()));
      break;
    }
    for (auto& m : *got) out.push_back(std::move(m));
    if (out.size() >= max) break;
    auto now = Clock::now();
    if (!out.empty() && !gather_end)
      gather_end = std::min(now + receive.gather, receive.wait_until);
    const auto end = gather_end.value_or(receive.wait_until);
    if (now >= end || draining.load()) break;
    co_await wake.Wait(*watch, std::min(end, now + poll));
    if (Clock::now() >= end) break;
  }
  co_return out;
}

}  // namespace mikcar::queue
