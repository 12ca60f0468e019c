// Subsystem loggers: created once, re-created on reload when the log options change. Workers log
// from their own threads, so a logger set is never freed: a reload that changes the options
// publishes a new set and keeps the old one for whoever still holds a reference to it.
#include "usher/base/log.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>

#include <array>
#include <atomic>
#include <mutex>
#include <optional>
#include <vector>

namespace usher::log {
namespace {

constexpr std::array<const char*, 7> kNames = {"main", "net",   "proto", "auth",
                                               "pool", "admin", "config"};
std::array<std::atomic<spdlog::logger*>, kNames.size()> gLoggers{};
std::once_flag gDefaultOnce;
std::mutex gSetupMutex;
std::vector<std::shared_ptr<spdlog::logger>> gAllLoggers;  // every set ever published
std::optional<Options> gCurrent;

// A JSON line per record. The message is escaped by a custom flag so quotes and control
// characters in it cannot break the line.
class JsonEscapedMessage : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    for (char c : std::string_view(msg.payload.data(), msg.payload.size())) {
      switch (c) {
        case '"':
          dest.append(std::string_view("\\\""));
          break;
        case '\\':
          dest.append(std::string_view("\\\\"));
          break;
        case '\n':
          dest.append(std::string_view("\\n"));
          break;
        case '\r':
          dest.append(std::string_view("\\r"));
          break;
        case '\t':
          dest.append(std::string_view("\\t"));
          break;
        default:
          if (static_cast<unsigned char>(c) < 0x20) {
            char tmp[8];
            int n = snprintf(tmp, sizeof tmp, "\\u%04x", c);
            dest.append(tmp, tmp + n);
          } else {
            dest.push_back(c);
          }
      }
    }
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<JsonEscapedMessage>();
  }
};

std::unique_ptr<spdlog::formatter> makeFormatter(bool json) {
  if (json) {
    auto f = std::make_unique<spdlog::pattern_formatter>(spdlog::pattern_time_type::utc);
    f->add_flag<JsonEscapedMessage>('*').set_pattern(
        R"({"time":"%Y-%m-%dT%H:%M:%S.%fZ","level":"%l","logger":"%n","pid":%P,"msg":"%*"})");
    return f;
  }
  auto f = std::make_unique<spdlog::pattern_formatter>();
  { f->set_pattern("%Y-%m-%d %H:%M:%S.%e %P %^%-5l%$ [%n] %v"); }
  return f;
}

void ensureDefault() {
  std::call_once(gDefaultOnce, [] {
    if (!gLoggers[0]) setup(Options{});
  });
}

spdlog::logger& get(size_t i) {
  spdlog::logger* l = gLoggers[i].load(std::memory_order_acquire);
  if (!l) {
    ensureDefault();
    l = gLoggers[i].load(std::memory_order_acquire);
  }
  return *l;
}

}  // namespace

void setup(const Options& options) {
  std::lock_guard lock(gSetupMutex);
  if (gCurrent && gCurrent->file == options.file && gCurrent->json == options.json &&
      gCurrent->verbose == options.verbose && gCurrent->quiet == options.quiet)
    return;
  gCurrent = options;
  std::vector<spdlog::sink_ptr> sinks;
  auto err = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  err->set_formatter(makeFormatter(options.json));
  if (options.quiet) err->set_level(spdlog::level::warn);
  sinks.push_back(err);
  if (!options.file.empty()) {
    try {
      auto file = std::make_shared<spdlog::sinks::basic_file_sink_mt>(options.file);
      file->set_formatter(makeFormatter(options.json));
      sinks.push_back(file);
    } catch (const spdlog::spdlog_ex& e) {
      // Keep logging to stderr; the caller learns of it from the first line.
      err->log(spdlog::details::log_msg("main", spdlog::level::err,
                                        std::string("cannot open log file: ") + e.what()));
    }
  }
  auto level = options.verbose >= 2   ? spdlog::level::trace
               : options.verbose == 1 ? spdlog::level::debug
                                      : spdlog::level::info;
  for (size_t i = 0; i < kNames.size(); ++i) {
    auto logger = std::make_shared<spdlog::logger>(kNames[i], sinks.begin(), sinks.end());
    logger->set_level(level);
    logger->flush_on(spdlog::level::info);
    gAllLoggers.push_back(logger);
    gLoggers[i].store(logger.get(), std::memory_order_release);
  }
}

spdlog::logger& main() {
  return get(0);
}
spdlog::logger& net() {
  return get(1);
}
spdlog::logger& proto() {
  return get(2);
}
spdlog::logger& auth() {
  return get(3);
}
spdlog::logger& pool() {
  return get(4);
}
spdlog::logger& admin() {
  return get(5);
}
spdlog::logger& config() {
  return get(6);
}

}  // namespace usher::log
