// Tests for the pgbouncer.ini loader: PgBouncer semantics, defaults, and located error messages.
#include <doctest/doctest.h>

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "usher/config/config.h"

using namespace usher::config;

namespace {

const std::string kData = USHER_TEST_DATA;

// A fresh directory under the system temp dir, removed when the test ends.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    path = std::filesystem::temp_directory_path() /
           ("usher-config-ini-" + std::to_string(::getpid()) + "-" + std::to_string(counter()++));
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string write(const std::string& name, const std::string& text) const {
    const auto file = path / name;
    std::ofstream(file, std::ios::binary) << text;
    return file.string();
  }
  static int& counter() {
    static int n = 0;
    return n;
  }
};

// The error text of a parse that must fail.
std::string iniError(const std::string& text, const std::string& path = "test.ini") {
  auto config = parseIni(text, path);
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
  TEST_CASE("ini: an empty file gets PgBouncer's defaults, except usher's shorter timeouts") {
    auto config = parseIni("", "empty.ini");
    REQUIRE(config.has_value());
    const Config& c = **config;
    CHECK(c.fromIni);
    CHECK(c.path == "empty.ini");
    CHECK(c.listenAddrs.empty());  // listen_addr unset: Unix socket only
    CHECK(c.listenPort == 6432);
    CHECK(c.unixSocketDir == "/tmp");
    CHECK(name(c.authType) == "md5");
    CHECK(name(c.poolMode) == "session");
    CHECK(c.defaultPoolSize == 20);
    CHECK(c.maxClientConn == 100);
    CHECK(c.serverResetQuery == "DISCARD ALL");
    CHECK(c.queryWaitTimeout == 120000);
    CHECK(c.clientLoginTimeout == 60000);
    CHECK(c.serverIdleTimeout == 600000);
    CHECK(c.serverLifetime == 3600000);
    CHECK(c.reservePoolTimeout == 5000);
    CHECK(c.serverConnectTimeout == 5000);  // PgBouncer: 15 s
    CHECK(c.serverLoginRetry == 1000);      // PgBouncer: 15 s
    CHECK(c.trackExtraParameters == std::vector<std::string>{"IntervalStyle"});
    CHECK(c.databases.empty());
    CHECK(c.unsupportedKeys.empty());
  }

  TEST_CASE("ini: a realistic pgbouncer.ini with %include, quoting, '*' and [users]") {
    auto loaded = loadConfig(kData + "/config_main.ini");
    REQUIRE_MESSAGE(loaded.has_value(), loaded.error().message);
    const Config& c = **loaded;
    CHECK(c.fromIni);

    SUBCASE("[pgbouncer]") {
      CHECK(c.listenAddrs == std::vector<std::string>{"127.0.0.1", "::1"});  // key is LISTEN_ADDR
      CHECK(c.listenPort == 7432);
      CHECK(c.unixSocketDir.empty());
      CHECK(c.unixSocketMode == 0700);
      CHECK(name(c.authType) == "scram-sha-256");
      CHECK(c.authFile == (std::filesystem::path(kData) / "config_userlist.txt").string());
      CHECK(c.adminUsers == std::vector<std::string>{"admin1", "admin2"});
      CHECK(c.statsUsers == std::vector<std::string>{"stats"});
      CHECK(name(c.poolMode) == "transaction");
      CHECK(c.defaultPoolSize == 25);
      CHECK(c.minPoolSize == 1);
      CHECK(c.reservePoolTimeout == 500);
      CHECK(c.serverIdleTimeout == 30000);
      CHECK_FALSE(c.logConnections);
      CHECK(c.logDisconnections);
      CHECK(c.serverResetQueryAlways);
      CHECK(c.ignoreStartupParameters == std::vector<std::string>{"extra_float_digits"});
      CHECK(c.maxPacketSize == 1048576u);
      CHECK(c.workers == 4);
      CHECK(c.logFormat == LogFormat::Json);
      CHECK(c.isAdminUser("admin2"));
      CHECK_FALSE(c.isAdminUser("stats"));
      CHECK(c.isStatsUser("stats"));
    }

    SUBCASE("[databases], in file order, with the included entry") {
      REQUIRE(c.databases.size() == 4);
      CHECK(c.databases[0].name == "trading_db");
      CHECK(c.databases[1].name == "socket_db");
      CHECK(c.databases[2].name == "*");
      CHECK(c.databases[3].name == "librarian_db");

      const DatabaseConfig& t = c.databases[0];
      CHECK(t.host == "10.0.0.5");
      CHECK(t.port == 5433);
      CHECK(t.dbname == "trading");
      CHECK(t.user == "trader");
      CHECK(t.password.kind() == usher::auth::SecretKind::Plain);
      CHECK(t.password.text() == "s3cr'et pass");
      CHECK(t.poolSize == 15);
      CHECK(t.minPoolSize == 3);
      CHECK(t.reservePool == 2);
      CHECK(t.maxDbConnections == 40);
      CHECK(t.poolMode == PoolMode::Statement);
      CHECK(t.connectQuery == "SELECT 'ready'");
      using Params = std::vector<std::pair<std::string, std::string>>;
      CHECK(t.serverParams == Params{{"client_encoding", "UTF8"},
                                     {"DateStyle", "ISO"},
                                     {"TimeZone", "UTC"},
                                     {"application_name", "trading-app"}});

      const DatabaseConfig& s = c.databases[1];  // `socket_db =`: every default
      CHECK(s.host.empty());
      CHECK(s.port == 5432);
      CHECK(s.dbname == "socket_db");
      CHECK_FALSE(s.poolSize.has_value());
      CHECK(s.password.empty());

      const DatabaseConfig& star = c.databases[2];
      CHECK(star.host == "db.internal");
      CHECK(star.dbname.empty());  // the client's requested name

      CHECK(c.databases[3].host == "/var/run/postgresql");
      CHECK(c.databases[3].dbname == "librarian");
    }

    SUBCASE("findDatabase falls back to '*'") {
      REQUIRE(c.findDatabase("trading_db") != nullptr);
      CHECK(c.findDatabase("trading_db")->dbname == "trading");
      const DatabaseConfig* other = c.findDatabase("anything_else");
      REQUIRE(other != nullptr);
      CHECK(other->name == "*");
    }

    SUBCASE("[users]") {
      REQUIRE(c.users.size() == 1);
      const UserConfig* alice = c.findUser("alice");
      REQUIRE(alice != nullptr);
      CHECK(alice->poolMode == PoolMode::Transaction);
      CHECK(alice->maxUserConnections == 10);
      CHECK(alice->poolSize == 5);
      CHECK(c.findUser("bob") == nullptr);
    }

    SUBCASE("auth_file secrets") {
      REQUIRE(c.findSecret("alice") != nullptr);
      CHECK(c.findSecret("alice")->kind() == usher::auth::SecretKind::Scram);
      REQUIRE(c.findSecret("admin1") != nullptr);
      CHECK(c.findSecret("admin1")->text() == "plain-admin-password");
      CHECK(c.findSecret("nobody") == nullptr);
    }

    SUBCASE("unsupported keys are recorded, not fatal") {
      CHECK(c.unsupportedKeys == std::vector<std::string>{"databases.*.auth_user",
                                                          "pgbouncer.tcp_keepalive",
                                                          "pgbouncer.server_tls_sslmode"});
    }
  }

  TEST_CASE("ini: the example etc/pgbouncer.ini loads") {
    auto loaded = loadConfig(kData + "/../../../etc/pgbouncer.ini");
    REQUIRE_MESSAGE(loaded.has_value(), loaded.error().message);
    const Config& c = **loaded;
    CHECK(c.listenAddrs == std::vector<std::string>{"*"});
    CHECK(name(c.authType) == "scram-sha-256");
    CHECK(name(c.poolMode) == "transaction");
    CHECK(c.maxClientConn == 1000);
    REQUIRE(c.findDatabase("librarian_db") != nullptr);
    CHECK(c.findDatabase("librarian_db")->connectQuery == "SET statement_timeout = '30s'");
    CHECK(c.findDatabase("some_tenant_db")->name == "*");
    CHECK(c.findSecret("trading_app_user") != nullptr);
    CHECK(c.unsupportedKeys == std::vector<std::string>{"pgbouncer.tcp_keepalive"});
  }

  TEST_CASE("ini: every error names file, line and key") {
    SUBCASE("unknown setting, with a suggestion") {
      const std::string e = iniError("[pgbouncer]\nlisten_prot = 6432\n");
      CHECK(e == "test.ini:2: listen_prot: unknown setting (did you mean \"listen_port\"?)");
    }
    SUBCASE("bad integer") {
      const std::string e = iniError("[pgbouncer]\n\ndefault_pool_size = abc\n");
      CHECK(e == "test.ini:3: default_pool_size: expected a non-negative integer, got \"abc\"");
    }
    SUBCASE("bad boolean and duration") {
      CHECK(contains(iniError("[pgbouncer]\nlog_connections = maybe\n"),
                     "test.ini:2: log_connections: expected a boolean"));
      CHECK(contains(iniError("[pgbouncer]\nquery_timeout = soon\n"),
                     "test.ini:2: query_timeout: expected a duration"));
    }
    SUBCASE("auth_type usher does not support") {
      CHECK(iniError("[pgbouncer]\nauth_type = hba\n") ==
            "test.ini:2: auth_type: auth_type hba is not supported by usher");
      CHECK(contains(iniError("[pgbouncer]\nauth_type = bogus\n"),
                     "test.ini:2: auth_type: unknown auth_type \"bogus\""));
    }
    SUBCASE("bad pool_mode in a connection string") {
      CHECK(contains(iniError("[databases]\nfoo = host=x pool_mode=sometimes\n"),
                     "test.ini:2: databases.foo.pool_mode: unknown pool mode \"sometimes\""));
    }
    SUBCASE("unknown connection parameter and user parameter") {
      CHECK(iniError("[databases]\nfoo = host=x bogus=1\n") ==
            "test.ini:2: databases.foo.bogus: unknown connection parameter");
      CHECK(contains(iniError("[users]\nbob = pool_sise=3\n"),
                     "test.ini:2: users.bob.pool_sise: unknown user parameter (did you mean "
                     "\"pool_size\"?)"));
      // usher.toml's password_file is not a PgBouncer key, so not an ini key either.
      CHECK(contains(iniError("[databases]\nfoo = password_file=/x\n"),
                     "databases.foo.password_file: unknown connection parameter"));
    }
    SUBCASE("missing %include") {
      const std::string e = iniError("[pgbouncer]\n%include no_such_file.ini\n");
      CHECK(contains(e, "test.ini:2: %include: cannot read \"no_such_file.ini\""));
    }
    SUBCASE("an error in an included file names that file") {
      TempDir dir;
      dir.write("inner.ini", "; inner\n[pgbouncer]\nmax_client_conn = lots\n");
      const std::string main = dir.write("main.ini", "%include inner.ini\n");
      auto loaded = loadConfig(main);
      REQUIRE_FALSE(loaded.has_value());
      CHECK(loaded.error().message ==
            (dir.path / "inner.ini").string() +
                ":3: max_client_conn: expected a non-negative integer, got \"lots\"");
    }
    SUBCASE("an include loop stops") {
      TempDir dir;
      const std::string loop = dir.write("loop.ini", "%include loop.ini\n");
      auto loaded = loadConfig(loop);
      REQUIRE_FALSE(loaded.has_value());
      CHECK(contains(loaded.error().message, ":1: %include: nested more than"));
    }
    SUBCASE("structure") {
      CHECK(contains(iniError("listen_port = 1\n"),
                     "test.ini:1: listen_port: setting outside of any section"));
      CHECK(
          contains(iniError("[pgbouncer]\n[bouncer]\n"), "test.ini:2: [bouncer]: unknown section"));
      CHECK(iniError("[databases]\njust some words\n") ==
            "test.ini:2: syntax error: expected \"key = value\"");
    }
  }

  TEST_CASE("ini: passwords never appear in error messages") {
    const std::string secret = "hunter2-xyz";
    // An unterminated quote, a malformed SCRAM verifier, a stray word after a password.
    for (const std::string& line : {
             "foo = host=x password='" + secret,
             "foo = host=x password=SCRAM-SHA-256$" + secret,
             "foo = host=x password=" + secret + " " + secret,
             "foo = password=" + secret + " port=" + "notaport",
         }) {
      CAPTURE(line);
      const std::string e = iniError("[databases]\n" + line + "\n");
      CHECK(contains(e, "test.ini:2: databases.foo"));
      // The port value may be quoted, the password never.
      CHECK_FALSE(contains(e, secret));
    }
  }

  TEST_CASE("ini: validation after loading names the key") {
    TempDir dir;
    SUBCASE("port out of range") {
      auto loaded = loadConfig(dir.write("a.ini", "[pgbouncer]\nlisten_port = 70000\n"));
      REQUIRE_FALSE(loaded.has_value());
      CHECK(contains(loaded.error().message, "a.ini: listen_port: must be between 1 and 65535"));
    }
    SUBCASE("no listener at all") {
      auto loaded = loadConfig(dir.write("b.ini", "[pgbouncer]\nunix_socket_dir =\n"));
      REQUIRE_FALSE(loaded.has_value());
      CHECK(contains(loaded.error().message, "b.ini: listen_addr: no listener"));
    }
    SUBCASE("md5 without any password source") {
      auto loaded = loadConfig(dir.write("c.ini", "[pgbouncer]\nauth_type = md5\n"));
      REQUIRE_FALSE(loaded.has_value());
      CHECK(contains(loaded.error().message, "c.ini: auth_type: md5 needs passwords"));
    }
    SUBCASE("the admin console's name is reserved") {
      auto loaded = loadConfig(
          dir.write("d.ini", "[databases]\npgbouncer = host=x\n[pgbouncer]\nauth_type = trust\n"));
      REQUIRE_FALSE(loaded.has_value());
      CHECK(contains(loaded.error().message, "d.ini: databases.pgbouncer: the name"));
    }
    SUBCASE("trust with nothing else is a valid file") {
      auto loaded = loadConfig(dir.write("e.ini", "[pgbouncer]\nauth_type = trust\n"));
      REQUIRE_MESSAGE(loaded.has_value(), loaded.error().message);
      // workers defaults to one per core, resolved at load.
      CHECK((*loaded)->workers == int(std::max(1u, std::thread::hardware_concurrency())));
    }
  }

  TEST_CASE("ini: a file without .ini is recognised by its sections") {
    TempDir dir;
    auto ini = loadConfig(
        dir.write("bouncer.conf", "[databases]\nfoo = host=x\n[pgbouncer]\nauth_type = any\n"));
    REQUIRE_MESSAGE(ini.has_value(), ini.error().message);
    CHECK((*ini)->fromIni);
    auto ini2 = loadConfig(dir.write("db.conf",
                                     "[databases]\nfoo = host=x port=5433\n"
                                     "[users]\nbob = pool_size=1\n"));
    // md5 without passwords fails validation, but only after being read as ini.
    REQUIRE_FALSE(ini2.has_value());
    CHECK(contains(ini2.error().message, "auth_type: md5"));
    auto toml = loadConfig(dir.write("native.conf", "[usher]\nauth_type = \"trust\"\n"));
    REQUIRE_MESSAGE(toml.has_value(), toml.error().message);
    CHECK_FALSE((*toml)->fromIni);
    // A TOML [databases] table holding a pasted connection string is still TOML.
    auto toml2 = loadConfig(dir.write(
        "pasted.conf", "[databases]\napp = \"host=db port=1\"\n[usher]\nauth_type = \"any\"\n"));
    REQUIRE_MESSAGE(toml2.has_value(), toml2.error().message);
    CHECK_FALSE((*toml2)->fromIni);
    CHECK((*toml2)->findDatabase("app")->port == 1);
  }

  TEST_CASE("ini: a missing auth_file is an error naming it") {
    TempDir dir;
    auto loaded = loadConfig(dir.write("f.ini", "[pgbouncer]\nauth_file = nowhere.txt\n"));
    REQUIRE_FALSE(loaded.has_value());
    CHECK(contains(loaded.error().message, "f.ini: auth_file: "));
    CHECK(contains(loaded.error().message, (dir.path / "nowhere.txt").string()));
  }
}
