// What every usherctl subcommand shares: its parsed options, the connection settings (with
// libpq's PG* defaults), usher's config, the admin console, reloading usher and reporting.
#pragma once

#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "usher/base/result.h"
#include "usher/config/config.h"
#include "usher/ctl/args.h"
#include "usher/ctl/pg_client.h"

namespace usher::ctl {

// Exit codes (docs/usherctl.md).
constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;   // the operation failed (message on stderr)
constexpr int kExitUsage = 2;     // bad command line
constexpr int kExitProblems = 3;  // ran fine, and found problems (check FAIL, audit findings,
                                  // bench below baseline)

// Option groups shared by subcommands.
extern const std::span<const OptionSpec> kConnectionOptions;  // --host --port --user ...
extern const std::span<const OptionSpec> kConsoleOptions;     // --admin-host --admin-port ...
extern const std::span<const OptionSpec> kConfigOptions;      // --config --secrets-dir
extern const std::span<const OptionSpec> kOutputOptions;      // --json

// One row of the admin console's SHOW POOLS.
struct PoolRow {
  std::string database;
  std::string user;
  int64_t clActive = 0;
  int64_t clWaiting = 0;
  int64_t svActive = 0;
  int64_t svIdle = 0;
  int64_t svUsed = 0;
  int64_t maxwait = 0;
  std::string poolMode;
};

struct ReloadOutcome {
  bool reloaded = false;
  std::string how;                    // "admin console RELOAD" / "SIGHUP to pid N"
  std::vector<std::string> problems;  // why a way failed (console absent, no pid, ...)
};

class Context {
 public:
  Context(std::string command, Args args) : command_(std::move(command)), args_(std::move(args)) {}

  const std::string& command() const { return command_; }
  const Args& args() const { return args_; }
  bool json() const { return args_.has("json"); }

  // --host/--port/--user/--dbname/--password-file with PGHOST/PGPORT/PGUSER/PGDATABASE/
  // PGPASSWORD/PGCONNECT_TIMEOUT defaults. `database` overrides the database.
  Result<ConnParams> pgParams(std::string_view database = {}) const;
  Result<PgClient> connectPg(std::string_view database = {}) const;

  // The admin console (database "pgbouncer"), when --admin-port is given.
  bool hasConsole() const { return args_.has("admin-port"); }
  Result<ConnParams> consoleParams() const;
  Result<std::vector<PoolRow>> showPools() const;
  // Asks the running usher to re-read its config: console RELOAD (--admin-port), else / then
  // SIGHUP (--usher-pid, or the config's pidfile).
  ReloadOutcome reloadUsher(const config::Config* cfg) const;

  // --config, loaded with usher's loader (nullptr when --config is not given).
  Result<std::shared_ptr<config::Config>> loadConfig() const;
  std::optional<std::string> configPath() const { return args_.get("config"); }
  std::string secretsDir() const;

  // "usherctl <command>: error: ..." on stderr; with --json, also {"ok": false, "error": ...}
  // on stdout unless the command already printed its JSON document. Returns `code`.
  int fail(const std::string& message, int code = kExitFailure) const;
  void error(const std::string& message) const;  // stderr only
  // Prints the command's one JSON document.
  void emitJson(const std::string& document) const;
  void warn(const std::string& message) const;
  void info(const std::string& message) const;  // stdout, suppressed with --json

 private:
  std::string command_;
  Args args_;
  mutable bool jsonEmitted_ = false;
};

// The tenant names of a config: its [databases] entries except "*" (and the console).
std::vector<std::string> configTenantDatabases(const config::Config& cfg);

// Subcommands (cmd_*.cpp). Each returns the process exit code.
int cmdProvision(Context& ctx);
int cmdRotatePassword(Context& ctx);
int cmdDeprovision(Context& ctx);
int cmdTenants(Context& ctx);
int cmdReload(Context& ctx);
int cmdBackup(Context& ctx);
int cmdRestore(Context& ctx);
int cmdBackups(Context& ctx);
int cmdBench(Context& ctx);
int cmdCheck(Context& ctx);
int cmdAudit(Context& ctx);

// Each subcommand's options, summary and usage (main.cpp prints --help from these).
struct CommandSpec {
  std::string_view name;
  std::string_view synopsis;  // "provision NAME [OPTION]..."
  std::string_view summary;
  std::string_view details;  // extra paragraphs for --help
  std::vector<std::span<const OptionSpec>> options;
  int (*run)(Context&);
};
std::span<const CommandSpec> commands();

}  // namespace usher::ctl
