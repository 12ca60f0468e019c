// Tests for the usher.toml loader, the example etc/usher.toml, and per-pool precedence rules.
#include <doctest/doctest.h>

#include <string>

#include "usher/config/config.h"

using namespace usher::config;
using usher::auth::SecretKind;

namespace {

const std::string kData = USHER_TEST_DATA;
// A config "file" in the test data directory, so relative password_file paths resolve there.
const std::string kVirtual = kData + "/virtual.toml";

const char* const kTestVerifier =
    "SCRAM-SHA-256$4096:dXNoZXItdGVzdC1zYWx0LTE=$V7ZQTqQHngGmAFcGNtAuz9cq+MIHnNGeZq/+skwdcOk=:"
    "ZB4q9DKJqKF3Mz7eL97XfRlth9UuhR3zxfkzZ5NjV0g=";

std::shared_ptr<Config> tomlOk(const std::string& text, const std::string& path = "t.toml") {
  auto config = parseToml(text, path);
  REQUIRE_MESSAGE(config.has_value(), config.error().message);
  return *config;
}

std::string tomlError(const std::string& text, const std::string& path = "t.toml") {
  auto config = parseToml(text, path);
  REQUIRE_FALSE(config.has_value());
  return config.error().message;
}

// doctest finds usher::config::toString by ADL when printing an enum and trips over its
// const char* result; comparing names instead also prints readable values on failure.
std::string name(PoolMode m) {
  return toString(m);
}
std::string name(AuthType t) {
  return toString(t);
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

}  // namespace

TEST_SUITE("config") {
  TEST_CASE("toml: an empty file gets usher's defaults") {
    auto c = tomlOk("");
    CHECK_FALSE(c->fromIni);
    CHECK(c->listenAddrs == std::vector<std::string>{"127.0.0.1"});
    CHECK(c->listenPort == 6432);
    CHECK(c->unixSocketDir.empty());
    CHECK(name(c->authType) == "scram-sha-256");
    CHECK(name(c->poolMode) == "session");
    CHECK(c->serverConnectTimeout == 5000);
    CHECK(c->trackExtraParameters.empty());
  }

  TEST_CASE("toml: the example etc/usher.toml loads with its values") {
    auto loaded = loadConfig(kData + "/../../../etc/usher.toml");
    REQUIRE_MESSAGE(loaded.has_value(), loaded.error().message);
    const Config& c = **loaded;
    CHECK_FALSE(c.fromIni);
    CHECK(c.listenAddrs == std::vector<std::string>{"127.0.0.1"});
    CHECK(c.listenPort == 6432);
    CHECK(c.unixSocketDir.empty());
    CHECK(name(c.authType) == "scram-sha-256");
    CHECK(c.authFile.ends_with("etc/userlist.txt"));
    CHECK(c.adminUsers == std::vector<std::string>{"platform_admin"});
    CHECK(c.statsUsers == std::vector<std::string>{"stats_reader", "platform_admin"});
    CHECK(name(c.poolMode) == "transaction");
    CHECK(c.defaultPoolSize == 20);
    CHECK(c.maxClientConn == 1000);
    CHECK(c.ignoreStartupParameters == std::vector<std::string>{"extra_float_digits", "options"});
    CHECK(c.serverConnectTimeout == 5000);
    CHECK(c.serverLoginRetry == 1000);
    CHECK(c.queryWaitTimeout == 120000);
    CHECK(c.idleTransactionTimeout == 600000);
    CHECK(c.logFormat == LogFormat::Text);
    CHECK(c.workers >= 1);  // 0 in the file: one per core, resolved by validate()
    CHECK(c.unsupportedKeys.empty());

    REQUIRE(c.databases.size() == 3);  // file order, not toml++'s key order
    CHECK(c.databases[0].name == "trading_db");
    CHECK(c.databases[1].name == "librarian_db");
    CHECK(c.databases[2].name == "*");
    const DatabaseConfig& t = c.databases[0];
    CHECK(t.host == "postgres");
    CHECK(t.dbname == "trading_db");
    CHECK(t.poolSize == 30);
    CHECK(t.minPoolSize == 2);
    CHECK(t.reservePool == 5);
    CHECK(t.maxDbConnections == 60);
    using Params = std::vector<std::pair<std::string, std::string>>;
    CHECK(t.serverParams == Params{{"client_encoding", "UTF8"}, {"TimeZone", "UTC"}});
    const DatabaseConfig& l = c.databases[1];
    CHECK(l.port == 5432);
    CHECK(l.poolMode == PoolMode::Session);
    CHECK(l.connectQuery == "SET statement_timeout = '30s'");
    CHECK(l.serverParams == Params{{"application_name", "librarian-via-usher"}});
    CHECK(c.databases[2].dbname.empty());
    CHECK(c.findDatabase("tenant_x")->name == "*");

    REQUIRE(c.findUser("trading_app_user") != nullptr);
    CHECK(c.findUser("trading_app_user")->maxUserConnections == 50);
    CHECK(c.findUser("platform_admin")->poolSize == 2);
    for (const char* user :
         {"trading_app_user", "librarian_app_user", "platform_admin", "stats_reader"}) {
      CAPTURE(user);
      REQUIRE(c.findSecret(user) != nullptr);
      CHECK(c.findSecret(user)->kind() == SecretKind::Scram);
    }
  }

  TEST_CASE("toml: every general key is read") {
    auto c = tomlOk(R"(
[usher]
listen_addr = "10.0.0.1, 10.0.0.2"
listen_port = 7000
unix_socket_dir = "/run/usher"
unix_socket_mode = 0o700
listen_backlog = 64
auth_type = "md5"
auth_file = "users.txt"
admin_users = "a, b"
stats_users = ["s"]
pool_mode = "statement"
default_pool_size = 7
min_pool_size = 1
reserve_pool_size = 2
reserve_pool_timeout = 3
max_client_conn = 9
max_db_connections = 10
max_user_connections = 11
server_reset_query = "RESET ALL"
server_reset_query_always = true
ignore_startup_parameters = ["extra_float_digits"]
track_extra_parameters = ["IntervalStyle", "search_path"]
server_connect_timeout = 1
server_login_retry = "100ms"
query_wait_timeout = 2
client_login_timeout = 4
client_idle_timeout = 5
idle_transaction_timeout = 6
server_idle_timeout = 7
server_lifetime = 8
query_timeout = 9
stats_period = 30
max_packet_size = 65536
pkt_buf = 8192
logfile = "/var/log/usher.log"
log_format = "json"
verbose = 2
quiet = true
pidfile = "/run/usher.pid"
user = "usher"
log_connections = false
log_disconnections = false
log_pooler_errors = false
workers = 3
)",
                    "/etc/usher/usher.toml");
    CHECK(c->listenAddrs == std::vector<std::string>{"10.0.0.1", "10.0.0.2"});
    CHECK(c->listenPort == 7000);
    CHECK(c->unixSocketDir == "/run/usher");
    CHECK(c->unixSocketMode == 0700);
    CHECK(c->listenBacklog == 64);
    CHECK(name(c->authType) == "md5");
    CHECK(c->authFile == "/etc/usher/users.txt");
    CHECK(c->adminUsers == std::vector<std::string>{"a", "b"});
    CHECK(c->statsUsers == std::vector<std::string>{"s"});
    CHECK(name(c->poolMode) == "statement");
    CHECK(c->defaultPoolSize == 7);
    CHECK(c->minPoolSize == 1);
    CHECK(c->reservePoolSize == 2);
    CHECK(c->reservePoolTimeout == 3000);
    CHECK(c->maxClientConn == 9);
    CHECK(c->maxDbConnections == 10);
    CHECK(c->maxUserConnections == 11);
    CHECK(c->serverResetQuery == "RESET ALL");
    CHECK(c->serverResetQueryAlways);
    CHECK(c->ignoreStartupParameters == std::vector<std::string>{"extra_float_digits"});
    CHECK(c->trackExtraParameters == std::vector<std::string>{"IntervalStyle", "search_path"});
    CHECK(c->serverConnectTimeout == 1000);
    CHECK(c->serverLoginRetry == 100);
    CHECK(c->queryWaitTimeout == 2000);
    CHECK(c->clientLoginTimeout == 4000);
    CHECK(c->clientIdleTimeout == 5000);
    CHECK(c->idleTransactionTimeout == 6000);
    CHECK(c->serverIdleTimeout == 7000);
    CHECK(c->serverLifetime == 8000);
    CHECK(c->queryTimeout == 9000);
    CHECK(c->statsPeriod == 30000);
    CHECK(c->maxPacketSize == 65536u);
    CHECK(c->pktBuf == 8192u);
    CHECK(c->logFile == "/var/log/usher.log");
    CHECK(c->logFormat == LogFormat::Json);
    CHECK(c->verbose == 2);
    CHECK(c->quiet);
    CHECK(c->pidFile == "/run/usher.pid");
    CHECK(c->runAsUser == "usher");
    CHECK_FALSE(c->logConnections);
    CHECK_FALSE(c->logDisconnections);
    CHECK_FALSE(c->logPoolerErrors);
    CHECK(c->workers == 3);
  }

  TEST_CASE("toml: durations") {
    auto c = tomlOk(R"([usher]
server_connect_timeout = "250ms"
query_wait_timeout = 0.5
server_idle_timeout = "2m"
server_lifetime = "1h"
client_login_timeout = 7
query_timeout = "1.5s"
)");
    CHECK(c->serverConnectTimeout == 250);
    CHECK(c->queryWaitTimeout == 500);
    CHECK(c->serverIdleTimeout == 120000);
    CHECK(c->serverLifetime == 3600000);
    CHECK(c->clientLoginTimeout == 7000);
    CHECK(c->queryTimeout == 1500);

    CHECK(contains(tomlError("[usher]\nquery_timeout = \"5 parsecs\"\n"),
                   "t.toml:2: query_timeout: expected a duration"));
    CHECK(contains(tomlError("[usher]\nquery_timeout = -1\n"),
                   "t.toml:2: query_timeout: expected a duration"));
    CHECK(contains(tomlError("[usher]\nquery_timeout = true\n"),
                   "t.toml:2: query_timeout: expected a duration"));
  }

  TEST_CASE("toml: unknown keys fail with a suggestion") {
    CHECK(tomlError("[usher]\nlisten_prot = 6432\n") ==
          "t.toml:2: listen_prot: unknown setting (did you mean \"listen_port\"?)");
    CHECK(tomlError("[usher]\ncompletely_unrelated_thing = 1\n") ==
          "t.toml:2: completely_unrelated_thing: unknown setting");
    CHECK(tomlError("\n[databases.app]\nhots = \"db\"\n") ==
          "t.toml:3: databases.app.hots: unknown connection parameter (did you mean \"host\"?)");
    CHECK(tomlError("[users.bob]\npasword_file = \"x\"\n") ==
          "t.toml:2: users.bob.pasword_file: unknown user parameter (did you mean "
          "\"password_file\"?)");
    CHECK(contains(tomlError("[pgbouncer]\nlisten_port = 1\n"),
                   "t.toml:1: pgbouncer: unknown section (usher.toml calls PgBouncer's"));
    CHECK(tomlError("[databse.x]\n") ==
          "t.toml:1: databse: unknown section (did you mean \"databases\"?)");
  }

  TEST_CASE("toml: PgBouncer keys usher does not implement are recorded") {
    auto c = tomlOk(R"([usher]
tcp_keepalive = 1
server_check_query = "select 1"
[databases.app]
host = "db"
load_balance_hosts = "round-robin"
[users.bob]
client_idle_timeout = 5
)");
    CHECK(c->unsupportedKeys == std::vector<std::string>{"usher.tcp_keepalive",
                                                         "usher.server_check_query",
                                                         "databases.app.load_balance_hosts",
                                                         "users.bob.client_idle_timeout"});
  }

  TEST_CASE("toml: wrong types name the key and the expected type") {
    CHECK(tomlError("[usher]\nlisten_port = \"abc\"\n") ==
          "t.toml:2: listen_port: expected an integer, got \"abc\"");
    CHECK(tomlError("[usher]\nlog_connections = 1\n") ==
          "t.toml:2: log_connections: expected a boolean (true or false), got the integer 1");
    CHECK(contains(tomlError("[usher]\nadmin_users = [\"a\", 2]\n"),
                   "t.toml:2: admin_users: expected an array of strings"));
    CHECK(contains(tomlError("[usher]\ndefault_pool_size = -3\n"),
                   "t.toml:2: default_pool_size: expected a non-negative integer, got \"-3\""));
    CHECK(tomlError("[usher]\nauth_type = \"cert\"\n") ==
          "t.toml:2: auth_type: auth_type cert is not supported by usher");
    CHECK(tomlError("[databases.app]\nport = \"5432\"\n") ==
          "t.toml:2: databases.app.port: expected an integer, got \"5432\"");
    CHECK(tomlError("usher = 5\n") == "t.toml:1: usher: expected a table, got the integer 5");
    CHECK(contains(tomlError("[usher]\nlisten_port = \n"), "t.toml:2: TOML syntax error"));
  }

  TEST_CASE("toml: password_file is read and its trailing newline stripped") {
    auto c = tomlOk(R"([users.app]
password_file = "config_secret_verifier.txt"
[users.legacy]
password_file = "config_secret_plain.txt"
[databases.db]
host = "h"
user = "forced"
password_file = "config_secret_plain.txt"
)",
                    kVirtual);
    const UserConfig* app = c->findUser("app");
    REQUIRE(app != nullptr);
    CHECK(app->password.kind() == SecretKind::Scram);
    CHECK(app->password.text() == kTestVerifier);
    CHECK(app->password.scram().iterations == 4096);
    const UserConfig* legacy = c->findUser("legacy");
    REQUIRE(legacy != nullptr);
    CHECK(legacy->password.kind() == SecretKind::Plain);
    CHECK(legacy->password.text() == "from-file-password");  // "\r\n" stripped
    CHECK(c->findDatabase("db")->password.text() == "from-file-password");
    // [users] secrets land in `secrets`, where they override auth_file entries.
    REQUIRE(c->findSecret("app") != nullptr);
    CHECK(c->findSecret("app")->text() == kTestVerifier);
  }

  TEST_CASE("toml: inline password, and secret errors that never show the secret") {
    auto c = tomlOk(std::string("[users.app]\npassword = \"") + kTestVerifier + "\"\n");
    CHECK(c->findSecret("app")->kind() == SecretKind::Scram);

    const std::string missing =
        tomlError("[users.app]\n\npassword_file = \"no_such_secret\"\n", kVirtual);
    CHECK(contains(missing, kVirtual + ":3: users.app.password_file: cannot read \"" + kData +
                                "/no_such_secret\": No such file or directory"));

    const std::string both = tomlError(
        "[users.app]\npassword = \"hunter2-xyz\"\npassword_file = \"config_secret_plain.txt\"\n",
        kVirtual);
    CHECK(contains(both, "users.app: set password or password_file, not both"));
    CHECK_FALSE(contains(both, "hunter2"));

    const std::string bad = tomlError("[users.app]\npassword = \"SCRAM-SHA-256$hunter2-xyz\"\n");
    CHECK(contains(bad, "t.toml:2: users.app.password: is not a valid secret"));
    CHECK_FALSE(contains(bad, "hunter2"));

    const std::string wrongType = tomlError("[databases.d]\npassword = 12345\n");
    CHECK(wrongType == "t.toml:2: databases.d.password: expected a string, got an integer");
  }

  TEST_CASE("toml: a database may be a pasted pgbouncer.ini connection string") {
    auto c = tomlOk("[databases]\napp = \"host=db port=6000 pool_mode=transaction\"\n");
    const DatabaseConfig* app = c->findDatabase("app");
    REQUIRE(app != nullptr);
    CHECK(app->host == "db");
    CHECK(app->port == 6000);
    CHECK(app->poolMode == PoolMode::Transaction);
    CHECK(c->findDatabase("other") == nullptr);  // no "*" entry
  }

  TEST_CASE("poolModeFor / poolSizeFor: user beats database beats global") {
    auto c = tomlOk(R"([usher]
pool_mode = "session"
default_pool_size = 20
[databases.plain]
host = "h"
[databases.tuned]
host = "h"
pool_mode = "transaction"
pool_size = 8
[users.vip]
pool_mode = "statement"
pool_size = 3
[users.ordinary]
max_user_connections = 4
)");
    const DatabaseConfig& plain = *c->findDatabase("plain");
    const DatabaseConfig& tuned = *c->findDatabase("tuned");
    const UserConfig* vip = c->findUser("vip");
    const UserConfig* ordinary = c->findUser("ordinary");

    CHECK(name(c->poolModeFor(plain, nullptr)) == "session");
    CHECK(name(c->poolModeFor(tuned, nullptr)) == "transaction");
    CHECK(name(c->poolModeFor(tuned, ordinary)) == "transaction");
    CHECK(name(c->poolModeFor(tuned, vip)) == "statement");
    CHECK(name(c->poolModeFor(plain, vip)) == "statement");

    CHECK(c->poolSizeFor(plain, nullptr) == 20);
    CHECK(c->poolSizeFor(tuned, ordinary) == 8);
    CHECK(c->poolSizeFor(tuned, vip) == 3);
    CHECK(c->poolSizeFor(plain, vip) == 3);

    CHECK(std::string(toString(PoolMode::Transaction)) == "transaction");
    CHECK(std::string(toString(AuthType::ScramSha256)) == "scram-sha-256");
  }

  TEST_CASE("validate: cross-key rules") {
    Config c;
    c.authType = AuthType::Trust;
    c.path = "v.toml";
    REQUIRE(validate(c).has_value());

    SUBCASE("min_pool_size above default_pool_size") {
      c.minPoolSize = 30;
      auto r = validate(c);
      REQUIRE_FALSE(r.has_value());
      CHECK(contains(r.error().message, "v.toml: min_pool_size: must be between 0 and"));
    }
    SUBCASE("database min_pool_size above its pool_size") {
      DatabaseConfig db;
      db.name = "d";
      db.poolSize = 2;
      db.minPoolSize = 3;
      c.databases.push_back(db);
      auto r = validate(c);
      REQUIRE_FALSE(r.has_value());
      CHECK(contains(r.error().message, "v.toml: databases.d.min_pool_size"));
    }
    SUBCASE("pkt_buf, max_client_conn, workers") {
      c.pktBuf = 1024;
      CHECK(contains(validate(c).error().message, "pkt_buf: must be at least 4096"));
      c.pktBuf = 4096;
      c.maxClientConn = 0;
      CHECK(contains(validate(c).error().message, "max_client_conn"));
      c.maxClientConn = 1;
      c.workers = 0;
      REQUIRE(validate(c).has_value());
      CHECK(c.workers >= 1);
    }
    SUBCASE("scram-sha-256 needs a password source") {
      c.authType = AuthType::ScramSha256;
      CHECK(contains(validate(c).error().message, "auth_type: scram-sha-256 needs passwords"));
      c.secrets.emplace("u", usher::auth::Secret::plain("pw"));
      CHECK(validate(c).has_value());
    }
  }
}
