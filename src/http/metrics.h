// Prometheus metrics of the HTTP core: requests by service/route/method/status, latency
// histograms per route, bytes in/out, in-flight requests, and process RSS and open fds.
// Routes register once at start-up; recording a finished request is a few relaxed atomic adds
// (no lock, no allocation). Thread-safe.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <string_view>

namespace mikcar::http {

// The counters of one route (one method + pattern), or of unmatched requests.
struct RouteStats {
  static constexpr std::array<double, 14> kBuckets = {
      0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5};
  std::string service, route, method;
  std::array<std::atomic<uint64_t>, 600> by_status{};  // index = HTTP status
  std::array<std::atomic<uint64_t>, kBuckets.size()> buckets{};
  std::atomic<uint64_t> count{0};
  std::atomic<uint64_t> sum_ns{0};
};

class Metrics {
 public:
  Metrics();
  // A stable counter block for one route (or "unmatched"); call before serving.
  RouteStats* Register(std::string_view service, std::string_view route, std::string_view method);

  void Started() { in_flight_.fetch_add(1, std::memory_order_relaxed); }
  void Finished(RouteStats* route, int status, double seconds, uint64_t bytes_in,
                uint64_t bytes_out);
  std::string Render() const;

 private:
  std::atomic<int64_t> in_flight_{0};
  std::atomic<uint64_t> bytes_in_{0};
  std::atomic<uint64_t> bytes_out_{0};
  mutable std::mutex mu_;          // guards registration only
  std::deque<RouteStats> routes_;  // deque: pointers stay valid
  double started_at_;              // unix seconds
};

}  // namespace mikcar::http
