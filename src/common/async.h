// Suspending a coroutine until another thread (a writer thread, a worker pool, a client
// connection's thread) finishes its work: the one bridge between threads in mikcar.
//
//   co_return co_await Suspend<int>([&](std::shared_ptr<Completion<int>> done) {
//     worker.Post([done] { done->Complete(42); });   // from any thread, exactly once
//   });
//
// The coroutine resumes on its own executor, never on the completing thread.
#pragma once

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <memory>
#include <utility>

#include "mikcar/error.h"

namespace mikcar {

template <typename T>
class Completion {
 public:
  template <typename Handler>
  explicit Completion(Handler&& handler)
      : executor_(boost::asio::get_associated_executor(handler)),
        handler_(std::forward<Handler>(handler)) {}

  // Resumes the awaiting coroutine with `result`. Call exactly once, from any thread.
  void Complete(Result<T> result) {
    boost::asio::post(executor_,
                      [handler = std::move(handler_), result = std::move(result)]() mutable {
                        std::move(handler)(std::move(result));
                      });
  }

 private:
  boost::asio::any_io_executor executor_;
  boost::asio::any_completion_handler<void(Result<T>)> handler_;
};

// Not a coroutine: `start` runs when the awaitable is awaited and receives the completion.
// Pass a named lambda (GCC 12 destroys capturing lambda temporaries of a co_await expression
// twice), e.g. `auto start = [...](auto done) {...}; co_await Suspend<T>(std::move(start));`.
template <typename T, typename Start>
boost::asio::awaitable<Result<T>> Suspend(Start&& start) {
  auto initiation = [start = std::forward<Start>(start)](auto handler) mutable {
    start(std::make_shared<Completion<T>>(std::move(handler)));
  };
  return boost::asio::async_initiate<decltype(boost::asio::use_awaitable), void(Result<T>)>(
      std::move(initiation), boost::asio::use_awaitable);
}

}  // namespace mikcar
