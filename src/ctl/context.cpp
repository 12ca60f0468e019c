// The shared context of usherctl subcommands: connection defaults, config, console and reload.
#include "usher/ctl/context.h"

#include <pwd.h>
#include <signal.h>
#include <unistd.h>

#include <charconv>
#include <cstdio>
#include <cstdlib>

#include "usher/ctl/files.h"
#include "usher/ctl/json.h"

namespace usher::ctl {
namespace {

constexpr OptionSpec kConnection[] = {
    {"host", "HOST", "PostgreSQL host or socket directory (PGHOST; default /var/run/postgresql)"},
    {"port", "PORT", "PostgreSQL port (PGPORT; default 5432)"},
    {"user", "ROLE", "admin role to connect as (PGUSER; default: the OS user)"},
    {"dbname", "DB", "maintenance database (PGDATABASE; default postgres)"},
    {"password-file", "FILE", "file holding the admin role's password (default: PGPASSWORD)"},
    {"connect-timeout", "SECONDS", "give up connecting after this long (PGCONNECT_TIMEOUT; 10)"},
};
constexpr OptionSpec kConsole[] = {
    {"admin-host", "HOST", "usher's admin console host (default 127.0.0.1)"},
    {"admin-port", "PORT", "usher's admin console port: RELOAD and SHOW POOLS go there"},
    {"admin-user", "ROLE", "console user, one of usher's admin_users (default: --user)"},
    {"admin-password-file", "FILE", "console user's password (default: the admin password)"},
    {"usher-pid", "PID", "send SIGHUP to this usher process to reload (fallback to the console)"},
};
constexpr OptionSpec kConfig[] = {
    {"config", "FILE", "usher's config (usher.toml or pgbouncer.ini) to read/update"},
    {"secrets-dir", "DIR", "where tenant secret files live (default /srv/config/secrets)"},
};
constexpr OptionSpec kOutput[] = {
    {"json", "", "print one JSON document on stdout instead of text"},
};

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string();
}

Result<int> parsePort(const std::string& text, const std::string& what) {
  int port = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), port);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || port < 1 ||
      port > 65535) {
    return failPlain(what + " must be a port number (1-65535), got \"" + text + "\"");
  }
  return port;
}

Result<std::string> readPasswordFile(const std::string& path) {
  auto text = readTextFile(path);
  if (!text) return std::unexpected(text.error());
  std::string& s = *text;
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  if (s.empty()) return failPlain("password file " + path + " is empty");
  return std::move(s);
}

}  // namespace

const std::span<const OptionSpec> kConnectionOptions = kConnection;
const std::span<const OptionSpec> kConsoleOptions = kConsole;
const std::span<const OptionSpec> kConfigOptions = kConfig;
const std::span<const OptionSpec> kOutputOptions = kOutput;

Result<ConnParams> Context::pgParams(std::string_view database) const {
  ConnParams p;
  p.host = args_.getOr("host", env("PGHOST"));
  if (p.host.empty()) p.host = "/var/run/postgresql";
  std::string port = args_.getOr("port", env("PGPORT"));
  if (!port.empty()) {
    auto v = parsePort(port, "--port");
    if (!v) return std::unexpected(v.error());
    p.port = *v;
  }
  p.user = args_.getOr("user", env("PGUSER"));
  if (p.user.empty()) {
    if (const passwd* pw = ::getpwuid(::geteuid())) p.user = pw->pw_name;
  }
  p.database = database.empty() ? args_.getOr("dbname", env("PGDATABASE")) : std::string(database);
  if (p.database.empty()) p.database = "postgres";
  if (auto file = args_.get("password-file")) {
    auto pw = readPasswordFile(*file);
    if (!pw) return std::unexpected(pw.error());
    p.password = std::move(*pw);
  } else {
    p.password = env("PGPASSWORD");
  }
  std::string timeout = args_.getOr("connect-timeout", env("PGCONNECT_TIMEOUT"));
  if (!timeout.empty()) {
    int t = std::atoi(timeout.c_str());
    p.connectTimeoutMs = t > 0 ? t * 1000 : 10000;
  }
  return p;
}

Result<PgClient> Context::connectPg(std::string_view database) const {
  auto p = pgParams(database);
  if (!p) return std::unexpected(p.error());
  return PgClient::connect(*p);
}

Result<ConnParams> Context::consoleParams() const {
  auto base = pgParams("pgbouncer");
  if (!base) return std::unexpected(base.error());
  ConnParams p = *base;
  p.host = args_.getOr("admin-host", "127.0.0.1");
  auto port = parsePort(args_.getOr("admin-port", ""), "--admin-port");
  if (!port) return std::unexpected(port.error());
  p.port = *port;
  p.user = args_.getOr("admin-user", p.user);
  if (auto file = args_.get("admin-password-file")) {
    auto pw = readPasswordFile(*file);
    if (!pw) return std::unexpected(pw.error());
    p.password = std::move(*pw);
  }
  p.ioTimeoutMs = 30000;
  return p;
}

Result<std::vector<PoolRow>> Context::showPools() const {
  auto p = consoleParams();
  if (!p) return std::unexpected(p.error());
  auto c = PgClient::connect(*p);
  if (!c) {
    return failPlain("usher's admin console: " + c.error().message +
                     " (does this usher have the admin console, and is " + p->user +
                     " in its admin_users?)");
  }
  auto r = c->query("SHOW POOLS;");
  if (!r) {
    return failPlain("usher's admin console at " + p->where() +
                     ": SHOW POOLS failed: " + r.error().message);
  }
  for (std::string_view col : {"database", "user", "cl_active", "cl_waiting", "sv_active"}) {
    if (r->column(col) < 0) {
      return failPlain("usher's admin console at " + p->where() + ": SHOW POOLS has no column \"" +
                       std::string(col) + "\"");
    }
  }
  auto num = [&](size_t row, std::string_view col) -> int64_t {
    std::string v = r->value(row, col);
    int64_t out = 0;
    std::from_chars(v.data(), v.data() + v.size(), out);
    return out;
  };
  std::vector<PoolRow> rows;
  for (size_t i = 0; i < r->rows.size(); ++i) {
    PoolRow row;
    row.database = r->value(i, "database");
    row.user = r->value(i, "user");
    row.clActive = num(i, "cl_active");
    row.clWaiting = num(i, "cl_waiting");
    row.svActive = num(i, "sv_active");
    row.svIdle = num(i, "sv_idle");
    row.svUsed = num(i, "sv_used");
    row.maxwait = num(i, "maxwait");
    row.poolMode = r->value(i, "pool_mode");
    rows.push_back(std::move(row));
  }
  return rows;
}

ReloadOutcome Context::reloadUsher(const config::Config* cfg) const {
  ReloadOutcome out;
  if (hasConsole()) {
    auto p = consoleParams();
    if (!p) {
      out.problems.push_back(p.error().message);
    } else if (auto c = PgClient::connect(*p); !c) {
      out.problems.push_back("RELOAD through usher's admin console failed: " + c.error().message);
    } else if (auto r = c->query("RELOAD;"); !r) {
      out.problems.push_back("RELOAD through usher's admin console at " + p->where() +
                             " failed: " + r.error().message);
    } else if (r->commandTag != "RELOAD") {
      out.problems.push_back("usher's admin console at " + p->where() + " answered RELOAD with \"" +
                             r->commandTag + "\"");
    } else {
      out.reloaded = true;
      out.how = "RELOAD through usher's admin console at " + p->where();
      return out;
    }
  }
  std::string pidText = args_.getOr("usher-pid", "");
  std::string pidSource = "--usher-pid";
  if (pidText.empty() && cfg && !cfg->pidFile.empty()) {
    if (auto t = readTextFile(cfg->pidFile)) {
      pidText = *t;
      while (!pidText.empty() && (pidText.back() == '\n' || pidText.back() == ' ')) {
        pidText.pop_back();
      }
      pidSource = "pidfile " + cfg->pidFile;
    } else {
      out.problems.push_back(t.error().message);
    }
  }
  if (!pidText.empty()) {
    int pid = std::atoi(pidText.c_str());
    if (pid <= 1) {
      out.problems.push_back(pidSource + ": \"" + pidText + "\" is not a process id");
    } else if (::kill(pid_t(pid), SIGHUP) != 0) {
      out.problems.push_back("SIGHUP to usher (pid " + std::to_string(pid) + ", from " + pidSource +
                             ") failed: " + errnoText(errno));
    } else {
      out.reloaded = true;
      out.how = "SIGHUP to usher pid " + std::to_string(pid);
      return out;
    }
  }
  if (out.problems.empty()) {
    out.problems.push_back(
        "no way to reach the running usher: pass --admin-port (RELOAD through its admin "
        "console) or --usher-pid (SIGHUP), or reload it yourself");
  }
  return out;
}

Result<std::shared_ptr<config::Config>> Context::loadConfig() const {
  auto path = configPath();
  if (!path) return std::shared_ptr<config::Config>();
  auto cfg = config::loadConfig(*path);
  if (!cfg) return failPlain("cannot load usher config: " + cfg.error().message);
  return cfg;
}

std::string Context::secretsDir() const {
  return args_.getOr("secrets-dir", "/srv/config/secrets");
}

void Context::error(const std::string& message) const {
  std::fprintf(stderr, "usherctl %s: error: %s\n", command_.c_str(), message.c_str());
}

int Context::fail(const std::string& message, int code) const {
  error(message);
  if (json() && !jsonEmitted_) {
    JsonWriter w;
    w.beginObject().field("ok", false).field("error", message).endObject();
    emitJson(w.str());
  }
  return code;
}

void Context::emitJson(const std::string& document) const {
  std::puts(document.c_str());
  std::fflush(stdout);
  jsonEmitted_ = true;
}

void Context::warn(const std::string& message) const {
  std::fprintf(stderr, "usherctl %s: warning: %s\n", command_.c_str(), message.c_str());
}

void Context::info(const std::string& message) const {
  if (json()) return;
  std::fputs(message.c_str(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

std::vector<std::string> configTenantDatabases(const config::Config& cfg) {
  std::vector<std::string> out;
  for (const auto& db : cfg.databases) {
    if (db.name != "*" && db.name != "pgbouncer") out.push_back(db.name);
  }
  return out;
}

}  // namespace usher::ctl
