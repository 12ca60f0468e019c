// Logging: one spdlog logger per subsystem, to stderr (the container way) and optionally a file,
// as text or JSON lines. Never pass a password, SCRAM proof or key to these loggers.
#pragma once

#include <spdlog/spdlog.h>

#include <memory>
#include <string>

namespace usher::log {

struct Options {
  std::string file;    // empty = stderr only
  bool json = false;   // one JSON object per line
  int verbose = 0;     // 0 info, 1 debug, 2+ trace
  bool quiet = false;  // only warnings and errors to stderr
};

// Creates (or re-creates, on reload) the subsystem loggers. Safe to call before any logging.
void setup(const Options& options);

spdlog::logger& main();
spdlog::logger& net();
spdlog::logger& proto();
spdlog::logger& auth();
spdlog::logger& pool();
spdlog::logger& admin();
spdlog::logger& config();

}  // namespace usher::log
