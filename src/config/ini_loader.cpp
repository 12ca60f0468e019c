// pgbouncer.ini loader: PgBouncer's sections, connection strings and %include, read onto Config.
#include <cctype>
#include <string>
#include <string_view>

#include "settings.h"
#include "usher/config/config.h"

namespace usher::config {

namespace {

using detail::ApplyContext;
using detail::inQuotes;
using detail::located;
using detail::trim;

// Deep enough for any sane layout, shallow enough to stop an include loop quickly.
constexpr int kMaxIncludeDepth = 8;

enum class Section { None, Databases, Users, Pgbouncer, Peers };

// Reads one file (and the files it %includes) into `config_`. The section carries across an
// include, as if the included text were pasted in place, which is how PgBouncer treats it.
class IniReader {
 public:
  explicit IniReader(Config& config) : config_(config) {}

  Result<void> read(std::string_view text, const std::string& file, int depth) {
    const ApplyContext ctx{detail::FileFormat::Ini, std::filesystem::path(file).parent_path()};
    size_t lineNo = 0;
    size_t pos = 0;
    while (pos <= text.size()) {
      size_t eol = text.find('\n', pos);
      if (eol == std::string_view::npos) eol = text.size();
      const std::string_view line = trim(text.substr(pos, eol - pos));
      pos = eol + 1;
      ++lineNo;
      if (auto ok = readLine(line, file, lineNo, depth, ctx); !ok) return ok;
    }
    return {};
  }

 private:
  Result<void> readLine(std::string_view line, const std::string& file, size_t lineNo, int depth,
                        const ApplyContext& ctx) {
    // Comments only at the start of a line: PgBouncer treats a later ';' or '#' as value text.
    if (line.empty() || line[0] == ';' || line[0] == '#') return {};

    if (line.starts_with("%include") &&
        (line.size() == 8 || std::isspace(static_cast<unsigned char>(line[8])))) {
      return include(trim(line.substr(8)), file, lineNo, depth, ctx);
    }

    if (line.front() == '[') {
      if (line.back() != ']') {
        return failPlain(located(file, lineNo, "syntax error: section header without ']'"));
      }
      const std::string name = detail::lowercase(trim(line.substr(1, line.size() - 2)));
      if (name == "databases") {
        section_ = Section::Databases;
      } else if (name == "users") {
        section_ = Section::Users;
      } else if (name == "pgbouncer") {
        section_ = Section::Pgbouncer;
      } else if (name == "peers") {
        section_ = Section::Peers;
      } else {
        return failPlain(located(file, lineNo,
                                 "[" + name +
                                     "]: unknown section (expected [databases], [users], "
                                     "[pgbouncer] or [peers])"));
      }
      return {};
    }

    const size_t eq = line.find('=');
    if (eq == std::string_view::npos || trim(line.substr(0, eq)).empty()) {
      // The line is not echoed: in [databases] it may be part of a password.
      return failPlain(located(file, lineNo, "syntax error: expected \"key = value\""));
    }
    const std::string_view key = trim(line.substr(0, eq));
    const std::string_view value = trim(line.substr(eq + 1));

    Result<void> ok;
    switch (section_) {
      case Section::None:
        return failPlain(
            located(file, lineNo, std::string(key) + ": setting outside of any section"));
      case Section::Pgbouncer:
        ok = detail::applyGeneralKey(config_, "pgbouncer", detail::lowercase(key), value, ctx);
        break;
      case Section::Databases:
        ok = readDatabase(key, value, ctx);
        break;
      case Section::Users:
        ok = readUser(key, value, ctx);
        break;
      case Section::Peers:
        // Peering forwards cancel requests between PgBouncer processes; usher's workers share
        // one process, so there is nothing to peer with.
        detail::noteUnsupported(config_, "peers");
        break;
    }
    if (!ok) return failPlain(located(file, lineNo, ok.error().message));
    return {};
  }

  Result<void> include(std::string_view target, const std::string& file, size_t lineNo, int depth,
                       const ApplyContext& ctx) {
    if (target.empty()) {
      return failPlain(located(file, lineNo, "%include: missing file name"));
    }
    if (depth >= kMaxIncludeDepth) {
      return failPlain(located(file, lineNo,
                               "%include: nested more than " + std::to_string(kMaxIncludeDepth) +
                                   " deep (does a file include itself?)"));
    }
    const std::string path = detail::resolvePath(ctx.baseDir, target);
    auto text = detail::readFile(path);
    if (!text) return failPlain(located(file, lineNo, "%include: " + text.error().message));
    return read(*text, path, depth + 1);
  }

  Result<void> readDatabase(std::string_view name, std::string_view connstring,
                            const ApplyContext& ctx) {
    DatabaseConfig db = detail::newDatabase(name);
    auto pairs = detail::parseConnstring(connstring);
    if (!pairs) return failPlain("databases." + db.name + ": " + pairs.error().message);
    Result<void> ok;
    for (const auto& [key, value] : *pairs) {
      ok = detail::applyDatabaseKey(config_, db, key, value, ctx);
      if (!ok) break;
    }
    detail::wipePairs(*pairs);
    if (!ok) return ok;
    detail::upsertDatabase(config_, std::move(db));
    return {};
  }

  Result<void> readUser(std::string_view name, std::string_view settings, const ApplyContext& ctx) {
    UserConfig user = detail::newUser(name);
    auto pairs = detail::parseConnstring(settings);
    if (!pairs) return failPlain("users." + user.name + ": " + pairs.error().message);
    for (const auto& [key, value] : *pairs) {
      if (auto ok = detail::applyUserKey(config_, user, key, value, ctx); !ok) return ok;
    }
    detail::upsertUser(config_, std::move(user));
    return {};
  }

  Config& config_;
  Section section_ = Section::None;
};

}  // namespace

Result<std::shared_ptr<Config>> parseIni(std::string_view text, const std::string& path) {
  auto config = std::make_shared<Config>();
  config->path = path;
  config->fromIni = true;
  // Config's member defaults are usher.toml's; where PgBouncer's differ, an ini file gets
  // PgBouncer's, so an existing pgbouncer.ini means what it meant before. (server_connect_timeout
  // and server_login_retry keep usher's shorter defaults in both formats on purpose.)
  config->listenAddrs.clear();  // listen_addr unset: Unix socket only
  config->unixSocketDir = "/tmp";
  config->authType = AuthType::Md5;
  config->trackExtraParameters = {"IntervalStyle"};

  IniReader reader(*config);
  if (auto ok = reader.read(text, path, 0); !ok) return std::unexpected(ok.error());
  return config;
}

}  // namespace usher::config
