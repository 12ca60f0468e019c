// Janitor: one periodic sweep per worker (PgBouncer's janitor) instead of a timer per connection:
// login, idle and wait timeouts, server lifetimes, connection retries and min_pool_size.
#pragma once

#include <uv.h>

#include <cstdint>

namespace usher::net {
class Worker;
}

namespace usher::janitor {

class Janitor {
 public:
  // Pools are swept every tick (retries need ~100 ms resolution); every client and server is
  // visited every kSessionSweepEvery ticks.
  static constexpr uint64_t kTickMs = 100;
  static constexpr int kSessionSweepEvery = 5;

  explicit Janitor(net::Worker& worker);
  void start();
  void stop();

 private:
  static void onTick(uv_timer_t* timer);
  void tick();
  void sweepClients(int64_t nowMs);

  net::Worker& worker_;
  uv_timer_t timer_{};
  int ticks_ = 0;
  int64_t lastStatsMs_ = 0;
};

}  // namespace usher::janitor
