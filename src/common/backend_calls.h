// The calls a service makes on its backend, for /metrics: how many, how long, and how many
// failed in the backend, by reason: "unavailable" (UNAVAILABLE, or SQL's database unreachable),
// "timeout" (BACKEND_TIMEOUT, or an SQL statement timeout), "backend_error" (BACKEND_ERROR) or
// "internal" (INTERNAL). A missing key, a failed precondition or a bad SQL statement is an
// answer, not a failure. Operations are named once, at construction; timing a call is two clock
// reads and a few relaxed atomic adds. Thread-safe.
//
//   BackendCalls calls_{"kv", backend_->name(), {"get", "set"}};
//   auto entry = co_await calls_.Time("get", backend_->Get(key));
#pragma once

#include <array>
#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/latency.h"
#include "mikcar/error.h"
#include "mikcar/metrics.h"

namespace mikcar {

class BackendCalls {
 public:
  BackendCalls(std::string service, std::string backend,
               std::initializer_list<std::string_view> operations);

  // Awaits `call`, counted under `operation` (one of the constructor's; any other counts as
  // "other").
  template <typename T>
  boost::asio::awaitable<Result<T>> Time(std::string_view operation,
                                         boost::asio::awaitable<Result<T>> call) {
    Operation& op = Find(operation);
    auto start = std::chrono::steady_clock::now();
    Result<T> result = co_await std::move(call);
    op.Record(std::chrono::steady_clock::now() - start, result ? nullptr : &result.error());
    co_return result;
  }

  // mikcar_backend_calls_total, mikcar_backend_errors_total, mikcar_backend_call_duration_seconds.
  void Collect(MetricsSink& sink) const;

 private:
  static constexpr std::array<std::string_view, 4> kReasons = {"unavailable", "timeout",
                                                               "backend_error", "internal"};
  struct Operation {
    explicit Operation(std::string_view n) : name(n) {}
    void Record(std::chrono::steady_clock::duration took, const Error* error);
    std::string name;
    LatencyHistogram latency;
    std::array<std::atomic<uint64_t>, kReasons.size()> failures{};
  };
  Operation& Find(std::string_view name);

  std::string service_;
  std::string backend_;
  std::vector<std::unique_ptr<Operation>> operations_;  // fixed after construction; last: other
};

}  // namespace mikcar
