// Config: the typed, validated configuration every module reads (plain values, no toml/ini types).
// Loaded once per start or reload and shared read-only as std::shared_ptr<const Config>.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "usher/auth/secret.h"
#include "usher/base/result.h"

namespace usher::config {

enum class PoolMode { Session, Transaction, Statement };
enum class AuthType { Trust, Any, Md5, ScramSha256, Plain };
enum class LogFormat { Text, Json };

const char* toString(PoolMode m);
const char* toString(AuthType t);

// Durations are kept in milliseconds; 0 means "disabled" where PgBouncer says so.
using Millis = int64_t;

// One entry of [databases]: the name clients connect to and where it really lives.
struct DatabaseConfig {
  std::string name;  // what clients put in `dbname`; "*" is the fallback entry
  std::string host;  // hostname, IP, or a directory for a Unix socket; empty = Unix socket dir
  int port = 5432;
  std::string dbname;  // real database name on the server (default: `name`)
  // Forced server login user (`user=` in the connection string); empty = the client's user.
  std::string user;
  auth::Secret password;  // server password for the forced user (`password=` / `password_file`)
  std::optional<PoolMode> poolMode;
  std::optional<int> poolSize;
  std::optional<int> minPoolSize;
  std::optional<int> reservePool;
  std::optional<int> maxDbConnections;
  std::string connectQuery;
  // Startup parameters sent to the server when a connection is opened: client_encoding,
  // datestyle, timezone, application_name (names as PostgreSQL spells them).
  std::vector<std::pair<std::string, std::string>> serverParams;
};

// One entry of [users]: per-user settings (and, in usher.toml, the user's secret).
struct UserConfig {
  std::string name;
  std::optional<PoolMode> poolMode;
  std::optional<int> poolSize;
  std::optional<int> maxUserConnections;
  auth::Secret password;  // from `password` / `password_file` (TOML); empty = use auth_file
};

struct Config {
  // Where it came from (for messages and RELOAD).
  std::string path;
  bool fromIni = false;

  // Listening.
  std::vector<std::string> listenAddrs{"127.0.0.1"};  // "*" = all IPv4 and IPv6
  int listenPort = 6432;
  std::string unixSocketDir;  // empty = no Unix socket (PgBouncer default: /tmp)
  int unixSocketMode = 0777;
  int listenBacklog = 128;

  // Client authentication.
  AuthType authType = AuthType::ScramSha256;
  std::string authFile;
  std::vector<std::string> adminUsers;
  std::vector<std::string> statsUsers;

  // Pooling.
  PoolMode poolMode = PoolMode::Session;
  int defaultPoolSize = 20;
  int minPoolSize = 0;
  int reservePoolSize = 0;
  Millis reservePoolTimeout = 5000;
  int maxClientConn = 100;
  int maxDbConnections = 0;    // 0 = unlimited
  int maxUserConnections = 0;  // 0 = unlimited
  std::string serverResetQuery = "DISCARD ALL";
  bool serverResetQueryAlways = false;
  std::vector<std::string> ignoreStartupParameters;
  std::vector<std::string> trackExtraParameters;
  // Protocol-level named prepared statements tracked per server connection in transaction and
  // statement mode (LRU); 0 forwards Parse/Bind untouched, as PgBouncer before 1.21.
  int maxPreparedStatements = 200;

  // Timeouts (ms). usher's defaults differ from PgBouncer's where noted in etc/usher.toml.
  Millis serverConnectTimeout = 5000;  // PgBouncer: 15 s
  Millis serverLoginRetry = 1000;      // upper bound of the retry backoff; PgBouncer: 15 s fixed
  Millis queryWaitTimeout = 120000;
  Millis clientLoginTimeout = 60000;
  Millis clientIdleTimeout = 0;
  Millis idleTransactionTimeout = 0;
  Millis serverIdleTimeout = 600000;
  Millis serverLifetime = 3600000;
  Millis queryTimeout = 0;
  Millis statsPeriod = 60000;

  // Limits.
  uint32_t maxPacketSize = 2147483647u;  // PgBouncer's max_packet_size default: 2 GiB - 1
  size_t pktBuf = 16384;                 // read buffer block size

  // Logging and process.
  std::string logFile;
  LogFormat logFormat = LogFormat::Text;
  int verbose = 0;
  bool quiet = false;
  std::string pidFile;
  std::string runAsUser;
  bool logConnections = true;
  bool logDisconnections = true;
  bool logPoolerErrors = true;
  // Waiting clients are served first come, first served across workers; a server is handed to
  // another worker's client only if it began waiting this much before this worker's oldest.
  // 0 = strict order. usher's own key.
  Millis workerFifoSlack = 0;
  int workers = 0;  // 0: one per core (resolved at load)
  // Prometheus text endpoint ("127.0.0.1:9127"); empty = off. usher's own key.
  std::string metricsListen;

  std::vector<DatabaseConfig> databases;
  std::vector<UserConfig> users;
  // Secrets by user name: auth_file entries, overridden by [users] passwords from usher.toml.
  std::map<std::string, auth::Secret, std::less<>> secrets;
  // Keys present in the file that usher does not implement (warned once at startup by name).
  std::vector<std::string> unsupportedKeys;

  const DatabaseConfig* findDatabase(std::string_view name) const;  // falls back to "*"
  const UserConfig* findUser(std::string_view name) const;
  const auth::Secret* findSecret(std::string_view user) const;
  bool isAdminUser(std::string_view user) const;
  bool isStatsUser(std::string_view user) const;

  // Effective settings for one (database, user) pool.
  PoolMode poolModeFor(const DatabaseConfig& db, const UserConfig* user) const;
  int poolSizeFor(const DatabaseConfig& db, const UserConfig* user) const;
};

using ConfigPtr = std::shared_ptr<const Config>;

// Loads `path`: a `.ini` file (or any file whose first section is [databases]/[pgbouncer]) with
// PgBouncer's semantics, otherwise TOML. Resolves auth_file and password_file relative to the
// config's directory. Errors name file, line and key: "<file>:<line>: <key>: <problem>".
Result<std::shared_ptr<Config>> loadConfig(const std::string& path);

// Loader entry points on text (used by loadConfig and by the unit tests).
Result<std::shared_ptr<Config>> parseIni(std::string_view text, const std::string& path);
Result<std::shared_ptr<Config>> parseToml(std::string_view text, const std::string& path);

// SHOW CONFIG: every implemented general key with its current and default text values.
struct SettingView {
  std::string key;
  std::string value;
  std::string defaultValue;
  bool changeable;
};
std::vector<SettingView> describeSettings(const Config& config);
// The console's SET key = value: a validated copy of `config` with one general key changed.
Result<std::shared_ptr<Config>> withSetting(const Config& config, std::string_view key,
                                            std::string_view value);

// Checks cross-key rules after loading (e.g. pool sizes, auth_type needs secrets).
Result<void> validate(Config& config);

}  // namespace usher::config
