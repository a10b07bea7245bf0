// `MetricsSink`: what a `Sidecar` adds to GET /metrics (Prometheus text format) at each scrape.
//
// The server merges families across services: two services may report samples of the same
// family, which is then written once with its HELP and TYPE lines. A sample is dropped when its
// family was already reported with another type, or when a family or label name is not a
// Prometheus name ([a-zA-Z_:][a-zA-Z0-9_:]*, no colon in label names, no label "le").
#pragma once

#include <cstdint>
#include <initializer_list>
#include <span>
#include <string_view>
#include <utility>

namespace mikcar {

class MetricsSink {
 public:
  using Labels = std::initializer_list<std::pair<std::string_view, std::string_view>>;

  virtual ~MetricsSink() = default;
  // One sample of a counter: a total that only grows.
  virtual void Counter(std::string_view family, std::string_view help, Labels labels,
                       double value) = 0;
  // One sample of a gauge: a value that goes up and down.
  virtual void Gauge(std::string_view family, std::string_view help, Labels labels,
                     double value) = 0;
  // One histogram: `cumulative[i]` observations were at most `bounds[i]` seconds (or units);
  // `count` observations in all, summing to `sum`.
  virtual void Histogram(std::string_view family, std::string_view help, Labels labels,
                         std::span<const double> bounds, std::span<const uint64_t> cumulative,
                         uint64_t count, double sum) = 0;
};

}  // namespace mikcar
