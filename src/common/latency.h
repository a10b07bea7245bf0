// A latency histogram for /metrics: recording is a few relaxed atomic adds (no lock, no
// allocation). Thread-safe.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>

namespace mikcar {

struct LatencyHistogram {
  static constexpr std::array<double, 14> kBounds = {
      0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5};

  void Record(double seconds) {
    constexpr auto relaxed = std::memory_order_relaxed;
    for (size_t i = 0; i < kBounds.size(); ++i) {
      if (seconds <= kBounds[i]) {
        buckets[i].fetch_add(1, relaxed);
        break;
      }
    }
    count.fetch_add(1, relaxed);
    sum_ns.fetch_add(static_cast<uint64_t>(seconds * 1e9), relaxed);
  }
  // Observations at most kBounds[i] seconds.
  std::array<uint64_t, kBounds.size()> Cumulative() const {
    std::array<uint64_t, kBounds.size()> out{};
    uint64_t total = 0;
    for (size_t i = 0; i < kBounds.size(); ++i) out[i] = total += buckets[i].load();
    return out;
  }
  double Sum() const { return static_cast<double>(sum_ns.load()) / 1e9; }

  std::array<std::atomic<uint64_t>, kBounds.size()> buckets{};  // per bucket, not cumulative
  std::atomic<uint64_t> count{0};
  std::atomic<uint64_t> sum_ns{0};
};

}  // namespace mikcar
