// bench (the platform's pgbench baseline) and check (the three readiness checks).
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <thread>

#include "usher/ctl/bench.h"
#include "usher/ctl/context.h"
#include "usher/ctl/json.h"
#include "usher/ctl/process.h"

namespace usher::ctl {
namespace {

std::vector<std::pair<std::string, std::string>> pgEnv(const ConnParams& p) {
  std::vector<std::pair<std::string, std::string>> env;
  if (!p.password.empty()) env.emplace_back("PGPASSWORD", p.password);
  env.emplace_back("PGCONNECT_TIMEOUT", std::to_string(std::max(1, p.connectTimeoutMs / 1000)));
  return env;
}

BenchRun runPgbench(const std::string& pgbench, const std::string& label, const ConnParams& p,
                    const std::string& db, int clients, int seconds, double minTps, double maxTps) {
  BenchRun run;
  run.target = label + " " + p.where();
  const int threads =
      std::max(1, std::min(clients, int(std::max(1u, std::thread::hardware_concurrency()))));
  ProcessSpec spec;
  spec.argv = {pgbench,
               "--host=" + p.host,
               "--port=" + std::to_string(p.port),
               "--username=" + p.user,
               "--client=" + std::to_string(clients),
               "--jobs=" + std::to_string(threads),
               "--time=" + std::to_string(seconds),
               "--no-vacuum",
               db};
  spec.env = pgEnv(p);
  auto res = runProcess(spec);
  if (!res) {
    run.error = res.error().message;
    return run;
  }
  if (!res->ok()) {
    run.error = "pgbench " + res->status() + ": " + res->errTail();
    return run;
  }
  auto n = parsePgbenchOutput(res->out);
  if (!n) {
    run.error = n.error().message;
    return run;
  }
  run.ok = true;
  run.numbers = *n;
  run.verdict = benchVerdict(n->tps, minTps, maxTps);
  return run;
}

void writeBenchJson(JsonWriter& w, const BenchReport& r) {
  w.beginObject()
      .field("ok", r.ok())
      .field("database", r.database)
      .field("clients", r.clients)
      .field("seconds", r.seconds)
      .key("baseline")
      .beginObject()
      .field("min_tps", r.minTps)
      .field("max_tps", r.maxTps)
      .endObject();
  w.key("runs").beginArray();
  for (const auto& run : r.runs) {
    w.beginObject().field("target", run.target).field("ok", run.ok);
    if (run.ok) {
      w.field("tps", run.numbers.tps)
          .field("latency_ms", run.numbers.latencyMs)
          .field("transactions", run.numbers.transactions)
          .field("failed_transactions", run.numbers.failed)
          .field("verdict", verdictName(run.verdict))
          .field("explanation",
                 verdictExplanation(run.verdict, run.numbers.tps, r.minTps, r.maxTps));
    } else {
      w.field("error", run.error);
    }
    w.endObject();
  }
  w.endArray().endObject();
}

std::vector<std::string> benchLines(const BenchReport& r) {
  std::vector<std::string> lines;
  for (const auto& run : r.runs) {
    char buf[512];
    if (run.ok) {
      std::snprintf(buf, sizeof buf,
                    "%s: %.1f TPS, latency average %.3f ms, %lld transactions (%lld failed) — %s",
                    run.target.c_str(), run.numbers.tps, run.numbers.latencyMs,
                    static_cast<long long>(run.numbers.transactions),
                    static_cast<long long>(run.numbers.failed),
                    verdictExplanation(run.verdict, run.numbers.tps, r.minTps, r.maxTps).c_str());
    } else {
      std::snprintf(buf, sizeof buf, "%s: FAILED: %s", run.target.c_str(), run.error.c_str());
    }
    lines.emplace_back(buf);
  }
  return lines;
}

}  // namespace

Result<BenchReport> runBench(const Context& ctx) {
  BenchReport rep;
  const Args& a = ctx.args();
  auto clients = a.getInt("clients", 8, 1, 1000);
  auto seconds = a.getInt("time", 60, 1, 86400);
  auto scale = a.getInt("scale", 1, 1, 100000);
  auto minTps = a.getDouble("baseline-min", 500);
  auto maxTps = a.getDouble("baseline-max", 1500);
  for (const Result<int>* r : {&clients, &seconds, &scale}) {
    if (!*r) return std::unexpected(r->error());
  }
  if (!minTps) return std::unexpected(minTps.error());
  if (!maxTps) return std::unexpected(maxTps.error());
  rep.clients = *clients;
  rep.seconds = *seconds;
  rep.minTps = *minTps;
  rep.maxTps = *maxTps;
  rep.database = a.getOr("scratch-db", "pgbench");
  const std::string pgbench = a.getOr("pgbench", "pgbench");
  const bool directOnly = a.has("direct-only");
  const bool direct = directOnly || a.has("compare-direct");

  auto conn = ctx.pgParams();
  if (!conn) return std::unexpected(conn.error());
  auto cfg = ctx.loadConfig();
  if (!cfg) return std::unexpected(cfg.error());
  ConnParams pooler = *conn;
  pooler.host = a.getOr("pooler-host", "127.0.0.1");
  auto poolerPort = a.getInt("pooler-port", *cfg ? (*cfg)->listenPort : 6432, 1, 65535);
  if (!poolerPort) return std::unexpected(poolerPort.error());
  pooler.port = *poolerPort;
  if (!directOnly && *cfg && !(*cfg)->findDatabase(rep.database)) {
    return failPlain("usher's config has no [databases] entry for \"" + rep.database +
                     "\" (and no \"*\" fallback): add one, or pass --scratch-db with a database "
                     "usher serves, or --direct-only");
  }

  auto pg = PgClient::connect(*conn);
  if (!pg) return std::unexpected(pg.error());
  auto exists =
      pg->query("SELECT 1 FROM pg_database WHERE datname = " + quoteLiteralSql(rep.database));
  if (!exists) return std::unexpected(exists.error());
  bool created = false;
  if (exists->rows.empty()) {
    if (auto r = pg->execute("CREATE DATABASE " + quoteIdent(rep.database)); !r) {
      return failPlain("CREATE DATABASE " + rep.database + ": " + r.error().message);
    }
    created = true;
  }
  auto dropScratch = [&]() {
    if (created && !a.has("keep-scratch-db")) {
      if (auto r = pg->execute("DROP DATABASE " + quoteIdent(rep.database) + " WITH (FORCE)"); !r) {
        ctx.warn("could not drop the scratch database " + rep.database + ": " + r.error().message);
      }
    }
  };

  ProcessSpec init;
  init.argv = {pgbench,
               "--initialize",
               "--quiet",
               "--scale=" + std::to_string(*scale),
               "--host=" + conn->host,
               "--port=" + std::to_string(conn->port),
               "--username=" + conn->user,
               rep.database};
  init.env = pgEnv(*conn);
  auto initRes = runProcess(init);
  if (!initRes || !initRes->ok()) {
    dropScratch();
    return failPlain(
        "pgbench --initialize in " + rep.database + " " +
        (initRes ? initRes->status() + ": " + initRes->errTail() : initRes.error().message));
  }
  if (!directOnly) {
    rep.runs.push_back(runPgbench(pgbench, "through usher", pooler, rep.database, rep.clients,
                                  rep.seconds, rep.minTps, rep.maxTps));
  }
  if (direct) {
    rep.runs.push_back(runPgbench(pgbench, "direct to PostgreSQL", *conn, rep.database, rep.clients,
                                  rep.seconds, rep.minTps, rep.maxTps));
  }
  dropScratch();
  return rep;
}

int cmdBench(Context& ctx) {
  auto rep = runBench(ctx);
  if (!rep) return ctx.fail(rep.error().message);
  if (ctx.json()) {
    JsonWriter w;
    writeBenchJson(w, *rep);
    ctx.emitJson(w.str());
  } else {
    ctx.info("pgbench -c " + std::to_string(rep->clients) + " -T " + std::to_string(rep->seconds) +
             " in " + rep->database + ":");
    for (const auto& l : benchLines(*rep)) ctx.info("  " + l);
  }
  for (const auto& r : rep->runs) {
    if (!r.ok) return kExitFailure;
  }
  return rep->ok() ? kExitOk : kExitProblems;
}

// ---- check -----------------------------------------------------------------------------------

namespace {

struct CheckResult {
  std::string name;
  bool pass = false;
  std::string reason;
  std::vector<std::string> evidence;
};

CheckResult checkPools(const Context& ctx, const config::Config* cfg) {
  CheckResult c;
  c.name = "pools";
  std::vector<std::string> expected = ctx.args().getList("expect-pools");
  if (expected.empty() && cfg) expected = configTenantDatabases(*cfg);
  if (!ctx.hasConsole()) {
    c.reason = "no --admin-port: usher's admin console is needed for SHOW POOLS";
    return c;
  }
  auto rows = ctx.showPools();
  if (!rows) {
    c.reason = rows.error().message;
    return c;
  }
  auto maxSv = ctx.args().getInt("max-sv-active", 0, 0, 1000000);
  if (!maxSv) {
    c.reason = maxSv.error().message;
    return c;
  }
  std::vector<std::string> missing, over;
  for (const auto& r : *rows) {
    if (r.database == "pgbouncer") continue;  // the console's own pseudo-pool
    char buf[256];
    std::snprintf(buf, sizeof buf,
                  "%s/%s: cl_active=%lld cl_waiting=%lld sv_active=%lld "
                  "sv_idle=%lld sv_used=%lld pool_mode=%s",
                  r.database.c_str(), r.user.c_str(), static_cast<long long>(r.clActive),
                  static_cast<long long>(r.clWaiting), static_cast<long long>(r.svActive),
                  static_cast<long long>(r.svIdle), static_cast<long long>(r.svUsed),
                  r.poolMode.c_str());
    c.evidence.emplace_back(buf);
    // A pool never holds more server connections than its size; sv_active near cl_active
    // under load means clients are not being multiplexed.
    int64_t bound = *maxSv;
    if (bound == 0 && cfg) {
      if (const auto* db = cfg->findDatabase(r.database)) {
        bound = cfg->poolSizeFor(*db, cfg->findUser(r.user));
      }
    }
    if (bound > 0 && r.svActive > bound) {
      over.push_back(r.database + "/" + r.user + " has sv_active=" + std::to_string(r.svActive) +
                     " > " + std::to_string(bound));
    }
  }
  for (const auto& e : expected) {
    bool found =
        std::any_of(rows->begin(), rows->end(), [&](const PoolRow& r) { return r.database == e; });
    if (!found) missing.push_back(e);
  }
  if (expected.empty()) {
    c.reason = "no expected pools: pass --config or --expect-pools";
  } else if (!missing.empty()) {
    std::string list;
    for (const auto& m : missing) list += (list.empty() ? "" : ", ") + m;
    c.reason = "no pool for " + list +
               " in SHOW POOLS (pools appear once a client connects through usher: are the "
               "applications running and pointed at usher?)";
  } else if (!over.empty()) {
    c.reason = over.front();
  } else {
    c.pass = true;
    c.reason = "every expected pool is present and within its size";
  }
  return c;
}

CheckResult checkThroughput(const Context& ctx) {
  CheckResult c;
  c.name = "throughput";
  auto rep = runBench(ctx);
  if (!rep) {
    c.reason = rep.error().message;
    return c;
  }
  c.evidence = benchLines(*rep);
  c.pass = rep->ok();
  if (rep->runs.empty()) {
    c.reason = "no benchmark ran";
  } else if (!rep->runs.front().ok) {
    c.reason = rep->runs.front().error;
  } else {
    const auto& first = rep->runs.front();
    c.reason = verdictExplanation(first.verdict, first.numbers.tps, rep->minTps, rep->maxTps);
  }
  return c;
}

CheckResult checkExtensions(const Context& ctx) {
  CheckResult c;
  c.name = "extensions";
  const std::string db = ctx.args().getOr("vector-db", "librarian_db");
  auto pg = ctx.connectPg(db);
  if (!pg) {
    c.reason = "cannot connect to " + db + ": " + pg.error().message;
    return c;
  }
  auto installed = pg->query("SELECT extversion FROM pg_extension WHERE extname = 'vector'");
  if (!installed) {
    c.reason = installed.error().message;
    return c;
  }
  if (installed->rows.empty()) {
    auto available =
        pg->query("SELECT default_version FROM pg_available_extensions WHERE name = 'vector'");
    if (available && !available->rows.empty()) {
      c.reason = "the vector extension " + available->value(0, "default_version") +
                 " is available but not created in " + db + ": run CREATE EXTENSION vector; in " +
                 db + " (as a superuser)";
    } else {
      c.reason = "the vector extension (pgvector) is not installed on this PostgreSQL server " +
                 pg->parameter("server_version") +
                 ": install pgvector for this PostgreSQL version (Debian: "
                 "postgresql-<major>-pgvector), then CREATE EXTENSION vector; in " +
                 db;
    }
    c.evidence.push_back("pg_extension in " + db + " has no 'vector'");
    return c;
  }
  c.evidence.push_back("vector " + installed->value(0, "extversion") + " is installed in " + db);
  // The manual's test, inside a transaction that is rolled back: nothing stays behind even
  // when a step fails.
  const std::string table = "usherctl_check_vectors_" + std::to_string(::getpid());
  auto r = pg->execute("BEGIN; CREATE TABLE " + table +
                       " (id serial PRIMARY KEY, embedding vector(3)); INSERT INTO " + table +
                       " (embedding) VALUES ('[1,2,3]'), ('[4,5,6]'); SELECT embedding::text "
                       "FROM " +
                       table + " ORDER BY embedding <-> '[1,2,3]' LIMIT 1;");
  (void)pg->execute("ROLLBACK");
  if (!r) {
    c.reason = "the vector test failed in " + db + ": " + r.error().message;
    return c;
  }
  const QueryResult& last = r->back();
  const std::string got = last.rows.empty() ? "(no row)" : last.value(0, "embedding");
  c.evidence.push_back("nearest neighbour of [1,2,3]: " + got);
  if (got != "[1,2,3]") {
    c.reason = "nearest-neighbour query returned " + got + ", expected [1,2,3]";
    return c;
  }
  c.pass = true;
  c.reason = "CREATE TABLE with vector(3), INSERT and ORDER BY <-> work in " + db;
  return c;
}

}  // namespace

int cmdCheck(Context& ctx) {
  auto cfg = ctx.loadConfig();
  if (!cfg) return ctx.fail(cfg.error().message);
  std::vector<std::string> only = ctx.args().getList("only");
  const std::vector<std::string> all = {"pools", "throughput", "extensions"};
  if (only.empty()) only = all;
  for (const auto& o : only) {
    if (std::find(all.begin(), all.end(), o) == all.end()) {
      return ctx.fail("--only: unknown check \"" + o + "\" (pools, throughput, extensions)",
                      kExitUsage);
    }
  }
  std::vector<CheckResult> results;
  for (const auto& name : all) {
    if (std::find(only.begin(), only.end(), name) == only.end()) continue;
    if (name == "pools") results.push_back(checkPools(ctx, cfg->get()));
    if (name == "throughput") results.push_back(checkThroughput(ctx));
    if (name == "extensions") results.push_back(checkExtensions(ctx));
  }
  const bool pass =
      std::all_of(results.begin(), results.end(), [](const CheckResult& r) { return r.pass; });
  if (ctx.json()) {
    JsonWriter w;
    w.beginObject().field("ok", pass).key("checks").beginArray();
    for (const auto& r : results) {
      w.beginObject()
          .field("name", r.name)
          .field("status", r.pass ? "PASS" : "FAIL")
          .field("reason", r.reason);
      w.key("evidence").beginArray();
      for (const auto& e : r.evidence) w.value(e);
      w.endArray().endObject();
    }
    w.endArray().endObject();
    ctx.emitJson(w.str());
  } else {
    for (const auto& r : results) {
      ctx.info(std::string(r.pass ? "PASS" : "FAIL") + "  " + r.name + ": " + r.reason);
      for (const auto& e : r.evidence) ctx.info("      " + e);
    }
  }
  return pass ? kExitOk : kExitProblems;
}

}  // namespace usher::ctl
