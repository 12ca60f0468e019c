// Config: lookups, effective per-pool settings, validation, loadConfig, and the settings tables the
// two loaders share (settings.h).
#include "usher/config/config.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <fstream>
#include <span>
#include <sstream>
#include <thread>
#include <type_traits>
#include <variant>

#include "settings.h"
#include "usher/auth/auth_file.h"

namespace usher::config {

const char* toString(PoolMode m) {
  switch (m) {
    case PoolMode::Session:
      return "session";
    case PoolMode::Transaction:
      return "transaction";
    case PoolMode::Statement:
      return "statement";
  }
  return "session";
}

const char* toString(AuthType t) {
  switch (t) {
    case AuthType::Trust:
      return "trust";
    case AuthType::Any:
      return "any";
    case AuthType::Md5:
      return "md5";
    case AuthType::ScramSha256:
      return "scram-sha-256";
    case AuthType::Plain:
      return "plain";
  }
  return "md5";
}

// An exact name wins; otherwise the "*" entry (PgBouncer's auto-database). The "*" entry's
// `dbname` is empty unless the file forces one: empty means "connect to the database the client
// asked for", so callers use `db.dbname.empty() ? requested : db.dbname`.
const DatabaseConfig* Config::findDatabase(std::string_view name) const {
  const DatabaseConfig* fallback = nullptr;
  for (const auto& db : databases) {
    if (db.name == name) return &db;
    if (db.name == "*") fallback = &db;
  }
  return fallback;
}

const UserConfig* Config::findUser(std::string_view name) const {
  for (const auto& user : users) {
    if (user.name == name) return &user;
  }
  return nullptr;
}

const auth::Secret* Config::findSecret(std::string_view user) const {
  auto it = secrets.find(user);
  return it == secrets.end() ? nullptr : &it->second;
}

bool Config::isAdminUser(std::string_view user) const {
  return std::find(adminUsers.begin(), adminUsers.end(), user) != adminUsers.end();
}

bool Config::isStatsUser(std::string_view user) const {
  return std::find(statsUsers.begin(), statsUsers.end(), user) != statsUsers.end();
}

// PgBouncer's precedence: [users] beats [databases] beats the global setting.
PoolMode Config::poolModeFor(const DatabaseConfig& db, const UserConfig* user) const {
  if (user != nullptr && user->poolMode) return *user->poolMode;
  if (db.poolMode) return *db.poolMode;
  return poolMode;
}

int Config::poolSizeFor(const DatabaseConfig& db, const UserConfig* user) const {
  if (user != nullptr && user->poolSize) return *user->poolSize;
  if (db.poolSize) return *db.poolSize;
  return defaultPoolSize;
}

namespace {

// "<file>: <key>: <problem>": validation runs after loading, when lines are no longer known.
std::unexpected<Error> invalid(const Config& c, std::string_view key, const std::string& problem) {
  return failPlain(c.path + ": " + std::string(key) + ": " + problem);
}

bool needsSecrets(AuthType t) {
  return t == AuthType::Md5 || t == AuthType::ScramSha256 || t == AuthType::Plain;
}

}  // namespace

Result<void> validate(Config& c) {
  using std::to_string;
  if (c.listenPort < 1 || c.listenPort > 65535) {
    return invalid(c, "listen_port", "must be between 1 and 65535, got " + to_string(c.listenPort));
  }
  if (c.listenAddrs.empty() && c.unixSocketDir.empty()) {
    return invalid(c, "listen_addr",
                   "no listener: set listen_addr or unix_socket_dir (both are empty)");
  }
  if (c.unixSocketMode < 0 || c.unixSocketMode > 07777) {
    return invalid(c, "unix_socket_mode", "must be an octal file mode such as 0777");
  }
  if (c.listenBacklog < 1) {
    return invalid(c, "listen_backlog", "must be at least 1, got " + to_string(c.listenBacklog));
  }
  if (c.defaultPoolSize < 0) {
    return invalid(c, "default_pool_size", "must be >= 0, got " + to_string(c.defaultPoolSize));
  }
  if (c.minPoolSize < 0 || c.minPoolSize > c.defaultPoolSize) {
    return invalid(c, "min_pool_size",
                   "must be between 0 and default_pool_size (" + to_string(c.defaultPoolSize) +
                       "), got " + to_string(c.minPoolSize));
  }
  if (c.reservePoolSize < 0) {
    return invalid(c, "reserve_pool_size", "must be >= 0, got " + to_string(c.reservePoolSize));
  }
  if (c.maxClientConn < 1) {
    return invalid(c, "max_client_conn", "must be at least 1, got " + to_string(c.maxClientConn));
  }
  if (c.maxDbConnections < 0) {
    return invalid(c, "max_db_connections", "must be >= 0");
  }
  if (c.maxUserConnections < 0) {
    return invalid(c, "max_user_connections", "must be >= 0");
  }
  if (c.pktBuf < 4096) {
    return invalid(c, "pkt_buf", "must be at least 4096, got " + to_string(c.pktBuf));
  }
  if (c.verbose < 0) return invalid(c, "verbose", "must be >= 0");
  if (c.maxPreparedStatements < 0) {
    return invalid(c, "max_prepared_statements",
                   "must be >= 0 (0 = off), got " + to_string(c.maxPreparedStatements));
  }
  if (c.workers < 0) {
    return invalid(c, "workers", "must be >= 0 (0 = one per core), got " + to_string(c.workers));
  }
  if (c.workers == 0) {
    // hardware_concurrency() may return 0 when it cannot tell; one worker is always correct.
    c.workers = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  }
  const std::array<std::pair<std::string_view, Millis>, 11> durations{{
      {"worker_fifo_slack", c.workerFifoSlack},
      {"server_connect_timeout", c.serverConnectTimeout},
      {"server_login_retry", c.serverLoginRetry},
      {"query_wait_timeout", c.queryWaitTimeout},
      {"client_login_timeout", c.clientLoginTimeout},
      {"client_idle_timeout", c.clientIdleTimeout},
      {"idle_transaction_timeout", c.idleTransactionTimeout},
      {"server_idle_timeout", c.serverIdleTimeout},
      {"server_lifetime", c.serverLifetime},
      {"query_timeout", c.queryTimeout},
      {"reserve_pool_timeout", c.reservePoolTimeout},
  }};
  for (const auto& [key, value] : durations) {
    if (value < 0) return invalid(c, key, "must not be negative");
  }
  if (c.statsPeriod < 1000) {
    return invalid(c, "stats_period", "must be at least 1 second");
  }
  if (needsSecrets(c.authType) && c.authFile.empty() && c.secrets.empty()) {
    return invalid(c, "auth_type",
                   std::string(toString(c.authType)) +
                       " needs passwords: set auth_file (or, in usher.toml, [users.<name>] "
                       "password_file)");
  }

  for (const auto& db : c.databases) {
    const std::string key = "databases." + db.name;
    if (db.name.empty()) return invalid(c, "databases", "an entry has an empty name");
    if (db.name == "pgbouncer") {
      return invalid(c, key, "the name \"pgbouncer\" is reserved for the admin console");
    }
    // Every entry has somewhere to connect: an empty host means the server's Unix socket
    // (/var/run/postgresql), so only the port can be wrong.
    if (db.port < 1 || db.port > 65535) {
      return invalid(c, key + ".port", "must be between 1 and 65535, got " + to_string(db.port));
    }
    const int size = db.poolSize.value_or(c.defaultPoolSize);
    if (size < 0) return invalid(c, key + ".pool_size", "must be >= 0");
    if (db.minPoolSize && (*db.minPoolSize < 0 || *db.minPoolSize > size)) {
      return invalid(c, key + ".min_pool_size",
                     "must be between 0 and the pool size (" + to_string(size) + "), got " +
                         to_string(*db.minPoolSize));
    }
    if (db.reservePool && *db.reservePool < 0) {
      return invalid(c, key + ".reserve_pool", "must be >= 0");
    }
    if (db.maxDbConnections && *db.maxDbConnections < 0) {
      return invalid(c, key + ".max_db_connections", "must be >= 0");
    }
  }
  for (const auto& user : c.users) {
    const std::string key = "users." + user.name;
    if (user.name.empty()) return invalid(c, "users", "an entry has an empty name");
    if (user.poolSize && *user.poolSize < 0) return invalid(c, key + ".pool_size", "must be >= 0");
    if (user.maxUserConnections && *user.maxUserConnections < 0) {
      return invalid(c, key + ".max_user_connections", "must be >= 0");
    }
  }
  return {};
}

namespace {

bool endsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// Decides the format of a file whose name says neither .ini nor .toml. `[pgbouncer]` and
// `%include` exist only in PgBouncer's format. `[databases]` / `[users]` headers are valid TOML
// too, so they count only together with a value TOML cannot have: `name = host=...` or `name =`.
bool looksLikeIni(std::string_view text) {
  bool iniHeader = false;
  bool connstringValue = false;
  std::istringstream in{std::string(text)};
  std::string raw;
  while (std::getline(in, raw)) {
    const std::string_view line = detail::trim(raw);
    if (line.empty() || line[0] == '#' || line[0] == ';') continue;
    if (line.starts_with("%include")) return true;
    if (line == "[pgbouncer]") return true;
    if (line == "[databases]" || line == "[users]" || line == "[peers]") {
      iniHeader = true;
      continue;
    }
    const auto eq = line.find('=');
    if (iniHeader && eq != std::string_view::npos) {
      const std::string_view value = detail::trim(line.substr(eq + 1));
      // A TOML value starts with a quote, digit, sign, bracket or brace; an ini connection
      // string starts with a key name followed by '=', or is empty.
      const bool startsWithName =
          !value.empty() && (std::isalpha(static_cast<unsigned char>(value[0])) || value[0] == '_');
      if (value.empty() || (startsWithName && value.find('=') != std::string_view::npos)) {
        connstringValue = true;
      }
    }
  }
  return iniHeader && connstringValue;
}

}  // namespace

Result<std::shared_ptr<Config>> loadConfig(const std::string& path) {
  auto text = detail::readFile(path);
  if (!text) return std::unexpected(text.error());  // names the file and errno

  bool ini;
  if (endsWith(path, ".ini")) {
    ini = true;
  } else if (endsWith(path, ".toml")) {
    ini = false;
  } else {
    ini = looksLikeIni(*text);
  }
  auto config = ini ? parseIni(*text, path) : parseToml(*text, path);
  if (!config) return std::unexpected(config.error());
  Config& c = **config;

  // Secrets from [users] (already in `secrets`) override auth_file entries of the same user.
  if (!c.authFile.empty()) {
    auto file = auth::loadAuthFile(c.authFile);
    if (!file) return failPlain(path + ": auth_file: " + file.error().message);
    for (auto& [user, secret] : *file) c.secrets.try_emplace(user, std::move(secret));
  }
  if (auto ok = validate(c); !ok) return std::unexpected(ok.error());
  return config;
}

// ---------------------------------------------------------------------------------------------
// Shared loader pieces (settings.h).

namespace detail {

namespace {

constexpr std::string_view kWhitespace = " \t\r\n\f\v";

// Non-negative int with the whole text consumed.
Result<int> parseCount(std::string_view text) {
  const std::string_view t = trim(text);
  int value = 0;
  auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), value);
  if (t.empty() || ec != std::errc() || end != t.data() + t.size() || value < 0) {
    return failPlain("expected a non-negative integer, got " + inQuotes(text));
  }
  return value;
}

Result<uint32_t> parseUint32(std::string_view text) {
  const std::string_view t = trim(text);
  uint32_t value = 0;
  auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), value);
  if (t.empty() || ec != std::errc() || end != t.data() + t.size()) {
    return failPlain("expected an integer between 0 and 4294967295, got " + inQuotes(text));
  }
  return value;
}

Result<int> parseOctal(std::string_view text) {
  const std::string_view t = trim(text);
  int value = 0;
  auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), value, 8);
  if (t.empty() || ec != std::errc() || end != t.data() + t.size() || value > 07777) {
    return failPlain("expected an octal file mode such as 0777, got " + inQuotes(text));
  }
  return value;
}

// Seconds as PgBouncer reads them (fractions allowed), or a number with a unit.
Result<Millis> parseDuration(std::string_view text) {
  const std::string_view t = trim(text);
  double number = 0;
  auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), number);
  const std::string_view unit = trim(t.substr(static_cast<size_t>(end - t.data())));
  double scale = 0;
  if (unit.empty() || unit == "s") {
    scale = 1000;
  } else if (unit == "ms") {
    scale = 1;
  } else if (unit == "m" || unit == "min") {
    scale = 60'000;
  } else if (unit == "h") {
    scale = 3'600'000;
  }
  const double ms = number * scale;
  if (t.empty() || ec != std::errc() || scale == 0 || !std::isfinite(number) || number < 0 ||
      ms > 1e15) {
    return failPlain(
        "expected a duration (seconds, or a number with ms/s/m/h such as \"250ms\"), got " +
        inQuotes(text));
  }
  return static_cast<Millis>(std::llround(ms));
}

Result<bool> parseBool(std::string_view text) {
  const std::string t = lowercase(trim(text));
  if (t == "1" || t == "on" || t == "true" || t == "yes") return true;
  if (t == "0" || t == "off" || t == "false" || t == "no") return false;
  return failPlain("expected a boolean (0/1, on/off, true/false, yes/no), got " + inQuotes(text));
}

std::vector<std::string> parseList(std::string_view text) {
  std::vector<std::string> items;
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    if (comma == std::string_view::npos) comma = text.size();
    const std::string_view item = trim(text.substr(start, comma - start));
    if (!item.empty()) items.emplace_back(item);
    start = comma + 1;
  }
  return items;
}

Result<PoolMode> parsePoolMode(std::string_view text) {
  const std::string t = lowercase(trim(text));
  if (t == "session") return PoolMode::Session;
  if (t == "transaction") return PoolMode::Transaction;
  if (t == "statement") return PoolMode::Statement;
  return failPlain("unknown pool mode " + inQuotes(text) +
                   " (expected session, transaction or statement)");
}

Result<AuthType> parseAuthType(std::string_view text) {
  const std::string t = lowercase(trim(text));
  if (t == "trust") return AuthType::Trust;
  if (t == "any") return AuthType::Any;
  if (t == "md5") return AuthType::Md5;
  if (t == "scram-sha-256") return AuthType::ScramSha256;
  if (t == "plain") return AuthType::Plain;
  // Methods PgBouncer has and usher deliberately lacks: refuse to start rather than run open.
  if (t == "hba" || t == "cert" || t == "pam" || t == "ldap" || t == "peer") {
    return failPlain("auth_type " + t + " is not supported by usher");
  }
  return failPlain("unknown auth_type " + inQuotes(text) +
                   " (expected trust, any, md5, scram-sha-256 or plain)");
}

Result<LogFormat> parseLogFormat(std::string_view text) {
  const std::string t = lowercase(trim(text));
  if (t == "text") return LogFormat::Text;
  if (t == "json") return LogFormat::Json;
  return failPlain("unknown log_format " + inQuotes(text) + " (expected text or json)");
}

// Never quotes the value: it is a password, a hash or a verifier.
Result<auth::Secret> parseSecret(std::string_view text) {
  auto secret = auth::Secret::parse(text);
  if (!secret) {
    return failPlain(
        "is not a valid secret (a value starting with \"SCRAM-SHA-256$\" must be a complete "
        "verifier: SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>)");
  }
  return secret;
}

// A Docker-secret style file: the whole content is the secret, minus the trailing newline that
// editors and `echo` add.
Result<auth::Secret> readSecretFile(std::string_view fileName, const ApplyContext& ctx) {
  const std::string path = resolvePath(ctx.baseDir, trim(fileName));
  if (path.empty()) return failPlain("is empty");
  auto content = readFile(path);
  if (!content) return failPlain(content.error().message);
  std::string& s = *content;
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  if (s.empty()) return failPlain(inQuotes(path) + " is empty");
  auto secret = parseSecret(s);
  auth::wipeMemory(s.data(), s.size());
  if (!secret) return failPlain(inQuotes(path) + " " + secret.error().message);
  return secret;
}

// Server startup parameters a [databases] entry may set, in PostgreSQL's spelling.
void setServerParam(DatabaseConfig& db, std::string_view name, std::string_view value) {
  for (auto& [k, v] : db.serverParams) {
    if (k == name) {
      v = std::string(value);
      return;
    }
  }
  db.serverParams.emplace_back(std::string(name), std::string(value));
}

template <class Entry>
Result<void> setCount(std::optional<int> Entry::*member, Entry& entry, std::string_view text) {
  auto n = parseCount(text);
  if (!n) return std::unexpected(n.error());
  entry.*member = *n;
  return {};
}

using GeneralTarget =
    std::variant<int Config::*, uint32_t Config::*, size_t Config::*, bool Config::*,
                 Millis Config::*, std::string Config::*, std::vector<std::string> Config::*,
                 PoolMode Config::*, AuthType Config::*, LogFormat Config::*>;

struct GeneralSetting {
  std::string_view name;
  ValueKind kind;
  GeneralTarget target;
};

// PgBouncer 1.25's [pgbouncer] keys that usher implements, plus usher's own (log_format, quiet,
// workers).
const GeneralSetting kGeneralSettings[] = {
    {"admin_users", ValueKind::List, &Config::adminUsers},
    {"auth_file", ValueKind::Text, &Config::authFile},
    {"auth_type", ValueKind::Choice, &Config::authType},
    {"client_idle_timeout", ValueKind::Duration, &Config::clientIdleTimeout},
    {"client_login_timeout", ValueKind::Duration, &Config::clientLoginTimeout},
    {"default_pool_size", ValueKind::Integer, &Config::defaultPoolSize},
    {"idle_transaction_timeout", ValueKind::Duration, &Config::idleTransactionTimeout},
    {"ignore_startup_parameters", ValueKind::List, &Config::ignoreStartupParameters},
    {"listen_addr", ValueKind::List, &Config::listenAddrs},
    {"listen_backlog", ValueKind::Integer, &Config::listenBacklog},
    {"listen_port", ValueKind::Integer, &Config::listenPort},
    {"log_connections", ValueKind::Boolean, &Config::logConnections},
    {"log_disconnections", ValueKind::Boolean, &Config::logDisconnections},
    {"log_format", ValueKind::Choice, &Config::logFormat},
    {"log_pooler_errors", ValueKind::Boolean, &Config::logPoolerErrors},
    {"logfile", ValueKind::Text, &Config::logFile},
    {"max_client_conn", ValueKind::Integer, &Config::maxClientConn},
    {"max_db_connections", ValueKind::Integer, &Config::maxDbConnections},
    {"max_packet_size", ValueKind::Integer, &Config::maxPacketSize},
    {"max_prepared_statements", ValueKind::Integer, &Config::maxPreparedStatements},
    {"max_user_connections", ValueKind::Integer, &Config::maxUserConnections},
    {"min_pool_size", ValueKind::Integer, &Config::minPoolSize},
    {"pidfile", ValueKind::Text, &Config::pidFile},
    {"pkt_buf", ValueKind::Integer, &Config::pktBuf},
    {"pool_mode", ValueKind::Choice, &Config::poolMode},
    {"query_timeout", ValueKind::Duration, &Config::queryTimeout},
    {"query_wait_timeout", ValueKind::Duration, &Config::queryWaitTimeout},
    {"metrics_listen", ValueKind::Text, &Config::metricsListen},
    {"quiet", ValueKind::Boolean, &Config::quiet},
    {"reserve_pool_size", ValueKind::Integer, &Config::reservePoolSize},
    {"reserve_pool_timeout", ValueKind::Duration, &Config::reservePoolTimeout},
    {"server_connect_timeout", ValueKind::Duration, &Config::serverConnectTimeout},
    {"server_idle_timeout", ValueKind::Duration, &Config::serverIdleTimeout},
    {"server_lifetime", ValueKind::Duration, &Config::serverLifetime},
    {"server_login_retry", ValueKind::Duration, &Config::serverLoginRetry},
    {"server_reset_query", ValueKind::Text, &Config::serverResetQuery},
    {"server_reset_query_always", ValueKind::Boolean, &Config::serverResetQueryAlways},
    {"stats_period", ValueKind::Duration, &Config::statsPeriod},
    {"stats_users", ValueKind::List, &Config::statsUsers},
    {"track_extra_parameters", ValueKind::List, &Config::trackExtraParameters},
    {"unix_socket_dir", ValueKind::Text, &Config::unixSocketDir},
    {"unix_socket_mode", ValueKind::Octal, &Config::unixSocketMode},
    {"user", ValueKind::Text, &Config::runAsUser},
    {"verbose", ValueKind::Integer, &Config::verbose},
    {"workers", ValueKind::Integer, &Config::workers},
    {"worker_fifo_slack", ValueKind::Duration, &Config::workerFifoSlack},
};

// Every other key PgBouncer 1.25 documents for [pgbouncer]: accepted, reported as unsupported.
constexpr std::string_view kUnsupportedGeneral[] = {
    "application_name_add_host",
    "auth_dbname",
    "auth_hba_file",
    "auth_ident_file",
    "auth_ldap_options",
    "auth_query",
    "auth_user",
    "autodb_idle_timeout",
    "cancel_wait_timeout",
    "client_tls13_ciphers",
    "client_tls_ca_file",
    "client_tls_cert_file",
    "client_tls_ciphers",
    "client_tls_dheparams",
    "client_tls_ecdhcurve",
    "client_tls_key_file",
    "client_tls_protocols",
    "client_tls_sslmode",
    "conffile",
    "disable_pqexec",
    "dns_max_ttl",
    "dns_nxdomain_ttl",
    "dns_zone_check_period",
    "job_name",
    "log_stats",
    "max_db_client_connections",
    "max_user_client_connections",
    "peer_id",
    "query_wait_notify",
    "resolv_conf",
    "sbuf_loopcnt",
    "scram_iterations",
    "server_check_delay",
    "server_check_query",
    "server_fast_close",
    "server_round_robin",
    "server_tls13_ciphers",
    "server_tls_ca_file",
    "server_tls_cert_file",
    "server_tls_ciphers",
    "server_tls_key_file",
    "server_tls_protocols",
    "server_tls_sslmode",
    "service_name",
    "so_reuseport",
    "suspend_timeout",
    "syslog",
    "syslog_facility",
    "syslog_ident",
    "tcp_defer_accept",
    "tcp_keepalive",
    "tcp_keepcnt",
    "tcp_keepidle",
    "tcp_keepintvl",
    "tcp_socket_buffer",
    "tcp_user_timeout",
    "transaction_timeout",
    "unix_socket_group",
};

template <class Entry>
struct EntrySetting {
  std::string_view name;
  ValueKind kind;
  bool tomlOnly;  // usher's own keys: unknown in pgbouncer.ini, as they are to PgBouncer
  Result<void> (*apply)(Entry& entry, std::string_view text, const ApplyContext& ctx);
};

using DatabaseSetting = EntrySetting<DatabaseConfig>;
using UserSetting = EntrySetting<UserConfig>;

// Keys of a [databases] connection string (and of [databases.<name>] in usher.toml).
const DatabaseSetting kDatabaseSettings[] = {
    {"dbname", ValueKind::Text, false,
     [](DatabaseConfig& db, std::string_view v, const ApplyContext&) -> Result<void> {
       db.dbname = std::string(v);
       return {};
     }},
    {"host", ValueKind::Text, false,
     [](DatabaseConfig& db, std::string_view v, const ApplyContext&) -> Result<void> {
       db.host = std::string(trim(v));
       return {};
     }},
    {"port", ValueKind::Integer, false,
     [](DatabaseConfig& db, std::string_view v, const ApplyContext&) -> Result<void> {
       auto n = parseCount(v);
       if (!n || *n < 1 || *n > 65535) {
         return failPlain("expected a port number between 1 and 65535, got " + inQuotes(v));
       }
       db.port = *n;
       return {};
     }},
    {"user", ValueKind::Text, false,
     [](DatabaseConfig& db, std::string_view v, const ApplyContext&) -> Result<void> {
       db.user = std::string(v);
       return {};
     }},
    {"password", ValueKind::Secret, false,
     [](DatabaseConfig& db, std::string_view v, const ApplyContext&) -> Result<void> {
       auto s = parseSecret(v);
       if (!s) return std::unexpected(s.error());
       db.password = std::move(*s);
       return {};
     }},
    {"password_file", ValueKind::Text, true,
     [](DatabaseConfig& db, std::string_view v, const ApplyContext& ctx) -> Result<void> {
       auto s = readSecretFile(v, ctx);
       if (!s) return std::unexpected(s.error());
       db.password = std::move(*s);
       return {};
     }},
    {"pool_mode", ValueKind::Choice, false,
     [](DatabaseConfig& db, std::string_view v, const ApplyContext&) -> Result<void> {
       auto m = parsePoolMode(v);
       if (!m) return std::unexpected(m.error());
       db.poolMode = *m;
       return {};
     }},
    {"pool_size", ValueKind::Integer, false,
     [](DatabaseConfig& db, std::string_view v, const ApplyContext&) {
       return setCount(&DatabaseConfig::poolSize, db, v);
     }},
    {"min_pool_size", ValueKind::Integer, false,
     [](DatabaseConfig& db, std::string_view v, const ApplyContext&) {
       return setCount(&DatabaseConfig::minPoolSize, db, v);
     }},
    {"reserve_pool", ValueKind::Integer, false,
     [](DatabaseConfig& db, std::string_view v, const ApplyContext&) {
       return setCount(&DatabaseConfig::reservePool, db, v);
     }},
    // Newer PgBouncer documentation spells it like the global setting; both names work.
    {"reserve_pool_size", ValueKind::Integer, false,
     [](DatabaseConfig& db, std::string_view v, const ApplyContext&) {
       return setCount(&DatabaseConfig::reservePool, db, v);
     }},
    {"max_db_connections", ValueKind::Integer, false,
     [](DatabaseConfig& db, std::string_view v, const ApplyContext&) {
       return setCount(&DatabaseConfig::maxDbConnections, db, v);
     }},
    {"connect_query", ValueKind::Text, false,
     [](DatabaseConfig& db, std::string_view v, const ApplyContext&) -> Result<void> {
       db.connectQuery = std::string(v);
       return {};
     }},
    {"client_encoding", ValueKind::Text, false,
     [](DatabaseConfig& db, std::string_view v, const ApplyContext&) -> Result<void> {
       setServerParam(db, "client_encoding", v);
       return {};
     }},
    {"datestyle", ValueKind::Text, false,
     [](DatabaseConfig& db, std::string_view v, const ApplyContext&) -> Result<void> {
       setServerParam(db, "DateStyle", v);
       return {};
     }},
    {"timezone", ValueKind::Text, false,
     [](DatabaseConfig& db, std::string_view v, const ApplyContext&) -> Result<void> {
       setServerParam(db, "TimeZone", v);
       return {};
     }},
    {"application_name", ValueKind::Text, false,
     [](DatabaseConfig& db, std::string_view v, const ApplyContext&) -> Result<void> {
       setServerParam(db, "application_name", v);
       return {};
     }},
};

constexpr std::string_view kUnsupportedDatabase[] = {
    "auth_dbname",
    "auth_query",
    "auth_user",
    "load_balance_hosts",
    "max_db_client_connections",
    "server_lifetime",
    "target_session_attrs",
};

const UserSetting kUserSettings[] = {
    {"pool_mode", ValueKind::Choice, false,
     [](UserConfig& u, std::string_view v, const ApplyContext&) -> Result<void> {
       auto m = parsePoolMode(v);
       if (!m) return std::unexpected(m.error());
       u.poolMode = *m;
       return {};
     }},
    {"pool_size", ValueKind::Integer, false,
     [](UserConfig& u, std::string_view v, const ApplyContext&) {
       return setCount(&UserConfig::poolSize, u, v);
     }},
    {"max_user_connections", ValueKind::Integer, false,
     [](UserConfig& u, std::string_view v, const ApplyContext&) {
       return setCount(&UserConfig::maxUserConnections, u, v);
     }},
    // With pgbouncer.ini the client's secret lives in userlist.txt; usher.toml may inline it.
    {"password", ValueKind::Secret, true,
     [](UserConfig& u, std::string_view v, const ApplyContext&) -> Result<void> {
       auto s = parseSecret(v);
       if (!s) return std::unexpected(s.error());
       u.password = std::move(*s);
       return {};
     }},
    {"password_file", ValueKind::Text, true,
     [](UserConfig& u, std::string_view v, const ApplyContext& ctx) -> Result<void> {
       auto s = readSecretFile(v, ctx);
       if (!s) return std::unexpected(s.error());
       u.password = std::move(*s);
       return {};
     }},
};

constexpr std::string_view kUnsupportedUser[] = {"client_idle_timeout",
                                                 "max_user_client_connections"};

}  // namespace
std::span<const GeneralSetting> kGeneralSettingsView() {
  return kGeneralSettings;
}
namespace {

const GeneralSetting* findGeneral(std::string_view name) {
  for (const auto& s : kGeneralSettings) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

template <class Setting>
const Setting* findEntry(std::span<const Setting> table, std::string_view name, FileFormat format) {
  for (const auto& s : table) {
    if (s.name == name) return (!s.tomlOnly || format == FileFormat::Toml) ? &s : nullptr;
  }
  return nullptr;
}

bool contains(std::span<const std::string_view> list, std::string_view name) {
  return std::find(list.begin(), list.end(), name) != list.end();
}

// "unknown setting", with the nearest known key when one is close enough to be a typo.
std::unexpected<Error> unknownKey(std::string_view qualified, std::string_view key,
                                  std::string_view what, std::vector<std::string_view> known,
                                  std::span<const std::string_view> unsupported) {
  known.insert(known.end(), unsupported.begin(), unsupported.end());
  std::string message = std::string(qualified) + ": unknown " + std::string(what);
  if (auto near = suggestKey(key, known); !near.empty()) {
    message += " (did you mean " + inQuotes(near) + "?)";
  }
  return failPlain(std::move(message));
}

// The shared body of applyDatabaseKey / applyUserKey.
template <class Entry>
Result<void> applyEntryKey(Config& config, Entry& entry, std::string_view section,
                           std::span<const EntrySetting<Entry>> table,
                           std::span<const std::string_view> unsupported, std::string_view what,
                           std::string_view key, std::string_view text, const ApplyContext& ctx) {
  const std::string qualified = std::string(section) + "." + entry.name + "." + std::string(key);
  if (const auto* setting = findEntry(table, key, ctx.format)) {
    auto ok = setting->apply(entry, text, ctx);
    if (!ok) return failPlain(qualified + ": " + ok.error().message);
    return {};
  }
  if (contains(unsupported, key)) {
    noteUnsupported(config, qualified);
    return {};
  }
  std::vector<std::string_view> known;
  for (const auto& s : table) {
    if (!s.tomlOnly || ctx.format == FileFormat::Toml) known.push_back(s.name);
  }
  return unknownKey(qualified, key, what, std::move(known), unsupported);
}

template <class Entry>
std::optional<ValueKind> entryKind(std::span<const EntrySetting<Entry>> table, std::string_view key,
                                   FileFormat format) {
  const auto* s = findEntry(table, key, format);
  return s ? std::optional(s->kind) : std::nullopt;
}

Result<void> assign(Config& config, const GeneralSetting& setting, std::string_view text) {
  return std::visit(
      [&](auto member) -> Result<void> {
        using Field = std::remove_reference_t<decltype(config.*member)>;
        Field& field = config.*member;
        if constexpr (std::is_same_v<Field, int>) {
          auto n = setting.kind == ValueKind::Octal ? parseOctal(text) : parseCount(text);
          if (!n) return std::unexpected(n.error());
          field = *n;
        } else if constexpr (std::is_same_v<Field, uint32_t> || std::is_same_v<Field, size_t>) {
          auto n = parseUint32(text);
          if (!n) return std::unexpected(n.error());
          field = *n;
        } else if constexpr (std::is_same_v<Field, bool>) {
          auto b = parseBool(text);
          if (!b) return std::unexpected(b.error());
          field = *b;
        } else if constexpr (std::is_same_v<Field, Millis>) {
          auto d = parseDuration(text);
          if (!d) return std::unexpected(d.error());
          field = *d;
        } else if constexpr (std::is_same_v<Field, std::string>) {
          field = std::string(trim(text));
        } else if constexpr (std::is_same_v<Field, std::vector<std::string>>) {
          field = parseList(text);
        } else if constexpr (std::is_same_v<Field, PoolMode>) {
          auto m = parsePoolMode(text);
          if (!m) return std::unexpected(m.error());
          field = *m;
        } else if constexpr (std::is_same_v<Field, AuthType>) {
          auto a = parseAuthType(text);
          if (!a) return std::unexpected(a.error());
          field = *a;
        } else {
          static_assert(std::is_same_v<Field, LogFormat>);
          auto f = parseLogFormat(text);
          if (!f) return std::unexpected(f.error());
          field = *f;
        }
        return {};
      },
      setting.target);
}

}  // namespace

std::optional<ValueKind> generalKind(std::string_view key) {
  const auto* s = findGeneral(key);
  return s ? std::optional(s->kind) : std::nullopt;
}

std::optional<ValueKind> databaseKind(std::string_view key, FileFormat format) {
  return entryKind<DatabaseConfig>(kDatabaseSettings, key, format);
}

std::optional<ValueKind> userKind(std::string_view key, FileFormat format) {
  return entryKind<UserConfig>(kUserSettings, key, format);
}

Result<void> applyGeneralKey(Config& config, std::string_view section, std::string_view key,
                             std::string_view text, const ApplyContext& ctx) {
  if (const auto* setting = findGeneral(key)) {
    auto ok = assign(config, *setting, text);
    if (!ok) return failPlain(std::string(key) + ": " + ok.error().message);
    if (key == "auth_file") config.authFile = resolvePath(ctx.baseDir, config.authFile);
    return {};
  }
  if (contains(kUnsupportedGeneral, key)) {
    noteUnsupported(config, std::string(section) + "." + std::string(key));
    return {};
  }
  std::vector<std::string_view> known;
  for (const auto& s : kGeneralSettings) known.push_back(s.name);
  return unknownKey(key, key, "setting", std::move(known), kUnsupportedGeneral);
}

Result<void> applyDatabaseKey(Config& config, DatabaseConfig& db, std::string_view key,
                              std::string_view text, const ApplyContext& ctx) {
  return applyEntryKey<DatabaseConfig>(config, db, "databases", kDatabaseSettings,
                                       kUnsupportedDatabase, "connection parameter", key, text,
                                       ctx);
}

Result<void> applyUserKey(Config& config, UserConfig& user, std::string_view key,
                          std::string_view text, const ApplyContext& ctx) {
  return applyEntryKey<UserConfig>(config, user, "users", kUserSettings, kUnsupportedUser,
                                   "user parameter", key, text, ctx);
}

void noteUnsupported(Config& config, std::string name) {
  auto& keys = config.unsupportedKeys;
  if (std::find(keys.begin(), keys.end(), name) == keys.end()) keys.push_back(std::move(name));
}

std::string_view suggestKey(std::string_view key, std::span<const std::string_view> known) {
  // Levenshtein distance with one rolling row; keys are short, so this is cheap.
  auto distance = [](std::string_view a, std::string_view b) {
    std::vector<size_t> row(b.size() + 1);
    for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
    for (size_t i = 1; i <= a.size(); ++i) {
      size_t diagonal = row[0];
      row[0] = i;
      for (size_t j = 1; j <= b.size(); ++j) {
        const size_t up = row[j];
        row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
        diagonal = up;
      }
    }
    return row[b.size()];
  };
  std::string_view best;
  size_t bestDistance = 3;  // suggest only within distance 2
  for (std::string_view candidate : known) {
    const size_t d = distance(key, candidate);
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best;
}

DatabaseConfig newDatabase(std::string_view name) {
  DatabaseConfig db;
  db.name = std::string(name);
  // "*" has no fixed database: it serves whatever the client asked for (see findDatabase).
  if (name != "*") db.dbname = std::string(name);
  return db;
}

UserConfig newUser(std::string_view name) {
  UserConfig user;
  user.name = std::string(name);
  return user;
}

void upsertDatabase(Config& config, DatabaseConfig db) {
  for (auto& existing : config.databases) {
    if (existing.name == db.name) {
      existing = std::move(db);
      return;
    }
  }
  config.databases.push_back(std::move(db));
}

void upsertUser(Config& config, UserConfig user) {
  for (auto& existing : config.users) {
    if (existing.name == user.name) {
      existing = std::move(user);
      return;
    }
  }
  config.users.push_back(std::move(user));
}

// PgBouncer's reader (loader.c, cstr_get_pair), plus libpq's backslash escape: whitespace
// separates pairs, blanks around '=' are allowed, a value is either a run of non-blanks or
// single-quoted with '' or \' for a quote.
Result<Pairs> parseConnstring(std::string_view text) {
  Pairs pairs;
  size_t i = 0;
  const size_t n = text.size();
  auto isBlank = [](char ch) { return std::isspace(static_cast<unsigned char>(ch)) != 0; };
  auto skipBlanks = [&] {
    while (i < n && isBlank(text[i])) ++i;
  };
  while (true) {
    skipBlanks();
    if (i >= n) break;
    const size_t keyStart = i;
    while (i < n && text[i] != '=' && !isBlank(text[i])) ++i;
    const std::string key(text.substr(keyStart, i - keyStart));
    skipBlanks();
    if (key.empty() || i >= n || text[i] != '=') {
      // Do not echo the text: a stray word here may be part of a password.
      return failPlain("syntax error in connection string: expected key=value pairs");
    }
    ++i;
    skipBlanks();
    std::string value;
    if (i < n && text[i] == '\'') {
      ++i;
      bool closed = false;
      while (i < n) {
        const char ch = text[i];
        if (ch == '\\' && i + 1 < n) {
          value += text[i + 1];
          i += 2;
        } else if (ch == '\'') {
          if (i + 1 < n && text[i + 1] == '\'') {
            value += '\'';
            i += 2;
          } else {
            ++i;
            closed = true;
            break;
          }
        } else {
          value += ch;
          ++i;
        }
      }
      if (!closed) {
        auth::wipeMemory(value.data(), value.size());
        return failPlain("syntax error in connection string: unterminated quoted value for " +
                         inQuotes(key));
      }
    } else {
      while (i < n && !isBlank(text[i])) {
        if (text[i] == '\\' && i + 1 < n) ++i;
        value += text[i++];
      }
      if (value.empty()) {
        return failPlain("syntax error in connection string: empty value for " + inQuotes(key));
      }
    }
    pairs.emplace_back(key, std::move(value));
  }
  return pairs;
}

void wipePairs(Pairs& pairs) {
  for (auto& [key, value] : pairs) auth::wipeMemory(value.data(), value.size());
}

Result<std::string> readFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return failPlain("cannot read " + inQuotes(path.string()) + ": " + std::strerror(errno));
  std::ostringstream out;
  out << in.rdbuf();
  if (in.bad()) {
    return failPlain("cannot read " + inQuotes(path.string()) + ": " + std::strerror(errno));
  }
  return std::move(out).str();
}

std::string resolvePath(const std::filesystem::path& base, std::string_view p) {
  if (p.empty()) return {};
  std::filesystem::path path(p);
  if (path.is_absolute() || base.empty()) return path.string();
  return (base / path).lexically_normal().string();
}

std::string located(std::string_view file, size_t line, std::string_view message) {
  std::string out(file);
  out += ':';
  out += std::to_string(line);
  out += ": ";
  out += message;
  return out;
}

std::string_view trim(std::string_view s) {
  const size_t first = s.find_first_not_of(kWhitespace);
  if (first == std::string_view::npos) return {};
  const size_t last = s.find_last_not_of(kWhitespace);
  return s.substr(first, last - first + 1);
}

std::string lowercase(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
  return out;
}

std::string inQuotes(std::string_view s) {
  std::string out = "\"";
  out += s;
  out += '"';
  return out;
}

}  // namespace detail
}  // namespace usher::config

// ---- the console's view of the settings (SHOW CONFIG, SET) ------------------------------------

namespace usher::config {
namespace {

// Settings that only a restart changes (sockets, process identity, buffers already handed out).
constexpr std::string_view kRestartOnly[] = {
    "listen_addr",      "listen_port",    "unix_socket_dir", "metrics_listen",
    "unix_socket_mode", "listen_backlog", "pidfile",         "user",
    "workers",          "pkt_buf"};

std::string renderGeneral(const Config& c, const detail::GeneralTarget& target) {
  return std::visit(
      [&](auto member) -> std::string {
        const auto& v = c.*member;
        using V = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<V, bool>) {
          return v ? "1" : "0";
        } else if constexpr (std::is_same_v<V, Millis>) {
          // PgBouncer shows durations in seconds.
          if (v % 1000 == 0) return std::to_string(v / 1000);
          char buf[32];
          std::snprintf(buf, sizeof buf, "%.3f", double(v) / 1000.0);
          return buf;
        } else if constexpr (std::is_same_v<V, std::string>) {
          return v;
        } else if constexpr (std::is_same_v<V, std::vector<std::string>>) {
          std::string out;
          for (const auto& s : v) out.append(out.empty() ? "" : ",").append(s);
          return out;
        } else if constexpr (std::is_same_v<V, PoolMode> || std::is_same_v<V, AuthType>) {
          return toString(v);
        } else if constexpr (std::is_same_v<V, LogFormat>) {
          return v == LogFormat::Json ? "json" : "text";
        } else {
          return std::to_string(v);
        }
      },
      target);
}

}  // namespace

std::vector<SettingView> describeSettings(const Config& config) {
  const Config defaults;
  std::vector<SettingView> out;
  for (const auto& s : detail::kGeneralSettingsView()) {
    bool changeable = true;
    for (auto k : kRestartOnly) changeable &= k != s.name;
    out.push_back({std::string(s.name), renderGeneral(config, s.target),
                   renderGeneral(defaults, s.target), changeable});
  }
  return out;
}

Result<std::shared_ptr<Config>> withSetting(const Config& config, std::string_view key,
                                            std::string_view value) {
  bool known = false;
  for (const auto& s : detail::kGeneralSettingsView()) known |= s.name == key;
  if (!known) return failPlain("unknown config parameter: " + std::string(key));
  for (auto k : kRestartOnly)
    if (k == key) return failPlain(std::string(key) + " can be changed only by a restart");
  auto next = std::make_shared<Config>(config);
  detail::ApplyContext ctx;
  ctx.format = config.fromIni ? detail::FileFormat::Ini : detail::FileFormat::Toml;
  ctx.baseDir = std::filesystem::path(config.path).parent_path();
  if (auto ok = detail::applyGeneralKey(*next, "pgbouncer", key, value, ctx); !ok)
    return std::unexpected(ok.error());
  if (auto ok = validate(*next); !ok) return std::unexpected(ok.error());
  return next;
}

}  // namespace usher::config
