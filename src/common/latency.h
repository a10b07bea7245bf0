// A latency histogram for /metrics: recording is two relaxed atomic adds (no lock, no
// allocation). Thread-safe.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>

namespace mikcar {

class LatencyHistogram {
 public:
  static constexpr std::array<double, 14> kBounds = {
      0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5};

  // One consistent reading: `count` is the sum of the buckets read, so no bound exceeds it.
  struct Snapshot {
    std::array<uint64_t, kBounds.size()> cumulative{};  // observations at most kBounds[i]
    uint64_t count = 0;
    double sum = 0;  // seconds
  };

  void Record(double seconds) {
    size_t i = 0;
    while (i < kBounds.size() && seconds > kBounds[i]) ++i;  // kBounds.size(): above every bound
    buckets_[i].fetch_add(1, std::memory_order_relaxed);
    sum_ns_.fetch_add(static_cast<uint64_t>(seconds * 1e9), std::memory_order_relaxed);
  }

  Snapshot Read() const {
    Snapshot s;
    for (size_t i = 0; i < kBounds.size(); ++i) {
      s.count += buckets_[i].load(std::memory_order_relaxed);
      s.cumulative[i] = s.count;
    }
    s.count += buckets_[kBounds.size()].load(std::memory_order_relaxed);
    s.sum = static_cast<double>(sum_ns_.load(std::memory_order_relaxed)) / 1e9;
    return s;
  }

 private:
  std::array<std::atomic<uint64_t>, kBounds.size() + 1> buckets_{};  // the last: above 5 s
  std::atomic<uint64_t> sum_ns_{0};
};

}  // namespace mikcar
