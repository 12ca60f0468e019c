// usherctl: the operators' companion to usher — tenants, verified backups, benchmark, readiness
// checks and audit. This file holds the command table, --help and dispatch.
#include <signal.h>
#include <sodium.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "usher/ctl/context.h"
#include "usher_version.h"

namespace usher::ctl {
namespace {

constexpr OptionSpec kHelp[] = {{"help", "", "show this help and exit"}};

constexpr OptionSpec kTenantNames[] = {
    {"role", "ROLE", "the tenant's role (default NAME_user)"},
    {"database", "DB", "the tenant's database (default NAME_db)"},
    {"secret-file", "FILE", "the password file the app mounts (default SECRETS_DIR/ROLE.password)"},
};
constexpr OptionSpec kProvision[] = {
    {"tenant-password-file", "FILE",
     "use this password instead of a random one (weak ones are "
     "refused)"},
    {"db-host", "HOST", "host usher uses for the new database (default: as the config's others)"},
    {"db-port", "PORT", "port usher uses for the new database"},
    {"pool-size", "N", "pool_size for the new database entry"},
    {"show-password", "", "print the new password (otherwise it is only in the secret file)"},
};
constexpr OptionSpec kRotate[] = {
    {"tenant-password-file", "FILE", "use this password instead of a random one"},
    {"show-password", "", "print the new password"},
};
constexpr OptionSpec kDeprovision[] = {
    {"backup-dir", "DIR", "where to look for the tenant's backup (default /srv/backups)"},
    {"max-backup-age", "HOURS", "a backup counts as fresh for this long (default 24)"},
    {"no-backup", "", "drop the tenant without a fresh verified backup"},
};
constexpr OptionSpec kBackup[] = {
    {"backup-dir", "DIR", "backup directory (default /srv/backups)"},
    {"encrypt-key-file", "FILE", "encrypt with libsodium secretstream using this 32-byte key"},
    {"keep-daily", "N", "keep the newest backup of each of the last N days with backups"},
    {"keep-weekly", "N", "keep the newest backup of each of the last N ISO weeks"},
    {"compose-service", "SERVICE", "run pg_dump inside this docker compose service (exec -T)"},
    {"compose-file", "FILE", "docker compose file for --compose-service"},
    {"docker", "PATH", "docker binary (default docker)"},
    {"pg-dump", "PATH", "pg_dump binary (default pg_dump)"},
    {"pg-restore", "PATH", "pg_restore binary used to verify (default pg_restore)"},
};
constexpr OptionSpec kRestore[] = {
    {"to", "DB", "database to restore into (created if missing)"},
    {"backup-dir", "DIR", "backup directory (default /srv/backups)"},
    {"encrypt-key-file", "FILE", "key of an encrypted backup"},
    {"owner", "ROLE", "owner of the database when it has to be created (default: as dumped)"},
    {"pg-restore", "PATH", "pg_restore binary (default pg_restore)"},
};
constexpr OptionSpec kBackups[] = {
    {"backup-dir", "DIR", "backup directory (default /srv/backups)"},
    {"verify", "", "recompute every checksum (exit 3 if one does not match)"},
};
constexpr OptionSpec kBench[] = {
    {"clients", "N", "pgbench clients (default 8)"},
    {"time", "SECONDS", "pgbench duration (default 60)"},
    {"scale", "N", "pgbench -i scale factor (default 1)"},
    {"scratch-db", "DB", "scratch database (default pgbench; created and dropped if missing)"},
    {"keep-scratch-db", "", "do not drop a scratch database this run created"},
    {"pooler-host", "HOST", "usher's host for the pooled run (default 127.0.0.1)"},
    {"pooler-port", "PORT", "usher's port (default: listen_port of --config, else 6432)"},
    {"compare-direct", "", "also run straight against PostgreSQL"},
    {"direct-only", "", "only run straight against PostgreSQL"},
    {"baseline-min", "TPS", "lower end of the healthy range (default 500)"},
    {"baseline-max", "TPS", "upper end of the healthy range (default 1500)"},
    {"pgbench", "PATH", "pgbench binary (default pgbench)"},
};
constexpr OptionSpec kCheck[] = {
    {"only", "LIST", "comma list of checks: pools,throughput,extensions (default all)"},
    {"expect-pools", "LIST", "databases that must have a pool (default: every tenant in --config)"},
    {"max-sv-active", "N", "bound for sv_active per pool (default: the pool's size)"},
    {"vector-db", "DB", "database for the pgvector test (default librarian_db)"},
};
constexpr OptionSpec kAudit[] = {
    {"show-password", "", "print the weak passwords found"},
    {"skip-roles", "", "do not connect to PostgreSQL (files and config only)"},
};

int runRestoreCmd(Context& c) {
  return cmdRestore(c);
}

const std::vector<CommandSpec>& table() {
  static const std::vector<CommandSpec> t = {
      {"provision",
       "provision NAME [OPTION]...",
       "create a tenant: role NAME_user, database NAME_db, secret file, usher config entry",
       "Idempotent: a second run changes nothing and says so. The password is random (40\n"
       "URL-safe characters from libsodium); PostgreSQL only ever receives its SCRAM verifier.\n"
       "CONNECT on the database is revoked from PUBLIC. With --config the tenant is added to\n"
       "usher.toml ([databases.DB] + [users.ROLE] password_file = SECRETS_DIR/ROLE.scram) or\n"
       "pgbouncer.ini ([databases] line + userlist entry), atomically, and usher is reloaded.\n",
       {kTenantNames, kProvision, kConnectionOptions, kConsoleOptions, kConfigOptions,
        kOutputOptions, kHelp},
       cmdProvision},
      {"rotate-password",
       "rotate-password NAME [OPTION]...",
       "give a tenant a new password (PostgreSQL, secret file, usher) and reload usher",
       "Existing sessions keep working until they end; new logins need the new password.\n",
       {kTenantNames, kRotate, kConnectionOptions, kConsoleOptions, kConfigOptions, kOutputOptions,
        kHelp},
       cmdRotatePassword},
      {"deprovision",
       "deprovision NAME [OPTION]...",
       "remove a tenant: config entry, reload, DROP DATABASE, DROP ROLE, secret files",
       "Refuses unless a verified backup of the database younger than --max-backup-age exists\n"
       "in --backup-dir (its checksum is re-checked), or --no-backup is given.\n",
       {kTenantNames, kDeprovision, kConnectionOptions, kConsoleOptions, kConfigOptions,
        kOutputOptions, kHelp},
       cmdDeprovision},
      {"tenants",
       "tenants [OPTION]...",
       "list tenants: database size, owner, pool state, secret file and its mode",
       "",
       {kConnectionOptions, kConsoleOptions, kConfigOptions, kOutputOptions, kHelp},
       cmdTenants},
      {"reload",
       "reload [OPTION]...",
       "ask the running usher to re-read its config (console RELOAD, else SIGHUP)",
       "",
       {kConnectionOptions, kConsoleOptions, kConfigOptions, kOutputOptions, kHelp},
       cmdReload},
      {"backup",
       "backup [DATABASE|TENANT]... [OPTION]...",
       "pg_dump -Fc each database to a verified, checksummed backup (default: every tenant)",
       "Streams to NAME.partial, fsyncs, reads it back with pg_restore (--list and a full pass),\n"
       "records size and BLAKE2b in NAME.json, then renames. A failed or truncated dump never\n"
       "replaces anything and exits 1.\n",
       {kBackup, kConnectionOptions, kConfigOptions, kOutputOptions, kHelp},
       cmdBackup},
      {"restore",
       "restore BACKUP --to DB [OPTION]...",
       "restore a verified backup (checksum and decryption checked before anything is touched)",
       "BACKUP is a file, a file name in --backup-dir, or a database name (its newest verified\n"
       "backup). Runs pg_restore --clean --if-exists --single-transaction.\n",
       {kRestore, kConnectionOptions, kOutputOptions, kHelp},
       runRestoreCmd},
      {"backups",
       "backups [DATABASE]... [OPTION]...",
       "list backups with database, time, size and verified/unverified",
       "",
       {kBackups, kOutputOptions, kHelp},
       cmdBackups},
      {"bench",
       "bench [OPTION]...",
       "the platform baseline: pgbench -i, then pgbench -c 8 -T 60 through usher",
       "Verdict against the baseline range (default 500-1500 TPS): below fails (exit 3) and\n"
       "hints at disk I/O, inside is healthy, above is reported as above.\n",
       {kBench, kConnectionOptions, kConfigOptions, kOutputOptions, kHelp},
       cmdBench},
      {"check",
       "check [OPTION]...",
       "the three readiness checks: pools (SHOW POOLS), throughput (bench), extensions "
       "(pgvector)",
       "Each check prints PASS or FAIL with its evidence; exit 3 when one fails.\n",
       {kCheck, kBench, kConnectionOptions, kConsoleOptions, kConfigOptions, kOutputOptions, kHelp},
       cmdCheck},
      {"audit",
       "audit [OPTION]...",
       "find weak role passwords, exposed secret files, trust on open listeners, "
       "password-less admins",
       "Role passwords are tested against pg_authid's verifiers (same salt and iterations) for\n"
       "a built-in list, the role name and port numbers such as 6432. Exit 3 on findings.\n",
       {kAudit, kConnectionOptions, kConfigOptions, kOutputOptions, kHelp},
       cmdAudit},
  };
  return t;
}

void printMainUsage(FILE* out) {
  std::fprintf(out, "usherctl " USHER_VERSION
                    " - tenants, verified backups, benchmark and readiness checks for usher\n\n"
                    "Usage: usherctl COMMAND [ARGUMENT]... [OPTION]...\n\nCommands:\n");
  for (const auto& c : table()) {
    std::fprintf(out, "  %-16s %s\n", std::string(c.name).c_str(), std::string(c.summary).c_str());
  }
  std::fprintf(out,
               "\n'usherctl COMMAND --help' describes a command's options.\n"
               "Passwords come from PGPASSWORD or --password-file, never the command line.\n"
               "Exit codes: 0 ok, 1 failed, 2 usage error, 3 problems found (check, audit, "
               "bench).\n");
}

void printCommandUsage(const CommandSpec& c) {
  std::printf("Usage: usherctl %s\n\n%s.\n\n%s", std::string(c.synopsis).c_str(),
              std::string(c.summary).c_str(), std::string(c.details).c_str());
  if (!c.details.empty()) std::printf("\n");
  std::printf("Options:\n");
  for (const auto& group : c.options) std::fputs(describeOptions(group).c_str(), stdout);
}

}  // namespace

std::span<const CommandSpec> commands() {
  return table();
}

}  // namespace usher::ctl

int main(int argc, char** argv) {
  using namespace usher::ctl;
  if (sodium_init() < 0) {
    std::fprintf(stderr, "usherctl: libsodium failed to initialise\n");
    return kExitFailure;
  }
  // Writes to a child that exited (pg_restore reading stdin) must fail with EPIPE, not kill us.
  ::signal(SIGPIPE, SIG_IGN);
  if (argc < 2) {
    printMainUsage(stderr);
    return kExitUsage;
  }
  std::string name = argv[1];
  if (name == "-h" || name == "--help") {
    printMainUsage(stdout);
    return kExitOk;
  }
  if (name == "-V" || name == "--version") {
    std::puts("usherctl " USHER_VERSION);
    return kExitOk;
  }
  bool help = false;
  if (name == "help") {
    if (argc < 3) {
      printMainUsage(stdout);
      return kExitOk;
    }
    name = argv[2];
    help = true;
  }
  for (const auto& c : commands()) {
    if (c.name != name) continue;
    if (help) {
      printCommandUsage(c);
      return kExitOk;
    }
    Args args;
    if (auto ok = args.parse(argc, argv, 2, c.options); !ok) {
      std::fprintf(stderr, "usherctl %s: %s\nTry 'usherctl %s --help'.\n", name.c_str(),
                   ok.error().message.c_str(), name.c_str());
      return kExitUsage;
    }
    if (args.has("help")) {
      printCommandUsage(c);
      return kExitOk;
    }
    Context ctx(name, std::move(args));
    return c.run(ctx);
  }
  std::fprintf(stderr, "usherctl: unknown command \"%s\"\n\n", name.c_str());
  printMainUsage(stderr);
  return kExitUsage;
}
