// Prometheus metrics of the HTTP core: requests by service/route/method/status, latency
// histograms per route, bytes in/out, in-flight requests, and process RSS and open fds.
// Thread-safe; one short critical section per finished request.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <tuple>

namespace mikcar::http {

class Metrics {
 public:
  void Started() { in_flight_.fetch_add(1, std::memory_order_relaxed); }
  void Finished(std::string_view service, std::string_view route, std::string_view method, int status,
                double seconds, uint64_t bytes_in, uint64_t bytes_out);
  std::string Render() const;

 private:
  static constexpr std::array<double, 14> kBuckets = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                                      0.025,  0.05,    0.1,    0.25,  0.5,   1,     5};
  struct Latency {
    std::array<uint64_t, kBuckets.size()> buckets{};
    uint64_t count = 0;
    double sum = 0;
  };
  using RouteKey = std::tuple<std::string, std::string>;                         // service, route
  using CountKey = std::tuple<std::string, std::string, std::string, int>;       // + method, status

  std::atomic<int64_t> in_flight_{0};
  mutable std::mutex mu_;
  std::map<CountKey, uint64_t, std::less<>> requests_;
  std::map<RouteKey, Latency, std::less<>> latency_;
  uint64_t bytes_in_ = 0;
  uint64_t bytes_out_ = 0;
};

}  // namespace mikcar::http
