// usher.toml loader: the native format, PgBouncer's key names under [usher], [databases.<name>]
// and [users.<name>], type-checked and read onto Config.
#include <toml++/toml.h>

#include <algorithm>
#include <charconv>
#include <string>
#include <string_view>
#include <vector>

#include "settings.h"
#include "usher/config/config.h"

namespace usher::config {

namespace {

using detail::ApplyContext;
using detail::inQuotes;
using detail::located;
using detail::ValueKind;

// The tables usher.toml may have at the top level.
constexpr std::string_view kSections[] = {"usher", "databases", "users"};

// A key/value of a TOML table with the line it was written on. toml::table is ordered by key;
// walking entries by line keeps [databases] in file order and reports the first error first.
struct Entry {
  std::string_view key;
  const toml::node* node;
  size_t line;
};

std::vector<Entry> entriesByLine(const toml::table& table) {
  std::vector<Entry> entries;
  for (const auto& [key, node] : table) {
    size_t line = key.source().begin.line;
    if (line == 0) line = node.source().begin.line;
    entries.push_back({key.str(), &node, line});
  }
  std::stable_sort(entries.begin(), entries.end(),
                   [](const Entry& a, const Entry& b) { return a.line < b.line; });
  return entries;
}

std::string_view expectedFor(ValueKind kind) {
  switch (kind) {
    case ValueKind::Integer:
      return "an integer";
    case ValueKind::Octal:
      return "a file mode (0o777 or \"0777\")";
    case ValueKind::Boolean:
      return "a boolean (true or false)";
    case ValueKind::Duration:
      return "a duration (seconds as a number, or a string such as \"250ms\", \"5s\", \"2m\")";
    case ValueKind::List:
      return "a string or an array of strings";
    case ValueKind::Text:
    case ValueKind::Choice:
    case ValueKind::Secret:
      return "a string";
  }
  return "a value";
}

// What the file had instead, for "expected X, got Y". A mistyped secret (password = 12345) is
// still a secret: only its type is named.
std::string describe(const toml::node& node, ValueKind kind) {
  const bool showValue = kind != ValueKind::Secret;
  switch (node.type()) {
    case toml::node_type::string:
      return showValue ? inQuotes(**node.as_string()) : "a string";
    case toml::node_type::integer:
      return showValue ? "the integer " + std::to_string(**node.as_integer()) : "an integer";
    case toml::node_type::floating_point:
      return "a float";
    case toml::node_type::boolean:
      return showValue ? (**node.as_boolean() ? "true" : "false") : "a boolean";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::table:
      return "a table";
    default:
      return "a date/time";
  }
}

// Renders a TOML value as the text the ini loader would have seen, after checking its type, so
// one parser per kind serves both formats. The error is the bare problem.
Result<std::string> render(const toml::node& node, ValueKind kind) {
  auto wrongType = [&] {
    return failPlain("expected " + std::string(expectedFor(kind)) + ", got " +
                     describe(node, kind));
  };
  if (const auto* s = node.as_string()) {
    if (kind == ValueKind::Integer || kind == ValueKind::Boolean) return wrongType();
    return **s;
  }
  if (const auto* i = node.as_integer()) {
    const int64_t v = **i;
    if (kind == ValueKind::Integer || kind == ValueKind::Duration) return std::to_string(v);
    if (kind == ValueKind::Octal) {
      if (v < 0) return wrongType();
      char buf[32];
      buf[0] = '0';
      auto [end, ec] = std::to_chars(buf + 1, buf + sizeof buf, v, 8);
      return std::string(buf, end);
    }
    return wrongType();
  }
  if (const auto* f = node.as_floating_point()) {
    if (kind != ValueKind::Duration) return wrongType();
    char buf[64];
    auto [end, ec] = std::to_chars(buf, buf + sizeof buf, **f);
    return std::string(buf, end);
  }
  if (const auto* b = node.as_boolean()) {
    if (kind != ValueKind::Boolean) return wrongType();
    return std::string(**b ? "1" : "0");
  }
  if (const auto* array = node.as_array()) {
    if (kind != ValueKind::List) return wrongType();
    std::string joined;
    for (const auto& element : *array) {
      const auto* s = element.as_string();
      if (s == nullptr) {
        return failPlain("expected an array of strings, got an element that is " +
                         describe(element, ValueKind::Text));
      }
      if (!joined.empty()) joined += ',';
      joined += **s;
    }
    return joined;
  }
  return wrongType();
}

class TomlReader {
 public:
  TomlReader(Config& config, std::string file)
      : config_(config),
        file_(std::move(file)),
        ctx_{detail::FileFormat::Toml, std::filesystem::path(file_).parent_path()} {}

  Result<void> read(const toml::table& root) {
    for (const auto& e : entriesByLine(root)) {
      Result<void> ok;
      if (e.key == "usher") {
        ok = readGeneral(e);
      } else if (e.key == "databases") {
        ok = readEntries(e, [this](const Entry& entry) { return readDatabase(entry); });
      } else if (e.key == "users") {
        ok = readEntries(e, [this](const Entry& entry) { return readUser(entry); });
      } else {
        std::string message = std::string(e.key) + ": unknown section";
        if (e.key == "pgbouncer") {
          message += " (usher.toml calls PgBouncer's [pgbouncer] section [usher])";
        } else if (auto near = detail::suggestKey(e.key, kSections); !near.empty()) {
          message += " (did you mean " + inQuotes(near) + "?)";
        } else {
          message += " (expected [usher], [databases.<name>] or [users.<name>])";
        }
        ok = failPlain(located(file_, e.line, message));
      }
      if (!ok) return ok;
    }
    // [users] secrets override auth_file; loadConfig adds auth_file entries afterwards.
    for (const auto& user : config_.users) {
      if (!user.password.empty()) config_.secrets.insert_or_assign(user.name, user.password);
    }
    return {};
  }

 private:
  Result<void> fail(size_t line, std::string_view message) const {
    return failPlain(located(file_, line, message));
  }

  Result<const toml::table*> asTable(const Entry& e, std::string_view what) const {
    if (const auto* table = e.node->as_table()) return table;
    return failPlain(located(
        file_, e.line,
        std::string(what) + ": expected a table, got " + describe(*e.node, ValueKind::Text)));
  }

  Result<void> readGeneral(const Entry& section) {
    auto table = asTable(section, "usher");
    if (!table) return std::unexpected(table.error());
    for (const auto& e : entriesByLine(**table)) {
      std::string text;
      if (auto kind = detail::generalKind(e.key)) {
        auto rendered = render(*e.node, *kind);
        if (!rendered) return fail(e.line, std::string(e.key) + ": " + rendered.error().message);
        text = std::move(*rendered);
      }
      auto ok = detail::applyGeneralKey(config_, "usher", e.key, text, ctx_);
      if (!ok) return fail(e.line, ok.error().message);
    }
    return {};
  }

  template <class ReadOne>
  Result<void> readEntries(const Entry& section, ReadOne readOne) {
    auto table = asTable(section, section.key);
    if (!table) return std::unexpected(table.error());
    for (const auto& e : entriesByLine(**table)) {
      if (auto ok = readOne(e); !ok) return ok;
    }
    return {};
  }

  // One [databases.<name>] table, or `<name> = "host=... port=..."` (a pgbouncer.ini line pasted
  // as a string, which makes migrating by hand quicker).
  Result<void> readDatabase(const Entry& e) {
    DatabaseConfig db = detail::newDatabase(e.key);
    auto ok = readEntry<DatabaseConfig>(e, "databases", db, detail::databaseKind,
                                        detail::applyDatabaseKey);
    if (!ok) return ok;
    detail::upsertDatabase(config_, std::move(db));
    return {};
  }

  Result<void> readUser(const Entry& e) {
    UserConfig user = detail::newUser(e.key);
    auto ok = readEntry<UserConfig>(e, "users", user, detail::userKind, detail::applyUserKey);
    if (!ok) return ok;
    detail::upsertUser(config_, std::move(user));
    return {};
  }

  template <class Record, class KindOf, class Apply>
  Result<void> readEntry(const Entry& e, std::string_view section, Record& record, KindOf kindOf,
                         Apply apply) {
    const std::string prefix = std::string(section) + "." + record.name;
    if (const auto* connstring = e.node->as_string()) {
      auto pairs = detail::parseConnstring(**connstring);
      if (!pairs) return fail(e.line, prefix + ": " + pairs.error().message);
      Result<void> ok;
      for (const auto& [key, value] : *pairs) {
        ok = apply(config_, record, key, value, ctx_);
        if (!ok) break;
      }
      detail::wipePairs(*pairs);
      if (!ok) return fail(e.line, ok.error().message);
      return {};
    }
    auto table = asTable(e, prefix);
    if (!table) return std::unexpected(table.error());
    if ((*table)->contains("password") && (*table)->contains("password_file")) {
      return fail(e.line, prefix + ": set password or password_file, not both");
    }
    for (const auto& kv : entriesByLine(**table)) {
      std::string text;
      const std::optional<ValueKind> kind = kindOf(kv.key, detail::FileFormat::Toml);
      if (kind) {
        auto rendered = render(*kv.node, *kind);
        if (!rendered) {
          return fail(kv.line,
                      prefix + "." + std::string(kv.key) + ": " + rendered.error().message);
        }
        text = std::move(*rendered);
      }
      auto ok = apply(config_, record, kv.key, text, ctx_);
      if (kind == ValueKind::Secret) auth::wipeMemory(text.data(), text.size());
      if (!ok) return fail(kv.line, ok.error().message);
    }
    return {};
  }

  Config& config_;
  std::string file_;
  ApplyContext ctx_;
};

}  // namespace

Result<std::shared_ptr<Config>> parseToml(std::string_view text, const std::string& path) {
  toml::table root;
  try {
    root = toml::parse(text, path);
  } catch (const toml::parse_error& e) {
    return failPlain(
        located(path, e.source().begin.line, "TOML syntax error: " + std::string(e.description())));
  } catch (const std::exception& e) {
    return failPlain(path + ": cannot parse: " + e.what());
  }

  auto config = std::make_shared<Config>();
  config->path = path;
  config->fromIni = false;
  TomlReader reader(*config, path);
  if (auto ok = reader.read(root); !ok) return std::unexpected(ok.error());
  return config;
}

}  // namespace usher::config
