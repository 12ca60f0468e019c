// Monotonic time in milliseconds and microseconds (the loop's cached time is used where it will
// do).
#pragma once

#include <cstdint>
#include <ctime>

namespace usher {

inline uint64_t monotonicMicros() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000u + uint64_t(ts.tv_nsec) / 1000u;
}
inline int64_t monotonicMillis() {
  return int64_t(monotonicMicros() / 1000u);
}

}  // namespace usher
