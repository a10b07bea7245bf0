// Prometheus metrics of the HTTP core: requests by service/route/method/status, latency
// histograms per route, bytes in/out, in-flight requests, and process RSS, CPU and open fds;
// services add theirs through `MetricsSink`. Routes register once at start-up; recording a
// finished request is a few relaxed atomic adds (no lock, no allocation). Thread-safe.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "common/latency.h"
#include "mikcar/metrics.h"

namespace mikcar::http {

// The counters of one route (one method + pattern), or of unmatched requests.
struct RouteStats {
  std::string service, route, method;
  std::array<std::atomic<uint64_t>, 600> by_status{};  // index = HTTP status
  LatencyHistogram latency;
};

// Collects samples by family and writes them in the Prometheus text format, each family once
// with its HELP and TYPE lines, in the order families were first reported.
class FamilySink final : public MetricsSink {
 public:
  void Counter(std::string_view family, std::string_view help, Labels labels,
               double value) override;
  void Gauge(std::string_view family, std::string_view help, Labels labels, double value) override;
  void Histogram(std::string_view family, std::string_view help, Labels labels,
                 std::span<const double> bounds, std::span<const uint64_t> cumulative,
                 uint64_t count, double sum) override;
  // Writes the family's HELP and TYPE lines even when it gets no sample.
  void Declare(std::string_view family, std::string_view type, std::string_view help) {
    Get(family, type, help);
  }
  std::string Render() const;

 private:
  struct Family {
    std::string name, type, help, samples;
  };
  // The family to add to, or null when it exists with another type.
  Family* Get(std::string_view name, std::string_view type, std::string_view help);
  std::vector<Family> families_;
};

class Metrics {
 public:
  Metrics();
  // A stable counter block for one route (or "unmatched"); call before serving.
  RouteStats* Register(std::string_view service, std::string_view route, std::string_view method);

  void Started() { in_flight_.fetch_add(1, std::memory_order_relaxed); }
  void Finished(RouteStats* route, int status, double seconds, uint64_t bytes_in,
                uint64_t bytes_out);
  // Adds the HTTP core's samples (the services add theirs after).
  void Collect(FamilySink& sink) const;

 private:
  std::atomic<int64_t> in_flight_{0};
  std::atomic<uint64_t> bytes_in_{0};
  std::atomic<uint64_t> bytes_out_{0};
  mutable std::mutex mu_;          // guards registration only
  std::deque<RouteStats> routes_;  // deque: pointers stay valid
  double started_at_;              // unix seconds
};

}  // namespace mikcar::http
