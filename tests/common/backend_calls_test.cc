#include "common/backend_calls.h"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>

#include "http/metrics.h"

namespace mikcar {
namespace {

namespace asio = boost::asio;

asio::awaitable<Result<int>> Answer(Result<int> result) { co_return result; }

// Times each result under `operation` and returns the rendered metrics.
std::string TimeAll(BackendCalls& calls, std::vector<std::pair<std::string, Result<int>>> results) {
  asio::io_context io(1);
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        for (auto& [operation, result] : results) {
          auto got = co_await calls.Time(operation, Answer(result));
          EXPECT_EQ(got.has_value(), result.has_value());
        }
      },
      asio::detached);
  io.run();
  http::FamilySink sink;
  calls.Collect(sink);
  return sink.Render();
}

TEST(BackendCalls, CountsCallsAndOnlyTheBackendsFailures) {
  BackendCalls calls("kv", "redis", {"get", "set"});
  std::string text =
      TimeAll(calls, {{"get", 1},
                      {"get", Fail(ErrorCode::kNotFound, "no such key")},  // an answer
                      {"get", Fail(ErrorCode::kUnavailable, "redis is down")},
                      {"set", Fail(ErrorCode::kBackendTimeout, "slow")},
                      {"set", Fail(ErrorCode::kPreconditionFailed, "nx")},  // an answer
                      {"flush", 2}});                                       // not declared: other
  const std::string labels = "service=\"kv\",backend=\"redis\",operation=";
  EXPECT_NE(text.find("mikcar_backend_calls_total{" + labels + "\"get\"} 3\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("mikcar_backend_calls_total{" + labels + "\"set\"} 2\n"), std::string::npos);
  EXPECT_NE(text.find("mikcar_backend_calls_total{" + labels + "\"other\"} 1\n"),
            std::string::npos);
  EXPECT_NE(
      text.find("mikcar_backend_errors_total{" + labels + "\"get\",reason=\"unavailable\"} 1\n"),
      std::string::npos);
  EXPECT_NE(text.find("mikcar_backend_errors_total{" + labels + "\"set\",reason=\"timeout\"} 1\n"),
            std::string::npos);
  EXPECT_EQ(text.find("reason=\"internal\""), std::string::npos);
  EXPECT_NE(text.find("mikcar_backend_call_duration_seconds_count{" + labels + "\"get\"} 3\n"),
            std::string::npos);
}

TEST(BackendCalls, NothingIsReportedBeforeTheFirstCall) {
  BackendCalls calls("sql", "postgres", {"run"});
  http::FamilySink sink;
  calls.Collect(sink);
  EXPECT_EQ(sink.Render(), "");
}

}  // namespace
}  // namespace mikcar
