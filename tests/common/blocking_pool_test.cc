#include "common/blocking_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <thread>

namespace mikcar {
namespace {

namespace asio = boost::asio;

TEST(BlockingPoolTest, RunsOffTheIoThreadAndResumesOnIt) {
  BlockingPool pool(2, 16);
  asio::io_context io(1);
  std::thread::id io_thread, worker_thread, resumed_thread;
  Result<int> got = Fail(ErrorCode::kInternal, "not run");
  auto task = [&]() -> asio::awaitable<void> {
    io_thread = std::this_thread::get_id();
    auto job = [&]() -> Result<int> {
      worker_thread = std::this_thread::get_id();
      return 42;
    };
    got = co_await pool.Run(job);
    resumed_thread = std::this_thread::get_id();
  };
  asio::co_spawn(io, task(), asio::detached);
  io.run();
  ASSERT_TRUE(got);
  EXPECT_EQ(*got, 42);
  EXPECT_NE(worker_thread, io_thread);
  EXPECT_EQ(resumed_thread, io_thread);
}

TEST(BlockingPoolTest, ErrorsPassThrough) {
  BlockingPool pool(1, 4);
  asio::io_context io(1);
  Result<void> got;
  auto task = [&]() -> asio::awaitable<void> {
    got = co_await pool.Run([]() -> Result<void> { return Fail(ErrorCode::kConflict, "busy"); });
  };
  asio::co_spawn(io, task(), asio::detached);
  io.run();
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error().code, ErrorCode::kConflict);
}

TEST(BlockingPoolTest, AFullQueueAnswersUnavailableInsteadOfGrowing) {
  BlockingPool pool(1, 2);
  asio::io_context io(1);
  std::atomic<bool> release{false};
  int ok = 0, unavailable = 0;
  auto slow = [&]() -> Result<int> {
    while (!release) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return 1;
  };
  auto task = [&]() -> asio::awaitable<void> {
    auto r = co_await pool.Run(slow);
    if (r)
      ++ok;
    else if (r.error().code == ErrorCode::kUnavailable)
      ++unavailable;
  };
  for (int i = 0; i < 5; ++i) asio::co_spawn(io, task(), asio::detached);
  std::thread releaser([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    release = true;
  });
  io.run();
  releaser.join();
  EXPECT_EQ(ok, 2);
  EXPECT_EQ(unavailable, 3);
}

}  // namespace
}  // namespace mikcar
