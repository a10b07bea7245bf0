// Wakes long-polling coroutines when this process changes what they wait for (a KV key, a queue).
//
//   auto waiter = std::make_shared<WatchHub::Waiter>(co_await asio::this_coro::executor);
//   WatchHub::Registration registration(hub, key, waiter);
//   for (;;) { waiter->notified = false; <check>; timer wait unless waiter->notified; }
//
// Notify() posts to each waiter's own executor, so a waiter's state is touched only on its
// thread. Waiters still re-check periodically: writers in other processes are not seen here.
// Thread-safe.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>

namespace mikcar {

class WatchHub {
 public:
  // Lives on one executor; shared so a wake-up posted just before the watcher ends stays valid.
  struct Waiter {
    explicit Waiter(boost::asio::any_io_executor ex) : timer(ex) {}
    boost::asio::steady_timer timer;
    bool notified = false;
  };
  using Handle = std::list<std::pair<std::string, std::shared_ptr<Waiter>>>::iterator;

  // Registers `waiter` under `key` for its lifetime.
  class Registration {
   public:
    Registration(WatchHub& hub, std::string key, std::shared_ptr<Waiter> waiter)
        : hub_(hub), handle_(hub.Add(std::move(key), std::move(waiter))) {}
    ~Registration() { hub_.Remove(handle_); }
    Registration(const Registration&) = delete;
    Registration& operator=(const Registration&) = delete;

   private:
    WatchHub& hub_;
    Handle handle_;
  };

  Handle Add(std::string key, std::shared_ptr<Waiter> waiter) {
    std::lock_guard lock(mu_);
    return waiters_.emplace(waiters_.end(), std::move(key), std::move(waiter));
  }
  void Remove(Handle h) {
    std::lock_guard lock(mu_);
    waiters_.erase(h);
  }
  // Wakes every waiter of `key`.
  void Notify(std::string_view key) {
    std::lock_guard lock(mu_);
    for (auto& [k, w] : waiters_) {
      if (k == key) Wake(w);
    }
  }
  // Wakes every waiter (shutdown).
  void NotifyAll() {
    std::lock_guard lock(mu_);
    for (auto& entry : waiters_) Wake(entry.second);
  }

 private:
  static void Wake(const std::shared_ptr<Waiter>& w) {
    boost::asio::post(w->timer.get_executor(), [w] {
      w->notified = true;
      w->timer.cancel();
    });
  }

  std::mutex mu_;
  std::list<std::pair<std::string, std::shared_ptr<Waiter>>> waiters_;
};

}  // namespace mikcar
