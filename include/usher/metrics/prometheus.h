// Prometheus text exposition of the pools, databases and the process.
#pragma once

#include <string>

namespace usher::net {
class Worker;
}

namespace usher::metrics {

// The body of GET /metrics (text format 0.0.4). Metric names are documented in README.md.
std::string renderPrometheus(net::Worker& worker);

}  // namespace usher::metrics
