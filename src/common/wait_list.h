// A FIFO of coroutines each waiting, until its own deadline, for a resource (a pooled connection)
// that another thread hands over. Not a lock itself: the owner's mutex guards it.
//
//   // waiting side
//   auto conn = co_await waiters.Wait(mu, deadline, try_now, timeout_error);
//   // releasing side, under mu
//   if (!waiters.Offer(conn)) idle.push_back(std::move(conn));
#pragma once

#include <atomic>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>

#include "common/async.h"
#include "mikcar/error.h"

namespace mikcar {

template <typename T>
class WaitList {
 public:
  // Under `mu`, `try_now` may produce the value at once (no wait). Otherwise the coroutine waits
  // until Offer() hands one over, or fails with `timeout` at `deadline`.
  boost::asio::awaitable<Result<T>> Wait(std::mutex& mu,
                                         std::chrono::steady_clock::time_point deadline,
                                         std::function<std::optional<T>()> try_now, Error timeout) {
    auto ex = co_await boost::asio::this_coro::executor;
    auto waiter = std::make_shared<Waiter>();
    auto start = [this, &mu, waiter, deadline, ex, try_now = std::move(try_now),
                  timeout = std::move(timeout)](auto done) mutable {
      waiter->done = std::move(done);
      auto timer = std::make_shared<boost::asio::steady_timer>(ex, deadline);
      {
        std::lock_guard lock(mu);
        if (auto value = try_now()) {
          waiter->claimed = true;
          waiter->done->Complete(std::move(*value));
          return;
        }
        waiter->timer = timer;  // Offer() cancels it: a served wait frees its memory at once
        waiters_.push_back(waiter);
      }
      // An Offer() before this line posts its cancel to this thread, so it runs after it.
      timer->async_wait(
          [waiter, timer, timeout = std::move(timeout)](boost::system::error_code ec) {
            if (ec || waiter->claimed.exchange(true)) return;
            waiter->done->Complete(tl::unexpected<Error>(timeout));
          });
    };
    co_return co_await Suspend<T>(std::move(start));
  }

  // Under the owner's mutex: hands `value` to the oldest waiter still waiting. False, with
  // `value` untouched, when nobody waits.
  bool Offer(T& value) {
    while (!waiters_.empty()) {
      auto waiter = std::move(waiters_.front());
      waiters_.pop_front();
      if (waiter->claimed.exchange(true)) continue;  // timed out already
      waiter->done->Complete(std::move(value));
      if (auto timer = std::move(waiter->timer)) {
        // The timer belongs to the waiter's thread: cancel it there.
        boost::asio::post(timer->get_executor(), [timer] { timer->cancel(); });
      }
      return true;
    }
    return false;
  }

 private:
  struct Waiter {
    std::shared_ptr<Completion<T>> done;
    std::atomic<bool> claimed{false};
    std::shared_ptr<boost::asio::steady_timer> timer;  // guarded by the owner's mutex
  };
  std::deque<std::shared_ptr<Waiter>> waiters_;
};

}  // namespace mikcar
