// usher: arguments, config, logging, privileges, then the workers running until shutdown.
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

#include "usher/base/log.h"
#include "usher/config/config.h"
#include "usher/net/engine.h"
#include "usher_version.h"

namespace {

constexpr const char* kUsage =
    "usher " USHER_VERSION
    " - PostgreSQL connection pooler\n"
    "\n"
    "Usage: usher [OPTION]... CONFIG\n"
    "  CONFIG is usher.toml, or a pgbouncer.ini (with its userlist.txt) used as it is.\n"
    "\n"
    "  -d, --daemon     run in the background (needs pidfile in the config)\n"
    "  -q, --quiet      log only warnings and errors to stderr\n"
    "  -v, --verbose    more logging (repeat for trace)\n"
    "  -u, --user USER  switch to USER after opening the listeners\n"
    "      --check      validate CONFIG, print the result and exit (0 valid, 1 invalid)\n"
    "  -V, --version    print the version and exit\n"
    "  -h, --help       print this help and exit\n";

struct Options {
  std::string configPath;
  bool daemon = false;
  bool quiet = false;
  int verbose = 0;
  std::string user;
  bool check = false;
};

int usageError(const std::string& message) {
  std::fprintf(stderr, "usher: %s\nTry 'usher --help'.\n", message.c_str());
  return 2;
}

// Returns -1 to continue, otherwise the exit code.
int parseArgs(int argc, char** argv, Options& o) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (a == "-V" || a == "--version") {
      std::puts("usher " USHER_VERSION);
      return 0;
    } else if (a == "-d" || a == "--daemon") {
      o.daemon = true;
    } else if (a == "-q" || a == "--quiet") {
      o.quiet = true;
    } else if (a == "--check") {
      o.check = true;
    } else if (a == "-u" || a == "--user") {
      if (++i >= argc) return usageError(a + " needs a user name");
      o.user = argv[i];
    } else if (a.starts_with("--user=")) {
      o.user = a.substr(7);
    } else if (a.size() > 1 && a[0] == '-' && a[1] != '-' &&
               a.find_first_not_of('v', 1) == std::string::npos) {
      o.verbose += int(a.size() - 1);  // -v, -vv
    } else if (a == "--verbose") {
      ++o.verbose;
    } else if (a == "-R" || a == "--reboot") {
      return usageError("online restart (-R) is not supported; use SIGTERM and start again");
    } else if (!a.empty() && a[0] == '-') {
      return usageError("unknown option " + a);
    } else if (o.configPath.empty()) {
      o.configPath = a;
    } else {
      return usageError("more than one config file given");
    }
  }
  if (o.configPath.empty()) return usageError("no config file given");
  return -1;
}

bool writePidFile(const std::string& path) {
  if (path.empty()) return true;
  std::ofstream f(path, std::ios::trunc);
  if (!f) return false;
  f << getpid() << "\n";
  return bool(f);
}

bool dropPrivileges(const std::string& user) {
  if (user.empty()) return true;
  // getpwnam reads files: fine here, before the loop runs.
  passwd* pw = getpwnam(user.c_str());
  if (!pw) {
    usher::log::main().critical("user {} not found", user);
    return false;
  }
  if (getuid() == pw->pw_uid) return true;
  if (initgroups(pw->pw_name, pw->pw_gid) != 0 || setgid(pw->pw_gid) != 0 ||
      setuid(pw->pw_uid) != 0) {
    usher::log::main().critical("cannot switch to user {}: {}", user, std::strerror(errno));
    return false;
  }
  return true;
}

bool daemonize() {
  pid_t pid = fork();
  if (pid < 0) return false;
  if (pid > 0) _exit(0);
  if (setsid() < 0) return false;
  pid = fork();  // not a session leader: can never reacquire a terminal
  if (pid < 0) return false;
  if (pid > 0) _exit(0);
  int null = open("/dev/null", O_RDWR);
  if (null >= 0) {
    dup2(null, STDIN_FILENO);
    dup2(null, STDOUT_FILENO);
    dup2(null, STDERR_FILENO);
    if (null > 2) close(null);
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  Options opts;
  if (int rc = parseArgs(argc, argv, opts); rc >= 0) return rc;
  if (sodium_init() < 0) {
    std::fputs("usher: libsodium failed to initialize\n", stderr);
    return 1;
  }
  std::signal(SIGPIPE, SIG_IGN);
  usher::net::catchEarlySignals();

  auto loaded = usher::config::loadConfig(opts.configPath);
  if (!loaded) {
    std::fprintf(stderr, "usher: %s\n", loaded.error().message.c_str());
    return 1;
  }
  std::shared_ptr<usher::config::Config> config = *loaded;
  if (opts.check) {
    for (const auto& key : config->unsupportedKeys)
      std::fprintf(stderr, "usher: warning: setting %s is not supported and is ignored\n",
                   key.c_str());
    std::printf("usher: configuration %s is valid\n", opts.configPath.c_str());
    return 0;
  }
  if (opts.quiet) config->quiet = true;
  config->verbose += opts.verbose;
  if (!opts.user.empty()) config->runAsUser = opts.user;

  usher::log::setup({opts.daemon ? config->logFile : config->logFile,
                     config->logFormat == usher::config::LogFormat::Json, config->verbose,
                     config->quiet});
  for (const auto& key : config->unsupportedKeys)
    usher::log::config().warn("setting {} is not supported by usher and is ignored", key);
  if (opts.daemon && config->pidFile.empty()) {
    usher::log::main().critical("--daemon needs pidfile to be set in {}", opts.configPath);
    return 1;
  }

  usher::net::Engine engine(config);
  if (auto listening = engine.listen(); !listening) {
    usher::log::main().critical("{}", listening.error().message);
    return 1;
  }
  if (!dropPrivileges(config->runAsUser)) return 1;
  if (opts.daemon && !daemonize()) {
    usher::log::main().critical("cannot daemonize: {}", std::strerror(errno));
    return 1;
  }
  if (!writePidFile(config->pidFile)) {
    usher::log::main().critical("cannot write pidfile {}: {}", config->pidFile,
                                std::strerror(errno));
    return 1;
  }
  usher::log::main().info("usher {} started (pid {}, config {}, {} worker{})", USHER_VERSION,
                          getpid(), config->path, engine.size(), engine.size() == 1 ? "" : "s");
  engine.run();
  if (!config->pidFile.empty()) unlink(config->pidFile.c_str());
  usher::log::main().info("usher stopped");
  return 0;
}
