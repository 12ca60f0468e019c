// Prometheus text exposition of the pools, databases and the process.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>

#include "usher/pool/pool.h"

namespace usher::net {
class Worker;
}

namespace usher::metrics {

// What /metrics reports, summed over the workers.
struct MetricsSnapshot {
  struct PoolGauges {
    size_t activeClients = 0;
    size_t waitingClients = 0;
    size_t activeServers = 0;
    size_t idleServers = 0;
    size_t testedServers = 0;
    size_t loginServers = 0;
    uint64_t maxWaitUs = 0;
    int poolSize = 0;
  };
  std::map<std::pair<std::string, std::string>, PoolGauges> pools;
  std::map<std::string, pool::PoolStats> byDatabase;
  size_t clients = 0;
  int64_t startTimeUnix = 0;

  MetricsSnapshot& operator+=(const MetricsSnapshot& other);
};

// Adds one worker's pools and sessions (run on that worker's thread).
void collectMetrics(net::Worker& worker, MetricsSnapshot& into);
// The body of GET /metrics (text format 0.0.4). Metric names are documented in README.md.
std::string renderPrometheus(const MetricsSnapshot& snapshot);

}  // namespace usher::metrics
