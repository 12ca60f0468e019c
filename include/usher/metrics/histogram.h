// Histogram: a fixed-bucket latency histogram, counted on the data path without allocation.
#pragma once

#include <array>
#include <cstdint>

namespace usher::metrics {

// Upper bounds in microseconds, Prometheus-style (cumulative when rendered). Spans a fast
// SELECT on loopback (~100 µs) to a slow report (10 s).
inline constexpr std::array<uint64_t, 14> kLatencyBoundsUs = {
    100,   250,   500,    1000,   2500,    5000,    10000,
    25000, 50000, 100000, 250000, 1000000, 2500000, 10000000};

struct Histogram {
  std::array<uint64_t, kLatencyBoundsUs.size() + 1> buckets{};  // last one: above every bound
  uint64_t count = 0;
  uint64_t sumUs = 0;

  void observe(uint64_t us) {
    size_t i = 0;
    while (i < kLatencyBoundsUs.size() && us > kLatencyBoundsUs[i]) ++i;
    ++buckets[i];
    ++count;
    sumUs += us;
  }
  Histogram& operator+=(const Histogram& o) {
    for (size_t i = 0; i < buckets.size(); ++i) buckets[i] += o.buckets[i];
    count += o.count;
    sumUs += o.sumUs;
    return *this;
  }
};

}  // namespace usher::metrics
