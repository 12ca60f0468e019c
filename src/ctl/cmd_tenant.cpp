// Tenant lifecycle: provision, rotate-password, deprovision, the tenants view, and reload.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <ctime>
#include <map>

#include "usher/auth/scram.h"
#include "usher/auth/secret.h"
#include "usher/ctl/backup_store.h"
#include "usher/ctl/config_edit.h"
#include "usher/ctl/context.h"
#include "usher/ctl/files.h"
#include "usher/ctl/json.h"
#include "usher/ctl/password.h"

namespace usher::ctl {
namespace {

// Names a tenant is known by. Role and database names are restricted to what needs no quoting
// anywhere (SQL, TOML keys, ini keys, file names).
struct Tenant {
  std::string name;
  std::string role;
  std::string database;
  std::string secretFile;    // plaintext password, 0600: the Docker secret the app mounts
  std::string verifierFile;  // usher.toml password_file: the SCRAM verifier only
};

bool isSimpleName(std::string_view s) {
  if (s.empty() || s.size() > 63) return false;
  if (!(std::islower(static_cast<unsigned char>(s[0])) || s[0] == '_')) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::islower(static_cast<unsigned char>(c)) ||
           std::isdigit(static_cast<unsigned char>(c)) || c == '_';
  });
}

Result<Tenant> tenantFrom(const Context& ctx) {
  const auto& pos = ctx.args().positional;
  if (pos.size() != 1) {
    return failPlain("expected exactly one tenant NAME (e.g. trading), got " +
                     std::to_string(pos.size()) + " arguments");
  }
  Tenant t;
  t.name = pos[0];
  if (!isSimpleName(t.name) || t.name.size() > 50) {
    return failPlain("tenant name \"" + t.name +
                     "\" must be lowercase letters, digits and '_' (starting with a letter), "
                     "at most 50 characters");
  }
  t.role = ctx.args().getOr("role", t.name + "_user");
  t.database = ctx.args().getOr("database", t.name + "_db");
  for (const auto& [what, v] : {std::pair{"--role", t.role}, std::pair{"--database", t.database}}) {
    if (!isSimpleName(v)) {
      return failPlain(std::string(what) + " \"" + v +
                       "\" must be lowercase letters, digits and '_', at most 63 characters");
    }
  }
  t.secretFile = ctx.args().getOr("secret-file", joinPath(ctx.secretsDir(), t.role + ".password"));
  t.verifierFile = joinPath(ctx.secretsDir(), t.role + ".scram");
  return t;
}

Result<std::string> readSecret(const std::string& path) {
  auto text = readTextFile(path);
  if (!text) return text;
  while (!text->empty() && (text->back() == '\n' || text->back() == '\r')) text->pop_back();
  return text;
}

// Reads a user-supplied tenant password and refuses a weak one.
Result<std::optional<std::string>> suppliedPassword(const Context& ctx, const std::string& role) {
  auto file = ctx.args().get("tenant-password-file");
  if (!file) return std::optional<std::string>();
  auto pw = readSecret(*file);
  if (!pw) return std::unexpected(pw.error());
  if (auto weak = passwordWeakness(*pw, role)) {
    return failPlain("refusing the password in " + *file + " for " + role + ": " + *weak +
                     " (omit --tenant-password-file to get a random one)");
  }
  return std::optional<std::string>(std::move(*pw));
}

struct RoleState {
  bool exists = false;
  bool canReadVerifier = true;
  std::string stored;  // rolpassword
};

Result<RoleState> roleState(PgClient& pg, const std::string& role) {
  RoleState s;
  auto r = pg.query("SELECT rolpassword FROM pg_authid WHERE rolname = " + quoteLiteralSql(role));
  if (!r) {
    if (r.error().sqlstate != "42501") return std::unexpected(r.error());
    s.canReadVerifier = false;
    r = pg.query("SELECT 1 FROM pg_roles WHERE rolname = " + quoteLiteralSql(role));
    if (!r) return std::unexpected(r.error());
  }
  s.exists = !r->rows.empty();
  if (s.exists && s.canReadVerifier && r->rows[0][0]) s.stored = *r->rows[0][0];
  return s;
}

struct DatabaseState {
  bool exists = false;
  std::string owner;
  bool publicConnect = false;
};

Result<DatabaseState> databaseState(PgClient& pg, const std::string& db) {
  auto r = pg.query(
      "SELECT r.rolname, EXISTS (SELECT 1 FROM aclexplode(coalesce(d.datacl, acldefault('d', "
      "d.datdba))) a WHERE a.grantee = 0 AND a.privilege_type = 'CONNECT') "
      "FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba WHERE d.datname = " +
      quoteLiteralSql(db));
  if (!r) return std::unexpected(r.error());
  DatabaseState s;
  if (r->rows.empty()) return s;
  s.exists = true;
  s.owner = r->value(0, "rolname");
  s.publicConnect = r->rows[0][1].value_or("") == "t";
  return s;
}

Result<void> run(PgClient& pg, const std::string& sql) {
  auto r = pg.execute(sql);
  if (!r) return std::unexpected(r.error());
  return {};
}

// Where usher reaches PostgreSQL for a new tenant: --db-host/--db-port, else what the config
// already uses (the "*" fallback, then the first database), else the admin connection.
Result<std::pair<std::string, int>> entryTarget(const Context& ctx, const config::Config& cfg,
                                                const ConnParams& admin) {
  std::string host = admin.host;
  int port = admin.port;
  const config::DatabaseConfig* like = nullptr;
  for (const auto& db : cfg.databases) {
    if (db.name == "*") like = &db;
  }
  if (!like && !cfg.databases.empty()) like = &cfg.databases.front();
  if (like) {
    host = like->host;
    port = like->port;
  }
  host = ctx.args().getOr("db-host", host);
  auto p = ctx.args().getInt("db-port", port, 1, 65535);
  if (!p) return std::unexpected(p.error());
  return std::pair{host, *p};
}

struct Report {
  std::vector<std::string> actions;
  std::vector<std::string> warnings;
  std::string reloadedHow;
};

int finish(const Context& ctx, const Tenant& t, const Report& rep, int code,
           const std::string& nothingMessage, const std::string* password) {
  if (ctx.json()) {
    JsonWriter w;
    w.beginObject()
        .field("ok", code == kExitOk)
        .field("tenant", t.name)
        .field("role", t.role)
        .field("database", t.database)
        .field("secret_file", t.secretFile)
        .field("changed", !rep.actions.empty());
    w.key("actions").beginArray();
    for (const auto& a : rep.actions) w.value(a);
    w.endArray();
    w.key("warnings").beginArray();
    for (const auto& a : rep.warnings) w.value(a);
    w.endArray();
    w.key("reloaded");
    if (rep.reloadedHow.empty()) {
      w.null();
    } else {
      w.value(rep.reloadedHow);
    }
    if (password) w.field("password", *password);
    w.endObject();
    ctx.emitJson(w.str());
    return code;
  }
  if (rep.actions.empty()) {
    ctx.info(nothingMessage);
  } else {
    for (const auto& a : rep.actions) ctx.info("  " + a);
  }
  if (!rep.reloadedHow.empty()) ctx.info("  usher reloaded (" + rep.reloadedHow + ")");
  if (password) ctx.info("password: " + *password);
  return code;
}

// Applies a planned config change and reloads usher. Returns false (with the reason in
// rep.warnings) when usher could not be reloaded.
Result<bool> applyConfig(const Context& ctx, const config::Config& cfg, ConfigChange change,
                         bool forceReload, Report& rep) {
  if (auto ok = commitChange(change); !ok) return std::unexpected(ok.error());
  rep.actions.insert(rep.actions.end(), change.actions.begin(), change.actions.end());
  if (!change.changed() && !forceReload) return true;
  ReloadOutcome r = ctx.reloadUsher(&cfg);
  for (const auto& p : r.problems) {
    rep.warnings.push_back(p);
    ctx.warn(p);
  }
  if (r.reloaded) {
    rep.reloadedHow = r.how;
    return true;
  }
  return false;
}

}  // namespace

int cmdProvision(Context& ctx) {
  auto t = tenantFrom(ctx);
  if (!t) return ctx.fail(t.error().message, kExitUsage);
  auto cfg = ctx.loadConfig();
  if (!cfg) return ctx.fail(cfg.error().message);
  auto supplied = suppliedPassword(ctx, t->role);
  if (!supplied) return ctx.fail(supplied.error().message);
  auto poolSize = ctx.args().getInt("pool-size", 0, 0, 100000);
  if (!poolSize) return ctx.fail(poolSize.error().message, kExitUsage);
  auto admin = ctx.pgParams();
  if (!admin) return ctx.fail(admin.error().message);
  if (*cfg) {
    // Fail on a config usherctl cannot edit (no auth_file, unreadable) before touching anything.
    TenantConfigEntry probe{t->database, "", 1, std::nullopt, t->role, "", t->verifierFile};
    if (auto plan = planAddTenant(*ctx.configPath(), **cfg, probe); !plan) {
      return ctx.fail(plan.error().message);
    }
  }
  auto pg = PgClient::connect(*admin);
  if (!pg) return ctx.fail(pg.error().message);

  Report rep;
  std::optional<std::string> newPassword;  // set when this run created the password
  auto role = roleState(*pg, t->role);
  if (!role) return ctx.fail("reading role " + t->role + ": " + role.error().message);
  auto db = databaseState(*pg, t->database);
  if (!db) return ctx.fail("reading database " + t->database + ": " + db.error().message);
  if (db->exists && db->owner != t->role) {
    return ctx.fail("database " + t->database + " already exists and is owned by " + db->owner +
                    ", not " + t->role + ": refusing to take it over");
  }
  if (auto ok = ensureDirectory(parentDir(t->secretFile), 0700); !ok) {
    return ctx.fail(ok.error().message);
  }
  const bool secretExists = fileExists(t->secretFile);

  std::string verifier;
  if (!role->exists) {
    std::string password;
    if (*supplied) {
      password = **supplied;
    } else if (secretExists) {
      // An earlier run wrote the secret and stopped before CREATE ROLE: keep that password.
      auto pw = readSecret(t->secretFile);
      if (!pw) return ctx.fail(pw.error().message);
      if (auto weak = passwordWeakness(*pw, t->role)) {
        return ctx.fail("the existing secret file " + t->secretFile + " holds a weak password (" +
                        *weak + "): remove it to get a new random password");
      }
      password = std::move(*pw);
      rep.actions.push_back("reuse the password already in " + t->secretFile);
    } else {
      password = generatePassword();
    }
    verifier = auth::formatVerifier(auth::makeVerifier(password));
    if (!secretExists || *supplied) {
      // The secret is on disk before the role exists: a crash in between loses nothing.
      if (auto ok = atomicWriteFile(t->secretFile, password, 0600); !ok) {
        return ctx.fail(ok.error().message);
      }
      rep.actions.push_back("write the password to " + t->secretFile + " (mode 0600)");
    }
    // A pre-hashed verifier is stored as is: the plaintext never reaches PostgreSQL.
    if (auto ok = run(*pg, "CREATE ROLE " + quoteIdent(t->role) + " LOGIN PASSWORD " +
                               quoteLiteralSql(verifier));
        !ok) {
      return ctx.fail("CREATE ROLE " + t->role + ": " + ok.error().message);
    }
    rep.actions.push_back("create role " + t->role + " (SCRAM-SHA-256 verifier only)");
    if (ctx.args().has("show-password")) newPassword = password;
    auth::wipeMemory(password.data(), password.size());
  } else {
    if (!role->canReadVerifier) {
      return ctx.fail("role " + t->role + " exists, but " + admin->user +
                      " cannot read pg_authid to check it: connect as a superuser");
    }
    if (!role->stored.starts_with("SCRAM-SHA-256$")) {
      return ctx.fail("role " + t->role +
                      " exists without a SCRAM-SHA-256 password: run "
                      "`usherctl rotate-password " +
                      t->name + "` to issue one");
    }
    verifier = role->stored;
    if (!secretExists) {
      return ctx.fail("role " + t->role + " exists but its secret file " + t->secretFile +
                      " is missing: run `usherctl rotate-password " + t->name +
                      "` to issue a new password");
    }
    auto pw = readSecret(t->secretFile);
    if (!pw) return ctx.fail(pw.error().message);
    const bool matches = passwordMatches(*pw, t->role, verifier);
    auth::wipeMemory(pw->data(), pw->size());
    if (!matches) {
      return ctx.fail("the secret file " + t->secretFile + " does not hold " + t->role +
                      "'s current password: run `usherctl rotate-password " + t->name + "`");
    }
    if (*supplied && !passwordMatches(**supplied, t->role, verifier)) {
      return ctx.fail("role " + t->role +
                      " already exists with another password: use "
                      "`usherctl rotate-password " +
                      t->name + " --tenant-password-file ...`");
    }
  }
  if (auto mode = fileMode(t->secretFile); mode && *mode != 0600) {
    if (::chmod(t->secretFile.c_str(), 0600) != 0) {
      return ctx.fail("chmod 0600 " + t->secretFile + ": " + errnoText(errno));
    }
    rep.actions.push_back("fix the mode of " + t->secretFile + " to 0600");
  }

  if (!db->exists) {
    if (auto ok = run(
            *pg, "CREATE DATABASE " + quoteIdent(t->database) + " OWNER " + quoteIdent(t->role));
        !ok) {
      return ctx.fail("CREATE DATABASE " + t->database + ": " + ok.error().message);
    }
    rep.actions.push_back("create database " + t->database + " owned by " + t->role);
    db->publicConnect = true;  // the default ACL of a new database
  }
  if (db->publicConnect) {
    if (auto ok = run(*pg, "REVOKE CONNECT ON DATABASE " + quoteIdent(t->database) +
                               " FROM PUBLIC; GRANT CONNECT ON DATABASE " +
                               quoteIdent(t->database) + " TO " + quoteIdent(t->role));
        !ok) {
      return ctx.fail("restricting CONNECT on " + t->database + ": " + ok.error().message);
    }
    rep.actions.push_back("revoke CONNECT on " + t->database + " from PUBLIC (only " + t->role +
                          " may connect)");
  }

  int code = kExitOk;
  if (*cfg) {
    const config::Config& c = **cfg;
    if (!c.fromIni) {
      auto current = readTextFile(t->verifierFile);
      if (!current || *current != verifier + "\n") {
        if (auto ok = atomicWriteFile(t->verifierFile, verifier + "\n", 0600); !ok) {
          return ctx.fail(ok.error().message);
        }
        rep.actions.push_back("write " + t->role + "'s SCRAM verifier to " + t->verifierFile);
      }
    }
    auto target = entryTarget(ctx, c, *admin);
    if (!target) return ctx.fail(target.error().message, kExitUsage);
    TenantConfigEntry entry{
        t->database,    target->first,
        target->second, *poolSize > 0 ? std::optional<int>(*poolSize) : std::nullopt,
        t->role,        verifier,
        t->verifierFile};
    auto change = planAddTenant(*ctx.configPath(), c, entry);
    if (!change) return ctx.fail(change.error().message);
    auto reloaded = applyConfig(ctx, c, std::move(*change), false, rep);
    if (!reloaded) return ctx.fail(reloaded.error().message);
    if (!*reloaded) {
      ctx.error("the config was updated but usher was not reloaded (see above)");
      code = kExitFailure;
    }
  } else {
    rep.warnings.push_back("no --config given: usher's config was not touched");
    if (!ctx.json()) ctx.warn(rep.warnings.back());
  }
  return finish(ctx, *t, rep, code,
                "nothing to do: tenant " + t->name + " is already provisioned (role " + t->role +
                    ", database " + t->database + ")",
                newPassword ? &*newPassword : nullptr);
}

int cmdRotatePassword(Context& ctx) {
  auto t = tenantFrom(ctx);
  if (!t) return ctx.fail(t.error().message, kExitUsage);
  auto cfg = ctx.loadConfig();
  if (!cfg) return ctx.fail(cfg.error().message);
  auto supplied = suppliedPassword(ctx, t->role);
  if (!supplied) return ctx.fail(supplied.error().message);
  auto pg = ctx.connectPg();
  if (!pg) return ctx.fail(pg.error().message);
  auto role = roleState(*pg, t->role);
  if (!role) return ctx.fail("reading role " + t->role + ": " + role.error().message);
  if (!role->exists) {
    return ctx.fail("role " + t->role + " does not exist: run `usherctl provision " + t->name +
                    "` first");
  }
  if (auto ok = ensureDirectory(parentDir(t->secretFile), 0700); !ok) {
    return ctx.fail(ok.error().message);
  }

  Report rep;
  std::string password = *supplied ? **supplied : generatePassword();
  const std::string verifier = auth::formatVerifier(auth::makeVerifier(password));
  // New secret beside the old one first, then PostgreSQL, then the rename: whichever step
  // fails, the secret file and the role never disagree.
  const std::string staged = t->secretFile + ".new";
  ::unlink(staged.c_str());
  if (auto ok = atomicWriteFile(staged, password, 0600); !ok) {
    return ctx.fail(ok.error().message);
  }
  if (auto ok =
          run(*pg, "ALTER ROLE " + quoteIdent(t->role) + " PASSWORD " + quoteLiteralSql(verifier));
      !ok) {
    ::unlink(staged.c_str());
    return ctx.fail("ALTER ROLE " + t->role + ": " + ok.error().message);
  }
  rep.actions.push_back("set a new password for role " + t->role +
                        " (existing sessions keep running until they end)");
  if (::rename(staged.c_str(), t->secretFile.c_str()) != 0) {
    return ctx.fail("PostgreSQL has the new password but " + staged + " could not be renamed to " +
                    t->secretFile + ": " + errnoText(errno) + " (rename it by hand)");
  }
  if (auto ok = fsyncParentDir(t->secretFile); !ok) ctx.warn(ok.error().message);
  rep.actions.push_back("write the new password to " + t->secretFile + " (mode 0600)");
  std::optional<std::string> shown;
  if (ctx.args().has("show-password")) shown = password;
  auth::wipeMemory(password.data(), password.size());

  int code = kExitOk;
  if (*cfg) {
    const config::Config& c = **cfg;
    if (!c.fromIni) {
      if (auto ok = atomicWriteFile(t->verifierFile, verifier + "\n", 0600); !ok) {
        return ctx.fail(ok.error().message);
      }
      rep.actions.push_back("write " + t->role + "'s SCRAM verifier to " + t->verifierFile);
    }
    TenantConfigEntry entry{t->database, {}, 0, std::nullopt, t->role, verifier, t->verifierFile};
    auto change = planSetSecret(*ctx.configPath(), c, entry);
    if (!change) return ctx.fail(change.error().message);
    auto reloaded = applyConfig(ctx, c, std::move(*change), true, rep);
    if (!reloaded) return ctx.fail(reloaded.error().message);
    if (!*reloaded) {
      ctx.error(
          "the new password is set but usher was not reloaded (see above): new logins "
          "through usher fail until it is");
      code = kExitFailure;
    }
  } else {
    rep.warnings.push_back("no --config given: usher's config was not touched");
    if (!ctx.json()) ctx.warn(rep.warnings.back());
  }
  return finish(ctx, *t, rep, code, "", shown ? &*shown : nullptr);
}

int cmdDeprovision(Context& ctx) {
  auto t = tenantFrom(ctx);
  if (!t) return ctx.fail(t.error().message, kExitUsage);
  auto cfg = ctx.loadConfig();
  if (!cfg) return ctx.fail(cfg.error().message);
  auto maxAge = ctx.args().getInt("max-backup-age", 24, 1, 24 * 365);
  if (!maxAge) return ctx.fail(maxAge.error().message, kExitUsage);

  Report rep;
  if (!ctx.args().has("no-backup")) {
    const std::string dir = ctx.args().getOr("backup-dir", "/srv/backups");
    auto all = listBackups(dir);
    if (!all) return ctx.fail(all.error().message);
    auto fresh = freshestVerifiedBackup(*all, t->database, std::time(nullptr) - *maxAge * 3600);
    if (!fresh) {
      return ctx.fail("refusing to deprovision " + t->name + ": no verified backup of " +
                      t->database + " from the last " + std::to_string(*maxAge) + " h in " + dir +
                      " (run `usherctl backup " + t->database +
                      "` first, or pass --no-backup to drop it without one)");
    }
    if (auto ok = verifyChecksum(*fresh); !ok) {
      return ctx.fail("refusing to deprovision " + t->name + ": the newest backup " + fresh->path +
                      " does not verify: " + ok.error().message);
    }
    rep.actions.push_back("checked the backup " + fresh->path);
  }
  auto pg = ctx.connectPg();
  if (!pg) return ctx.fail(pg.error().message);
  auto db = databaseState(*pg, t->database);
  if (!db) return ctx.fail(db.error().message);
  if (db->exists && db->owner != t->role) {
    return ctx.fail("database " + t->database + " is owned by " + db->owner + ", not " + t->role +
                    ": refusing to drop it");
  }

  int code = kExitOk;
  if (*cfg) {
    auto change = planRemoveTenant(*ctx.configPath(), **cfg, t->database, t->role);
    if (!change) return ctx.fail(change.error().message);
    auto reloaded = applyConfig(ctx, **cfg, std::move(*change), false, rep);
    if (!reloaded) return ctx.fail(reloaded.error().message);
    if (!*reloaded) code = kExitFailure;
  }
  if (db->exists) {
    if (auto ok = run(*pg, "DROP DATABASE " + quoteIdent(t->database) + " WITH (FORCE)"); !ok) {
      return ctx.fail("DROP DATABASE " + t->database + ": " + ok.error().message);
    }
    rep.actions.push_back("drop database " + t->database);
  }
  auto role = roleState(*pg, t->role);
  if (!role) return ctx.fail(role.error().message);
  if (role->exists) {
    if (auto ok = run(*pg, "DROP ROLE " + quoteIdent(t->role)); !ok) {
      return ctx.fail("DROP ROLE " + t->role + ": " + ok.error().message);
    }
    rep.actions.push_back("drop role " + t->role);
  }
  for (const auto& f : {t->secretFile, t->verifierFile}) {
    if (fileExists(f)) {
      if (::unlink(f.c_str()) != 0) return ctx.fail("remove " + f + ": " + errnoText(errno));
      rep.actions.push_back("remove " + f);
    }
  }
  if (code != kExitOk) ctx.error("usher was not reloaded (see above)");
  return finish(ctx, *t, rep, code, "nothing to do: tenant " + t->name + " does not exist",
                nullptr);
}

int cmdReload(Context& ctx) {
  auto cfg = ctx.loadConfig();
  if (!cfg) return ctx.fail(cfg.error().message);
  ReloadOutcome r = ctx.reloadUsher(cfg->get());
  for (const auto& p : r.problems) {
    if (r.reloaded) ctx.warn(p);
  }
  if (ctx.json()) {
    JsonWriter w;
    w.beginObject().field("ok", r.reloaded).field("how", r.how);
    w.key("problems").beginArray();
    for (const auto& p : r.problems) w.value(p);
    w.endArray().endObject();
    ctx.emitJson(w.str());
  }
  if (!r.reloaded) {
    std::string all;
    for (const auto& p : r.problems) all += (all.empty() ? "" : "; ") + p;
    return ctx.fail("usher was not reloaded: " + all);
  }
  ctx.info("usher reloaded (" + r.how + ")");
  return kExitOk;
}

int cmdTenants(Context& ctx) {
  auto cfg = ctx.loadConfig();
  if (!cfg) return ctx.fail(cfg.error().message);
  auto pg = ctx.connectPg();
  if (!pg) return ctx.fail(pg.error().message);
  auto r = pg->query(
      "SELECT d.datname, r.rolname, pg_database_size(d.oid) FROM pg_database d "
      "JOIN pg_roles r ON r.oid = d.datdba WHERE NOT d.datistemplate ORDER BY d.datname");
  if (!r) return ctx.fail("listing databases: " + r.error().message);
  struct DbInfo {
    std::string owner;
    int64_t size = -1;
  };
  std::map<std::string, DbInfo> info;
  for (size_t i = 0; i < r->rows.size(); ++i) {
    info[r->value(i, "datname")] =
        DbInfo{r->value(i, "rolname"), std::atoll(r->value(i, "pg_database_size").c_str())};
  }
  std::vector<std::string> names;
  if (*cfg) {
    names = configTenantDatabases(**cfg);
  } else {
    for (const auto& [name, i] : info) {
      if (name != "postgres") names.push_back(name);
    }
  }
  std::optional<std::vector<PoolRow>> pools;
  std::string poolsProblem = "unknown (no --admin-port)";
  if (ctx.hasConsole()) {
    auto p = ctx.showPools();
    if (p) {
      pools = std::move(*p);
    } else {
      poolsProblem = p.error().message;
      ctx.warn(poolsProblem);
    }
  }

  JsonWriter w;
  w.beginObject().key("tenants").beginArray();
  std::string table;
  char line[512];
  std::snprintf(line, sizeof line, "%-20s %-20s %10s %-9s %-9s %-9s %s\n", "DATABASE", "OWNER",
                "SIZE", "CL_ACTIVE", "CL_WAIT", "SV_ACTIVE", "SECRET");
  table += line;
  for (const auto& name : names) {
    const config::DatabaseConfig* dbc = *cfg ? (*cfg)->findDatabase(name) : nullptr;
    const std::string real = dbc && !dbc->dbname.empty() ? dbc->dbname : name;
    auto it = info.find(real);
    const bool exists = it != info.end();
    const std::string owner = exists ? it->second.owner : "";
    const std::string secret = owner.empty() ? "" : joinPath(ctx.secretsDir(), owner + ".password");
    const std::optional<mode_t> mode = secret.empty() ? std::nullopt : fileMode(secret);
    const bool modeOk = mode.value_or(0) == 0600;
    std::string secretState = !mode ? "missing" : (*mode == 0600 ? "ok (0600)" : "");
    if (mode && *mode != 0600) {
      char m[16];
      std::snprintf(m, sizeof m, "%04o", unsigned(*mode));
      secretState = std::string("BAD MODE ") + m;
    }
    int64_t clActive = 0, clWaiting = 0, svActive = 0, svIdle = 0;
    bool hasPool = false;
    if (pools) {
      for (const auto& p : *pools) {
        if (p.database != name) continue;
        hasPool = true;
        clActive += p.clActive;
        clWaiting += p.clWaiting;
        svActive += p.svActive;
        svIdle += p.svIdle;
      }
    }
    w.beginObject().field("database", name).field("exists", exists).field("owner", owner);
    w.key("size_bytes");
    if (exists) {
      w.value(it->second.size);
    } else {
      w.null();
    }
    w.key("pool");
    if (pools) {
      w.beginObject()
          .field("present", hasPool)
          .field("cl_active", clActive)
          .field("cl_waiting", clWaiting)
          .field("sv_active", svActive)
          .field("sv_idle", svIdle)
          .endObject();
    } else {
      w.null();
    }
    w.field("secret_file", secret)
        .field("secret_exists", mode.has_value())
        .field("secret_mode_ok", modeOk)
        .endObject();
    auto num = [&](int64_t v) { return pools ? std::to_string(v) : std::string("?"); };
    std::snprintf(line, sizeof line, "%-20s %-20s %10s %-9s %-9s %-9s %s\n", name.c_str(),
                  exists ? owner.c_str() : "(no database)",
                  exists ? humanSize(it->second.size).c_str() : "-", num(clActive).c_str(),
                  num(clWaiting).c_str(), num(svActive).c_str(), secretState.c_str());
    table += line;
  }
  w.endArray();
  w.key("pools_error");
  if (pools) {
    w.null();
  } else {
    w.value(poolsProblem);
  }
  w.endObject();
  if (ctx.json()) {
    ctx.emitJson(w.str());
  } else {
    std::fputs(table.c_str(), stdout);
    if (!pools) std::printf("pools: %s\n", poolsProblem.c_str());
  }
  return kExitOk;
}

}  // namespace usher::ctl
