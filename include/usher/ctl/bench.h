// The platform's baseline benchmark (pgbench) and its verdict, shared by `bench` and `check`.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "usher/base/result.h"

namespace usher::ctl {

class Context;

// What pgbench printed that we use.
struct PgbenchNumbers {
  double tps = 0;            // "tps = N (without initial connection time)"
  double latencyMs = 0;      // "latency average = N ms"
  int64_t transactions = 0;  // "number of transactions actually processed: N"
  int64_t failed = 0;        // "number of failed transactions: N" (PostgreSQL 15+)
};
Result<PgbenchNumbers> parsePgbenchOutput(std::string_view out);

enum class Verdict { Below, Healthy, Above };
Verdict benchVerdict(double tps, double minTps, double maxTps);
const char* verdictName(Verdict v);
// One sentence for people: what the number means on this platform.
std::string verdictExplanation(Verdict v, double tps, double minTps, double maxTps);

struct BenchRun {
  std::string target;  // "usher 127.0.0.1:6432" / "postgres 127.0.0.1:5432"
  bool ok = false;
  std::string error;
  PgbenchNumbers numbers;
  Verdict verdict = Verdict::Below;
};

struct BenchReport {
  int clients = 8;
  int seconds = 60;
  std::string database;
  double minTps = 500, maxTps = 1500;
  std::vector<BenchRun> runs;  // through the pooler first, then direct
  bool ok() const;             // every run succeeded and none is below the baseline
};

// Runs the benchmark as the options of `ctx` say (--clients --time --scale --scratch-db
// --pooler-host --pooler-port --compare-direct --direct-only --baseline-min/max --pgbench).
Result<BenchReport> runBench(const Context& ctx);

}  // namespace usher::ctl
