// pgbench output parsing and the baseline verdict (pure functions, unit-tested).
#include <cstdio>
#include <cstdlib>

#include "usher/ctl/bench.h"

namespace usher::ctl {
namespace {

// The number after `key` on its line, if the output has that line.
std::optional<double> numberAfter(std::string_view out, std::string_view key) {
  auto pos = out.find(key);
  if (pos == std::string_view::npos) return std::nullopt;
  std::string rest(out.substr(pos + key.size(), 64));
  char* end = nullptr;
  double v = std::strtod(rest.c_str(), &end);
  if (end == rest.c_str()) return std::nullopt;
  return v;
}

}  // namespace

Result<PgbenchNumbers> parsePgbenchOutput(std::string_view out) {
  PgbenchNumbers n;
  // pgbench 14+ prints "tps = N (without initial connection time)"; older ones print both
  // "including connections establishing" and "excluding ..." lines: prefer the excluding one.
  std::optional<double> tps;
  for (std::string_view marker : {"(without initial connection time)", "(excluding connections"}) {
    auto at = out.find(marker);
    if (at == std::string_view::npos) continue;
    auto lineStart = out.rfind('\n', at);
    lineStart = lineStart == std::string_view::npos ? 0 : lineStart + 1;
    tps = numberAfter(out.substr(lineStart, at - lineStart), "tps = ");
    if (tps) break;
  }
  if (!tps) tps = numberAfter(out, "tps = ");
  if (!tps) return failPlain("pgbench printed no \"tps = \" line");
  n.tps = *tps;
  n.latencyMs = numberAfter(out, "latency average = ").value_or(0);
  n.transactions =
      int64_t(numberAfter(out, "number of transactions actually processed: ").value_or(0));
  n.failed = int64_t(numberAfter(out, "number of failed transactions: ").value_or(0));
  return n;
}

Verdict benchVerdict(double tps, double minTps, double maxTps) {
  if (tps < minTps) return Verdict::Below;
  if (tps > maxTps) return Verdict::Above;
  return Verdict::Healthy;
}

const char* verdictName(Verdict v) {
  switch (v) {
    case Verdict::Below:
      return "below";
    case Verdict::Healthy:
      return "healthy";
    case Verdict::Above:
      return "above";
  }
  return "?";
}

std::string verdictExplanation(Verdict v, double tps, double minTps, double maxTps) {
  char buf[512];
  switch (v) {
    case Verdict::Below:
      std::snprintf(buf, sizeof buf,
                    "%.0f TPS is below the baseline of %.0f-%.0f TPS: suspect a disk I/O "
                    "bottleneck (slow volume, fsync latency), or CPU contention on the host",
                    tps, minTps, maxTps);
      break;
    case Verdict::Healthy:
      std::snprintf(buf, sizeof buf, "%.0f TPS is within the baseline of %.0f-%.0f TPS: healthy",
                    tps, minTps, maxTps);
      break;
    case Verdict::Above:
      std::snprintf(buf, sizeof buf,
                    "%.0f TPS is above the baseline of %.0f-%.0f TPS (faster hardware, or "
                    "durability settings such as fsync=off: check before recording it)",
                    tps, minTps, maxTps);
      break;
  }
  return buf;
}

bool BenchReport::ok() const {
  if (runs.empty()) return false;
  for (const auto& r : runs) {
    if (!r.ok || r.verdict == Verdict::Below) return false;
  }
  return true;
}

}  // namespace usher::ctl
