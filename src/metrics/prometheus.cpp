// Prometheus rendering: pool gauges, per-database counters and latency histograms, process facts.
#include "usher/metrics/prometheus.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>

#include "usher/base/clock.h"
#include "usher/net/worker.h"
#include "usher/pool/pool.h"
#include "usher_version.h"

namespace usher::metrics {
namespace {

// Label values escape backslash, quote and newline.
std::string label(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out.push_back('\\');
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out.push_back(c);
  }
  return out;
}

class Writer {
 public:
  void family(std::string_view name, std::string_view type, std::string_view help) {
    text_.append("# HELP ").append(name).append(" ").append(help).append("\n");
    text_.append("# TYPE ").append(name).append(" ").append(type).append("\n");
  }
  void sample(std::string_view name, std::string_view labels, double value) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.17g", value);
    text_.append(name);
    if (!labels.empty()) text_.append("{").append(labels).append("}");
    text_.append(" ").append(buf).append("\n");
  }
  std::string take() { return std::move(text_); }

 private:
  std::string text_;
};

void histogram(Writer& w, std::string_view name, const std::string& labels, const Histogram& h) {
  uint64_t cumulative = 0;
  std::string bucket = std::string(name) + "_bucket";
  for (size_t i = 0; i < kLatencyBoundsUs.size(); ++i) {
    cumulative += h.buckets[i];
    char le[32];
    std::snprintf(le, sizeof le, "%g", double(kLatencyBoundsUs[i]) / 1e6);
    w.sample(bucket, labels + ",le=\"" + le + "\"", double(cumulative));
  }
  w.sample(bucket, labels + ",le=\"+Inf\"", double(h.count));
  w.sample(std::string(name) + "_sum", labels, double(h.sumUs) / 1e6);
  w.sample(std::string(name) + "_count", labels, double(h.count));
}

}  // namespace

void collectMetrics(net::Worker& worker, MetricsSnapshot& into) {
  uint64_t nowUs = monotonicMicros();
  worker.pools().forEach([&](pool::Pool& p) {
    auto& g = into.pools[{p.database(), p.user()}];
    g.activeClients += p.activeClientCount();
    g.waitingClients += p.waitingCount();
    g.activeServers += p.activeCount() - p.resettingCount();
    g.idleServers += p.idleCount();
    g.testedServers += p.resettingCount();
    g.loginServers += p.loginCount();
    g.maxWaitUs = std::max(g.maxWaitUs, p.maxWaitUs(nowUs));
    g.poolSize = p.poolSize();
    into.byDatabase[p.database()] += p.stats;
  });
  into.clients += worker.clients().size();
  into.startTimeUnix = worker.startTimeUnix();
}

MetricsSnapshot& MetricsSnapshot::operator+=(const MetricsSnapshot& o) {
  for (const auto& [key, g] : o.pools) {
    auto& m = pools[key];
    m.activeClients += g.activeClients;
    m.waitingClients += g.waitingClients;
    m.activeServers += g.activeServers;
    m.idleServers += g.idleServers;
    m.testedServers += g.testedServers;
    m.loginServers += g.loginServers;
    m.maxWaitUs = std::max(m.maxWaitUs, g.maxWaitUs);
    m.poolSize = g.poolSize;
  }
  for (const auto& [db, stats] : o.byDatabase) byDatabase[db] += stats;
  clients += o.clients;
  startTimeUnix = std::max(startTimeUnix, o.startTimeUnix);
  return *this;
}

std::string renderPrometheus(const MetricsSnapshot& snapshot) {
  Writer w;
  w.family("usher_up", "gauge", "1 while usher is serving.");
  w.sample("usher_up", "", 1);
  w.family("usher_info", "gauge", "Build information.");
  w.sample("usher_info", "version=\"" USHER_VERSION "\"", 1);

  auto poolLabels = [](const std::pair<std::string, std::string>& key) {
    return "database=\"" + label(key.first) + "\",user=\"" + label(key.second) + "\"";
  };
  w.family("usher_pool_clients", "gauge",
           "Client connections of a pool by state (active: idle or linked; waiting: queued).");
  for (const auto& [key, g] : snapshot.pools) {
    std::string l = poolLabels(key);
    w.sample("usher_pool_clients", l + ",state=\"active\"", double(g.activeClients));
    w.sample("usher_pool_clients", l + ",state=\"waiting\"", double(g.waitingClients));
  }
  w.family("usher_pool_servers", "gauge", "Server connections of a pool by state.");
  for (const auto& [key, g] : snapshot.pools) {
    std::string l = poolLabels(key);
    w.sample("usher_pool_servers", l + ",state=\"active\"", double(g.activeServers));
    w.sample("usher_pool_servers", l + ",state=\"idle\"", double(g.idleServers));
    w.sample("usher_pool_servers", l + ",state=\"tested\"", double(g.testedServers));
    w.sample("usher_pool_servers", l + ",state=\"login\"", double(g.loginServers));
  }
  w.family("usher_pool_maxwait_seconds", "gauge", "How long the oldest waiting client has waited.");
  for (const auto& [key, g] : snapshot.pools)
    w.sample("usher_pool_maxwait_seconds", poolLabels(key), double(g.maxWaitUs) / 1e6);
  w.family("usher_pool_size", "gauge", "Configured pool_size of a pool.");
  for (const auto& [key, g] : snapshot.pools)
    w.sample("usher_pool_size", poolLabels(key), double(g.poolSize));

  // Per database, summed over its pools (as SHOW STATS).
  const auto& byDb = snapshot.byDatabase;
  struct Counter {
    const char* name;
    const char* help;
    double (*get)(const pool::PoolStats&);
  };
  const Counter counters[] = {
      {"usher_database_transactions_total", "Transactions pooled (SHOW STATS total_xact_count).",
       [](const pool::PoolStats& s) { return double(s.xactCount); }},
      {"usher_database_queries_total", "Queries pooled (SHOW STATS total_query_count).",
       [](const pool::PoolStats& s) { return double(s.queryCount); }},
      {"usher_database_received_bytes_total", "Bytes received from clients.",
       [](const pool::PoolStats& s) { return double(s.bytesReceived); }},
      {"usher_database_sent_bytes_total", "Bytes sent to clients.",
       [](const pool::PoolStats& s) { return double(s.bytesSent); }},
      {"usher_database_server_assignments_total", "Times a server was linked to a client.",
       [](const pool::PoolStats& s) { return double(s.serverAssignments); }},
      {"usher_database_wait_seconds_total", "Time clients spent waiting for a server.",
       [](const pool::PoolStats& s) { return double(s.waitTimeUs) / 1e6; }},
      {"usher_database_client_logins_total", "Client logins.",
       [](const pool::PoolStats& s) { return double(s.logins); }},
      {"usher_database_client_parses_total", "Parse messages from clients.",
       [](const pool::PoolStats& s) { return double(s.clientParses); }},
      {"usher_database_server_parses_total",
       "Parse messages usher sent to servers to prepare clients' named statements.",
       [](const pool::PoolStats& s) { return double(s.serverParses); }},
      {"usher_database_binds_total", "Bind messages from clients.",
       [](const pool::PoolStats& s) { return double(s.binds); }},
  };
  for (const auto& c : counters) {
    w.family(c.name, "counter", c.help);
    for (const auto& [db, s] : byDb) w.sample(c.name, "database=\"" + label(db) + "\"", c.get(s));
  }
  w.family("usher_transaction_duration_seconds", "histogram",
           "Transaction time through usher, first request to ReadyForQuery 'I'.");
  for (const auto& [db, s] : byDb)
    histogram(w, "usher_transaction_duration_seconds", "database=\"" + label(db) + "\"",
              s.xactTimes);
  w.family("usher_query_duration_seconds", "histogram",
           "Query time through usher, request to its ReadyForQuery.");
  for (const auto& [db, s] : byDb)
    histogram(w, "usher_query_duration_seconds", "database=\"" + label(db) + "\"", s.queryTimes);

  w.family("usher_client_connections", "gauge", "Client connections, all pools and the console.");
  w.sample("usher_client_connections", "", double(snapshot.clients));

  // Process facts, named as the Prometheus client libraries name them.
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  double cpu = double(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
               double(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
  w.family("process_cpu_seconds_total", "counter", "User and system CPU time.");
  w.sample("process_cpu_seconds_total", "", cpu);
  long pages = 0, resident = 0;
  if (std::FILE* f = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    std::fclose(f);
  }
  w.family("process_resident_memory_bytes", "gauge", "Resident memory.");
  w.sample("process_resident_memory_bytes", "", double(resident) * double(sysconf(_SC_PAGESIZE)));
  std::error_code ec;
  size_t fds = 0;
  for (auto it = std::filesystem::directory_iterator("/proc/self/fd", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec))
    ++fds;
  w.family("process_open_fds", "gauge", "Open file descriptors.");
  w.sample("process_open_fds", "", double(fds));
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  w.family("process_max_fds", "gauge", "File descriptor limit.");
  w.sample("process_max_fds", "", double(rl.rlim_cur));
  w.family("process_start_time_seconds", "gauge", "Start time, seconds since the epoch.");
  w.sample("process_start_time_seconds", "", double(snapshot.startTimeUnix));
  return w.take();
}

}  // namespace usher::metrics
