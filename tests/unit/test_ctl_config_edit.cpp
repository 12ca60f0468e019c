// usherctl's config editing: line-based TOML / ini / userlist edits that keep everything else,
// and planned tenant changes validated with usher's own loader.
#include <doctest/doctest.h>
#include <sodium.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "usher/auth/scram.h"
#include "usher/config/config.h"
#include "usher/ctl/config_edit.h"
#include "usher/ctl/files.h"

using namespace usher::ctl;
namespace fs = std::filesystem;

namespace {

constexpr std::string_view kToml = R"(# usher.toml for the tests
[usher]
listen_port = 6432  # trailing comment
auth_type = "scram-sha-256"
admin_users = ["platform_admin"]

# ---- Databases ----
[databases.trading_db]
host = "postgres"
pool_size = 30

[databases."*"]
host = "postgres"

# ---- Users ----
[users.trading_app_user]
pool_mode = "transaction"
password = "SCRAM-SHA-256$4096:iyULnXPgoJ8zgUklSWPC3w==$MZNIih3odV/m4/ivKVTZ+bKn/zZ7S7hs8+lmMCdt0lo=:K6UBUrdFUY4QS3AiGqSe0X4lAG3P2laxSuCgsPL+Y4w="
max_user_connections = 50

[users.platform_admin]
pool_size = 2
)";

constexpr std::string_view kIni = R"(;; pgbouncer.ini
[databases]
trading_db = host=postgres port=5432 dbname=trading_db
;; fallback
* = host=postgres port=5432

[users]
platform_admin = pool_mode=session

[pgbouncer]
listen_port = 6432
auth_type = scram-sha-256
auth_file = userlist.txt
admin_users = platform_admin
)";

std::string verifierFor(std::string_view password) {
  return usher::auth::formatVerifier(usher::auth::makeVerifier(password));
}

struct TempDir {
  fs::path path;
  TempDir() {
    char tmpl[] = "/tmp/usherctl-unit-XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    path = tmpl;
  }
  ~TempDir() { fs::remove_all(path); }
  std::string write(const std::string& name, std::string_view text) const {
    std::ofstream(path / name) << text;
    return (path / name).string();
  }
};

}  // namespace

TEST_SUITE("ctl") {
  TEST_CASE("config edit: TOML tables") {
    CHECK(tomlHasTable(kToml, "databases", "trading_db"));
    CHECK(tomlHasTable(kToml, "databases", "*"));  // quoted name
    CHECK_FALSE(tomlHasTable(kToml, "databases", "acme_db"));
    CHECK(tomlGetKey(kToml, "users", "platform_admin", "pool_size") == "2");

    SUBCASE("add a database after the last [databases.*]") {
      std::string t =
          tomlAddTable(kToml, "databases", "acme_db", {{"host", "\"postgres\""}, {"port", "5432"}},
                       "usherctl: tenant acme");
      CHECK(tomlHasTable(t, "databases", "acme_db"));
      auto at = t.find("[databases.acme_db]");
      CHECK(at > t.find("[databases.\"*\"]"));
      CHECK(at < t.find("# ---- Users ----"));  // the next section's comment stays with it
      CHECK(t.find("# usherctl: tenant acme\n[databases.acme_db]\nhost = \"postgres\"\nport = "
                   "5432\n\n# ---- Users") != std::string::npos);
      // Everything else is byte for byte what it was.
      CHECK(tomlRemoveTable(t, "databases", "acme_db") == kToml);
    }
    SUBCASE("set password_file, replacing an inline password") {
      std::string t = tomlSetKey(kToml, "users", "trading_app_user", "password_file",
                                 "\"/srv/config/secrets/trading_app_user.scram\"", {"password"});
      CHECK(tomlGetKey(t, "users", "trading_app_user", "password_file") ==
            "\"/srv/config/secrets/trading_app_user.scram\"");
      CHECK_FALSE(tomlGetKey(t, "users", "trading_app_user", "password"));
      CHECK(tomlGetKey(t, "users", "trading_app_user", "max_user_connections") == "50");
      CHECK(t.find("listen_port = 6432  # trailing comment") != std::string::npos);
    }
    SUBCASE("set a key in a table that does not exist creates it") {
      std::string t = tomlSetKey(kToml, "users", "acme_user", "password_file", "\"/x\"");
      CHECK(tomlGetKey(t, "users", "acme_user", "password_file") == "\"/x\"");
      CHECK(t.ends_with("[users.acme_user]\npassword_file = \"/x\"\n"));
    }
    SUBCASE("remove a table keeps its neighbours") {
      std::string t = tomlRemoveTable(kToml, "users", "trading_app_user");
      CHECK_FALSE(tomlHasTable(t, "users", "trading_app_user"));
      CHECK(tomlHasTable(t, "users", "platform_admin"));
      CHECK(t.find("# ---- Users ----\n[users.platform_admin]") != std::string::npos);
    }
    SUBCASE("an empty file") {
      std::string t = tomlAddTable("", "databases", "a", {{"port", "1"}});
      CHECK(t == "[databases.a]\nport = 1\n");
    }
    CHECK(tomlString("a\"b\\c") == "\"a\\\"b\\\\c\"");
  }

  TEST_CASE("config edit: ini keys and userlist entries") {
    std::string t = iniSetKey(kIni, "databases", "acme_db", "host=postgres dbname=acme_db");
    CHECK(iniGetKey(t, "databases", "acme_db") == "host=postgres dbname=acme_db");
    // After the section's last entry, before the blank line and the next section.
    CHECK(
        t.find("* = host=postgres port=5432\nacme_db = host=postgres dbname=acme_db\n\n[users]") !=
        std::string::npos);
    CHECK(iniRemoveKey(t, "databases", "acme_db") == kIni);
    CHECK(iniGetKey(kIni, "pgbouncer", "auth_file") == "userlist.txt");
    std::string replaced = iniSetKey(kIni, "users", "platform_admin", "pool_mode=transaction");
    CHECK(iniGetKey(replaced, "users", "platform_admin") == "pool_mode=transaction");
    std::string created = iniSetKey("[pgbouncer]\nlisten_port = 1\n", "databases", "x", "host=h");
    CHECK(created == "[pgbouncer]\nlisten_port = 1\n\n[databases]\nx = host=h\n");

    const std::string list = ";; comment\n\"a\" \"secret-a\"\n\"b\"\"q\" \"secret-b\"\n";
    CHECK(userlistGet(list, "a") == "secret-a");
    CHECK(userlistGet(list, "b\"q") == "secret-b");
    CHECK_FALSE(userlistGet(list, "c"));
    std::string u = userlistSet(list, "a", "new");
    CHECK(userlistGet(u, "a") == "new");
    CHECK(u.starts_with(";; comment\n\"a\" \"new\"\n"));
    u = userlistSet(u, "c", "SCRAM-SHA-256$x");
    CHECK(u.ends_with("\"c\" \"SCRAM-SHA-256$x\"\n"));
    CHECK(userlistRemove(userlistRemove(u, "c"), "a") == ";; comment\n\"b\"\"q\" \"secret-b\"\n");
  }

  TEST_CASE("config edit: planned tenant changes load with usher's loader") {
    REQUIRE(sodium_init() >= 0);
    TempDir dir;
    const std::string verifier = verifierFor("a-long-random-password-for-acme");

    SUBCASE("usher.toml") {
      const std::string adminVerifier = dir.write("admin.scram", verifierFor("admin-password-x1"));
      const std::string path = dir.write(
          "usher.toml", std::string(kToml) + "password_file = \"" + adminVerifier + "\"\n");
      auto loaded = usher::config::loadConfig(path);
      INFO((loaded ? std::string() : loaded.error().message));
      REQUIRE(loaded);
      const std::string vf = dir.write("acme_user.scram", verifier + "\n");
      TenantConfigEntry e{"acme_db", "127.0.0.1", 5433, 4, "acme_user", verifier, vf};
      auto change = planAddTenant(path, **loaded, e);
      REQUIRE(change);
      CHECK(change->changed());
      CHECK(change->actions.size() == 2);
      REQUIRE(commitChange(*change));
      auto after = usher::config::loadConfig(path);
      REQUIRE(after);
      const auto* db = (*after)->findDatabase("acme_db");
      REQUIRE(db);
      CHECK(db->name == "acme_db");
      CHECK(db->port == 5433);
      CHECK(db->poolSize == 4);
      const auto* secret = (*after)->findSecret("acme_user");
      REQUIRE(secret);
      CHECK(secret->text() == verifier);
      // Idempotent: planning again changes nothing.
      auto again = planAddTenant(path, **after, e);
      REQUIRE(again);
      CHECK_FALSE(again->changed());
      // Removal restores the original text.
      auto removal = planRemoveTenant(path, **after, "acme_db", "acme_user");
      REQUIRE(removal);
      REQUIRE(commitChange(*removal));
      auto text = readTextFile(path);
      REQUIRE(text);
      CHECK(*text == std::string(kToml) + "password_file = \"" + adminVerifier + "\"\n");
    }
    SUBCASE("pgbouncer.ini + userlist.txt") {
      dir.write("userlist.txt",
                "\"platform_admin\" \"" + verifierFor("admin-password-x1") + "\"\n");
      const std::string path = dir.write("pgbouncer.ini", kIni);
      auto loaded = usher::config::loadConfig(path);
      REQUIRE(loaded);
      TenantConfigEntry e{"acme_db", "db host", 5432, std::nullopt, "acme_user", verifier, ""};
      auto change = planAddTenant(path, **loaded, e);
      REQUIRE(change);
      REQUIRE(commitChange(*change));
      auto after = usher::config::loadConfig(path);
      REQUIRE(after);
      const auto* db = (*after)->findDatabase("acme_db");
      REQUIRE(db);
      CHECK(db->host == "db host");  // quoted in the connection string
      REQUIRE((*after)->findSecret("acme_user"));
      CHECK((*after)->findSecret("acme_user")->text() == verifier);
      CHECK(fileMode((dir.path / "userlist.txt").string()).has_value());
      auto again = planAddTenant(path, **after, e);
      REQUIRE(again);
      CHECK_FALSE(again->changed());
    }
    SUBCASE("an edit the loader rejects writes nothing") {
      const std::string path = dir.write("pgbouncer.ini", kIni);
      dir.write("userlist.txt", "");
      auto loaded = usher::config::loadConfig(path);
      REQUIRE(loaded);
      TenantConfigEntry e{"pgbouncer", "h", 5432, std::nullopt, "acme_user", verifier, ""};
      auto change = planAddTenant(path, **loaded, e);
      REQUIRE(change);
      auto ok = commitChange(*change);
      REQUIRE_FALSE(ok);
      CHECK(ok.error().message.find("nothing was written") != std::string::npos);
      CHECK(ok.error().message.find("reserved for the admin console") != std::string::npos);
      CHECK(*readTextFile(path) == kIni);
      CHECK(readTextFile((dir.path / "userlist.txt").string())->empty());
    }
    SUBCASE("pgbouncer.ini without auth_file") {
      std::string noAuth(kIni);
      noAuth.replace(noAuth.find("auth_file = userlist.txt\n"), 25, "");
      noAuth.replace(noAuth.find("auth_type = scram-sha-256"), 25, "auth_type = trust");
      const std::string path = dir.write("pgbouncer.ini", noAuth);
      auto loaded = usher::config::loadConfig(path);
      REQUIRE(loaded);
      TenantConfigEntry e{"acme_db", "h", 5432, std::nullopt, "acme_user", verifier, ""};
      auto change = planAddTenant(path, **loaded, e);
      REQUIRE_FALSE(change);
      CHECK(change.error().message.find("has no auth_file") != std::string::npos);
    }
  }

  TEST_CASE("files: atomic write keeps or sets the mode") {
    TempDir dir;
    const std::string path = (dir.path / "secret").string();
    REQUIRE(atomicWriteFile(path, "one", 0600));
    CHECK(fileMode(path) == 0600);
    CHECK(readTextFile(path) == "one");
    fs::permissions(path, fs::perms(0640));
    REQUIRE(atomicWriteFile(path, "two"));
    CHECK(fileMode(path) == 0640);  // kept
    CHECK(readTextFile(path) == "two");
    int entries = 0;
    for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir.path)) ++entries;
    CHECK(entries == 1);  // no temp files left
    CHECK_FALSE(atomicWriteFile((dir.path / "missing" / "x").string(), "x"));
  }
}
