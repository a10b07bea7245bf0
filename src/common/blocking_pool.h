// A bounded pool of threads for blocking libraries (filesystem, SQLite, LMDB writes, …).
//
// Handlers `co_await pool.Run(fn)`: `fn` runs on a pool thread and the coroutine resumes on its
// own executor with the result, so an I/O thread never blocks. The queue is bounded: when
// `max_queued` jobs are waiting, Run() fails with UNAVAILABLE instead of growing without limit.
// Thread-safe.
#pragma once

#include <atomic>
#include <memory>
#include <type_traits>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "mikcar/error.h"

namespace mikcar {

class BlockingPool {
 public:
  BlockingPool(unsigned threads, size_t max_queued) : pool_(threads), max_queued_(max_queued) {}
  ~BlockingPool() { pool_.join(); }

  // Runs `fn` (returning Result<T>) on a pool thread.
  template <typename Fn>
  auto Run(Fn fn) -> boost::asio::awaitable<std::invoke_result_t<Fn>> {
    using R = std::invoke_result_t<Fn>;
    if (queued_.fetch_add(1, std::memory_order_relaxed) >= max_queued_) {
      queued_.fetch_sub(1, std::memory_order_relaxed);
      co_return Fail(ErrorCode::kUnavailable, "server busy: the blocking worker pool queue is full");
    }
    // A named local, not a temporary of the co_await expression: GCC 12 destroys capturing
    // lambda temporaries of co_await expressions twice.
    auto initiation = [this, fn = std::move(fn)](auto handler) mutable {
      boost::asio::any_io_executor ex = boost::asio::get_associated_executor(handler);
      boost::asio::post(pool_, [this, ex, fn = std::move(fn), handler = std::move(handler)]() mutable {
        queued_.fetch_sub(1, std::memory_order_relaxed);
        R result = fn();
        boost::asio::post(ex, [handler = std::move(handler), result = std::move(result)]() mutable {
          std::move(handler)(std::move(result));
        });
      });
    };
    co_return co_await boost::asio::async_initiate<decltype(boost::asio::use_awaitable), void(R)>(
        std::move(initiation), boost::asio::use_awaitable);
  }

  void Stop() { pool_.join(); }

 private:
  boost::asio::thread_pool pool_;
  std::atomic<size_t> queued_{0};
  size_t max_queued_;
};

}  // namespace mikcar
