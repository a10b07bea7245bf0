// A bounded pool of threads for blocking libraries (filesystem, SQLite, LMDB writes, …).
//
// Handlers `co_await pool.Run(fn)`: `fn` runs on a pool thread and the coroutine resumes on its
// own executor with the result, so an I/O thread never blocks. It is bounded: when `max_queued`
// jobs are queued or running, Run() fails with UNAVAILABLE instead of growing without limit.
// Thread-safe.
#pragma once

#include <atomic>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <memory>
#include <type_traits>

#include "common/async.h"
#include "mikcar/error.h"

namespace mikcar {

class BlockingPool {
 public:
  BlockingPool(unsigned threads, size_t max_queued) : pool_(threads), max_queued_(max_queued) {}
  ~BlockingPool() { pool_.join(); }

  // Runs `fn` (returning Result<T>) on a pool thread. `fn` must be copyable.
  template <typename Fn>
  auto Run(Fn fn) -> boost::asio::awaitable<std::invoke_result_t<Fn>> {
    using R = std::invoke_result_t<Fn>;
    if (queued_.fetch_add(1, std::memory_order_relaxed) >= max_queued_) {
      queued_.fetch_sub(1, std::memory_order_relaxed);
      co_return Fail(ErrorCode::kUnavailable,
                     "server busy: the blocking worker pool queue is full");
    }
    auto start = [this, fn = std::move(fn)](auto done) mutable {
      boost::asio::post(pool_, [this, fn = std::move(fn), done] {
        auto result = fn();
        queued_.fetch_sub(1, std::memory_order_relaxed);
        done->Complete(std::move(result));
      });
    };
    co_return co_await Suspend<typename R::value_type>(std::move(start));
  }

  // Runs `fn` on a pool thread without waiting for it (cleanup work such as a rollback). Not
  // bounded: use only for work that frees resources.
  template <typename Fn>
  void Detach(Fn fn) {
    boost::asio::post(pool_, std::move(fn));
  }

  void Stop() { pool_.join(); }

 private:
  boost::asio::thread_pool pool_;
  std::atomic<size_t> queued_{0};
  size_t max_queued_;
};

}  // namespace mikcar
