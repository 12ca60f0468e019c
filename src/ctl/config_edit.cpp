// Line-based editing of usher.toml / pgbouncer.ini / userlist.txt for tenants, validated with
// usher's own loaders before anything is written.
#include "usher/ctl/config_edit.h"

#include <algorithm>
#include <cctype>

#include "usher/auth/auth_file.h"
#include "usher/ctl/files.h"
#include "usher/ctl/json.h"

namespace usher::ctl {
namespace {

using Lines = std::vector<std::string>;

struct Text {
  Lines lines;
  bool finalNewline = true;
};

Text splitLines(std::string_view text) {
  Text t;
  t.finalNewline = text.empty() || text.back() == '\n';
  size_t pos = 0;
  while (pos < text.size()) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string_view::npos) eol = text.size();
    t.lines.emplace_back(text.substr(pos, eol - pos));
    pos = eol + 1;
  }
  return t;
}

std::string joinLines(const Text& t) {
  std::string out;
  for (size_t i = 0; i < t.lines.size(); ++i) {
    out += t.lines[i];
    if (i + 1 < t.lines.size() || t.finalNewline) out.push_back('\n');
  }
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

bool isBlankOrComment(std::string_view line, std::string_view commentChars) {
  std::string_view t = trim(line);
  return t.empty() || commentChars.find(t.front()) != std::string_view::npos;
}

// Collapses runs of blank lines around index `at` (after a removal) to at most one.
void collapseBlanks(Lines& lines, size_t at) {
  size_t i = at > 0 ? at - 1 : 0;
  while (i + 1 < lines.size() && trim(lines[i]).empty() && trim(lines[i + 1]).empty()) {
    lines.erase(lines.begin() + long(i + 1));
  }
  while (!lines.empty() && trim(lines.back()).empty()) lines.pop_back();
}

// ---- TOML ----

// The dotted-key parts of a table header line ("[databases.\"x\"]" -> {databases, x}), or empty
// when the line is not a header. [[array]] headers count as headers too (they end a table).
std::vector<std::string> tomlHeader(std::string_view line) {
  std::string_view t = trim(line);
  if (t.empty() || t.front() != '[') return {};
  bool array = t.starts_with("[[");
  t.remove_prefix(array ? 2 : 1);
  std::vector<std::string> parts;
  std::string cur;
  char quote = 0;
  size_t i = 0;
  for (; i < t.size(); ++i) {
    char c = t[i];
    if (quote) {
      if (c == quote) {
        quote = 0;
      } else if (c == '\\' && quote == '"' && i + 1 < t.size()) {
        cur.push_back(t[++i]);
      } else {
        cur.push_back(c);
      }
      continue;
    }
    if (c == '"' || c == '\'') {
      quote = c;
    } else if (c == '.') {
      parts.emplace_back(trim(cur));
      cur.clear();
    } else if (c == ']') {
      break;
    } else {
      cur.push_back(c);
    }
  }
  if (i >= t.size()) return {};  // no closing bracket: not a header we understand
  parts.emplace_back(trim(cur));
  if (array) parts.insert(parts.begin(), "[[");  // never equal to a table we look for
  return parts;
}

struct Range {
  size_t header = 0;  // index of the header line
  size_t end = 0;     // index of the next header (or lines.size())
};

std::optional<Range> findTomlTable(const Lines& lines, std::string_view table,
                                   std::string_view name) {
  for (size_t i = 0; i < lines.size(); ++i) {
    auto parts = tomlHeader(lines[i]);
    if (parts.size() == 2 && parts[0] == table && parts[1] == name) {
      size_t end = i + 1;
      while (end < lines.size() && tomlHeader(lines[end]).empty()) ++end;
      return Range{i, end};
    }
  }
  return std::nullopt;
}

// The key of a `key = value` line (bare or quoted), or "".
std::string keyOf(std::string_view line) {
  std::string_view t = trim(line);
  if (t.empty() || t.front() == '#' || t.front() == ';' || t.front() == '[') return {};
  auto eq = t.find('=');
  if (eq == std::string_view::npos) return {};
  std::string_view k = trim(t.substr(0, eq));
  if (k.size() >= 2 && (k.front() == '"' || k.front() == '\'') && k.back() == k.front()) {
    k = k.substr(1, k.size() - 2);
  }
  return std::string(k);
}

std::string_view valueOf(std::string_view line) {
  auto eq = line.find('=');
  return eq == std::string_view::npos ? std::string_view{} : trim(line.substr(eq + 1));
}

bool isBareKey(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
  });
}

// Index just past the last content line of [header, end): trailing blank lines and comments
// introduce the next table, so they stay with it.
size_t contentEnd(const Lines& lines, const Range& r) {
  size_t e = r.end;
  while (e > r.header + 1 && isBlankOrComment(lines[e - 1], "#")) --e;
  return e;
}

// ---- ini ----

std::string iniSectionOf(std::string_view line) {
  std::string_view t = trim(line);
  if (t.size() < 2 || t.front() != '[' || t.back() != ']') return {};
  std::string name(trim(t.substr(1, t.size() - 2)));
  for (char& c : name) c = char(std::tolower(static_cast<unsigned char>(c)));
  return name;
}

std::string iniKeyOf(std::string_view line) {
  std::string_view t = trim(line);
  if (t.empty() || t.front() == ';' || t.front() == '#' || t.front() == '[') return {};
  auto eq = t.find('=');
  if (eq == std::string_view::npos) return {};
  return std::string(trim(t.substr(0, eq)));
}

std::optional<Range> findIniSection(const Lines& lines, std::string_view section) {
  for (size_t i = 0; i < lines.size(); ++i) {
    if (iniSectionOf(lines[i]) == section) {
      size_t end = i + 1;
      while (end < lines.size() && iniSectionOf(lines[end]).empty()) ++end;
      return Range{i, end};
    }
  }
  return std::nullopt;
}

// ---- userlist ----

// The first two quoted fields of a userlist line.
std::optional<std::pair<std::string, std::string>> userlistFields(std::string_view line) {
  std::string_view s = trim(line);
  if (s.empty() || s.front() == ';' || s.front() == '#') return std::nullopt;
  auto quoted = [&s]() -> std::optional<std::string> {
    s = trim(s);
    if (s.empty() || s.front() != '"') return std::nullopt;
    std::string out;
    for (size_t i = 1; i < s.size(); ++i) {
      if (s[i] == '"') {
        if (i + 1 < s.size() && s[i + 1] == '"') {
          out.push_back('"');
          ++i;
          continue;
        }
        s.remove_prefix(i + 1);
        return out;
      }
      out.push_back(s[i]);
    }
    return std::nullopt;
  };
  auto user = quoted();
  if (!user) return std::nullopt;
  auto secret = quoted();
  return std::make_pair(std::move(*user), secret.value_or(""));
}

std::string iniQuote(std::string_view v) {
  if (!v.empty() && v.find_first_of(" '\t") == std::string_view::npos) return std::string(v);
  std::string out = "'";
  for (char c : v) {
    if (c == '\'') out.push_back('\'');
    out.push_back(c);
  }
  return out + "'";
}

}  // namespace

// ---- TOML --------------------------------------------------------------------------------

std::string tomlString(std::string_view s) {
  return jsonQuote(s);
}  // JSON strings are TOML

bool tomlHasTable(std::string_view text, std::string_view table, std::string_view name) {
  return findTomlTable(splitLines(text).lines, table, name).has_value();
}

std::optional<std::string> tomlGetKey(std::string_view text, std::string_view table,
                                      std::string_view name, std::string_view key) {
  Text t = splitLines(text);
  auto r = findTomlTable(t.lines, table, name);
  if (!r) return std::nullopt;
  for (size_t i = r->header + 1; i < r->end; ++i) {
    if (keyOf(t.lines[i]) == key) return std::string(valueOf(t.lines[i]));
  }
  return std::nullopt;
}

std::string tomlAddTable(std::string_view text, std::string_view table, std::string_view name,
                         const std::vector<std::pair<std::string, std::string>>& keyValues,
                         std::string_view comment) {
  Text t = splitLines(text);
  Lines block;
  block.emplace_back("");
  if (!comment.empty()) block.push_back("# " + std::string(comment));
  block.push_back("[" + std::string(table) + "." +
                  (isBareKey(name) ? std::string(name) : tomlString(name)) + "]");
  for (const auto& [k, v] : keyValues) block.push_back(k + " = " + v);

  // After the last [table.*] table, so the file stays grouped; else at the end.
  std::optional<size_t> at;
  for (size_t i = 0; i < t.lines.size(); ++i) {
    auto parts = tomlHeader(t.lines[i]);
    if (parts.size() == 2 && parts[0] == table) {
      Range r{i, i + 1};
      while (r.end < t.lines.size() && tomlHeader(t.lines[r.end]).empty()) ++r.end;
      at = contentEnd(t.lines, r);
    }
  }
  if (!at) {
    while (!t.lines.empty() && trim(t.lines.back()).empty()) t.lines.pop_back();
    at = t.lines.size();
  } else if (*at < t.lines.size() && !trim(t.lines[*at]).empty()) {
    block.emplace_back("");
  }
  if (t.lines.empty()) block.erase(block.begin());
  t.lines.insert(t.lines.begin() + long(*at), block.begin(), block.end());
  t.finalNewline = true;
  return joinLines(t);
}

std::string tomlSetKey(std::string_view text, std::string_view table, std::string_view name,
                       std::string_view key, std::string_view rawValue,
                       const std::vector<std::string>& alsoReplace) {
  Text t = splitLines(text);
  auto r = findTomlTable(t.lines, table, name);
  if (!r) return tomlAddTable(text, table, name, {{std::string(key), std::string(rawValue)}});
  const std::string newLine = std::string(key) + " = " + std::string(rawValue);
  bool placed = false;
  for (size_t i = r->header + 1; i < r->end;) {
    const std::string k = keyOf(t.lines[i]);
    const bool ours =
        k == key || std::find(alsoReplace.begin(), alsoReplace.end(), k) != alsoReplace.end();
    if (!ours) {
      ++i;
      continue;
    }
    if (!placed) {
      t.lines[i] = newLine;
      placed = true;
      ++i;
    } else {
      t.lines.erase(t.lines.begin() + long(i));
      --r->end;
    }
  }
  if (!placed) t.lines.insert(t.lines.begin() + long(r->header + 1), newLine);
  return joinLines(t);
}

std::string tomlRemoveTable(std::string_view text, std::string_view table, std::string_view name) {
  Text t = splitLines(text);
  auto r = findTomlTable(t.lines, table, name);
  if (!r) return std::string(text);
  size_t begin = r->header;
  while (begin > 0 && trim(t.lines[begin - 1]).starts_with("# usherctl:")) --begin;
  // The table and the blank lines after it: what preceded it then meets what followed.
  size_t end = contentEnd(t.lines, *r);
  while (end < t.lines.size() && trim(t.lines[end]).empty()) ++end;
  t.lines.erase(t.lines.begin() + long(begin), t.lines.begin() + long(end));
  collapseBlanks(t.lines, begin);
  return joinLines(t);
}

// ---- ini ---------------------------------------------------------------------------------

std::optional<std::string> iniGetKey(std::string_view text, std::string_view section,
                                     std::string_view key) {
  Text t = splitLines(text);
  auto r = findIniSection(t.lines, section);
  if (!r) return std::nullopt;
  for (size_t i = r->header + 1; i < r->end; ++i) {
    if (iniKeyOf(t.lines[i]) == key) return std::string(valueOf(t.lines[i]));
  }
  return std::nullopt;
}

std::string iniSetKey(std::string_view text, std::string_view section, std::string_view key,
                      std::string_view value) {
  Text t = splitLines(text);
  const std::string newLine = std::string(key) + " = " + std::string(value);
  auto r = findIniSection(t.lines, section);
  if (!r) {
    while (!t.lines.empty() && trim(t.lines.back()).empty()) t.lines.pop_back();
    if (!t.lines.empty()) t.lines.emplace_back("");
    t.lines.push_back("[" + std::string(section) + "]");
    t.lines.push_back(newLine);
    t.finalNewline = true;
    return joinLines(t);
  }
  size_t lastKey = r->header;
  for (size_t i = r->header + 1; i < r->end; ++i) {
    const std::string k = iniKeyOf(t.lines[i]);
    if (k == key) {
      t.lines[i] = newLine;
      return joinLines(t);
    }
    if (!k.empty()) lastKey = i;
  }
  t.lines.insert(t.lines.begin() + long(lastKey + 1), newLine);
  return joinLines(t);
}

std::string iniRemoveKey(std::string_view text, std::string_view section, std::string_view key) {
  Text t = splitLines(text);
  auto r = findIniSection(t.lines, section);
  if (!r) return std::string(text);
  for (size_t i = r->header + 1; i < r->end; ++i) {
    if (iniKeyOf(t.lines[i]) == key) {
      t.lines.erase(t.lines.begin() + long(i));
      return joinLines(t);
    }
  }
  return std::string(text);
}

// ---- userlist ----------------------------------------------------------------------------

std::string userlistQuote(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out.push_back('"');
    out.push_back(c);
  }
  return out + "\"";
}

std::optional<std::string> userlistGet(std::string_view text, std::string_view user) {
  for (const auto& line : splitLines(text).lines) {
    auto f = userlistFields(line);
    if (f && f->first == user) return f->second;
  }
  return std::nullopt;
}

std::string userlistSet(std::string_view text, std::string_view user, std::string_view secret) {
  Text t = splitLines(text);
  const std::string newLine = userlistQuote(user) + " " + userlistQuote(secret);
  bool placed = false;
  for (size_t i = 0; i < t.lines.size();) {
    auto f = userlistFields(t.lines[i]);
    if (f && f->first == user) {
      if (!placed) {
        t.lines[i++] = newLine;
        placed = true;
      } else {
        t.lines.erase(t.lines.begin() + long(i));
      }
      continue;
    }
    ++i;
  }
  if (!placed) t.lines.push_back(newLine);
  t.finalNewline = true;
  return joinLines(t);
}

std::string userlistRemove(std::string_view text, std::string_view user) {
  Text t = splitLines(text);
  std::erase_if(t.lines, [&](const std::string& line) {
    auto f = userlistFields(line);
    return f && f->first == user;
  });
  return joinLines(t);
}

// ---- planned changes ---------------------------------------------------------------------

namespace {

Result<ConfigChange> startChange(const std::string& configPath, const config::Config& loaded) {
  ConfigChange c;
  c.configPath = configPath;
  c.ini = loaded.fromIni;
  auto text = readTextFile(configPath);
  if (!text) return std::unexpected(text.error());
  c.configBefore = c.configAfter = std::move(*text);
  return c;
}

Result<void> loadAuthInto(ConfigChange& c, const config::Config& loaded) {
  if (loaded.authFile.empty()) {
    return failPlain(c.configPath +
                     " has no auth_file: set one (e.g. auth_file = userlist.txt) so usherctl can "
                     "store the tenant's SCRAM verifier in it");
  }
  c.authPath = loaded.authFile;
  if (fileExists(c.authPath)) {
    auto text = readTextFile(c.authPath);
    if (!text) return std::unexpected(text.error());
    c.authBefore = c.authAfter = std::move(*text);
  }
  return {};
}

Result<void> planSecretInto(ConfigChange& c, const config::Config& loaded,
                            const TenantConfigEntry& e) {
  if (c.ini) {
    if (auto ok = loadAuthInto(c, loaded); !ok) return ok;
    if (userlistGet(c.authAfter, e.role) != e.verifier) {
      c.authAfter = userlistSet(c.authAfter, e.role, e.verifier);
      c.actions.push_back("set " + e.role + "'s SCRAM verifier in " + c.authPath);
    }
    return {};
  }
  const std::string want = tomlString(e.verifierFile);
  const bool hasInline = tomlGetKey(c.configAfter, "users", e.role, "password").has_value();
  if (tomlGetKey(c.configAfter, "users", e.role, "password_file") != want || hasInline) {
    const bool existed = tomlHasTable(c.configAfter, "users", e.role);
    c.configAfter = tomlSetKey(c.configAfter, "users", e.role, "password_file", want, {"password"});
    c.actions.push_back(std::string(existed ? "set" : "add") + " [users." + e.role +
                        "] password_file = " + e.verifierFile);
  }
  return {};
}

}  // namespace

Result<ConfigChange> planAddTenant(const std::string& configPath, const config::Config& loaded,
                                   const TenantConfigEntry& e) {
  auto c = startChange(configPath, loaded);
  if (!c) return c;
  if (c->ini) {
    if (!iniGetKey(c->configAfter, "databases", e.database)) {
      std::string connstr =
          "host=" + iniQuote(e.host) + " port=" + std::to_string(e.port) + " dbname=" + e.database;
      if (e.poolSize) connstr += " pool_size=" + std::to_string(*e.poolSize);
      c->configAfter = iniSetKey(c->configAfter, "databases", e.database, connstr);
      c->actions.push_back("add [databases] " + e.database + " to " + configPath);
    }
  } else if (!tomlHasTable(c->configAfter, "databases", e.database)) {
    std::vector<std::pair<std::string, std::string>> kv = {
        {"host", tomlString(e.host)},
        {"port", std::to_string(e.port)},
        {"dbname", tomlString(e.database)},
    };
    if (e.poolSize) kv.emplace_back("pool_size", std::to_string(*e.poolSize));
    c->configAfter = tomlAddTable(c->configAfter, "databases", e.database, kv,
                                  "usherctl: tenant " + e.database + " (role " + e.role + ")");
    c->actions.push_back("add [databases." + e.database + "] to " + configPath);
  }
  if (auto ok = planSecretInto(*c, loaded, e); !ok) return std::unexpected(ok.error());
  return c;
}

Result<ConfigChange> planSetSecret(const std::string& configPath, const config::Config& loaded,
                                   const TenantConfigEntry& e) {
  auto c = startChange(configPath, loaded);
  if (!c) return c;
  if (auto ok = planSecretInto(*c, loaded, e); !ok) return std::unexpected(ok.error());
  return c;
}

Result<ConfigChange> planRemoveTenant(const std::string& configPath, const config::Config& loaded,
                                      std::string_view database, std::string_view role) {
  auto c = startChange(configPath, loaded);
  if (!c) return c;
  const std::string db(database), r(role);
  if (c->ini) {
    if (iniGetKey(c->configAfter, "databases", db)) {
      c->configAfter = iniRemoveKey(c->configAfter, "databases", db);
      c->actions.push_back("remove [databases] " + db + " from " + configPath);
    }
    if (iniGetKey(c->configAfter, "users", r)) {
      c->configAfter = iniRemoveKey(c->configAfter, "users", r);
      c->actions.push_back("remove [users] " + r + " from " + configPath);
    }
    if (!loaded.authFile.empty()) {
      if (auto ok = loadAuthInto(*c, loaded); !ok) return std::unexpected(ok.error());
      if (userlistGet(c->authAfter, r)) {
        c->authAfter = userlistRemove(c->authAfter, r);
        c->actions.push_back("remove " + r + " from " + c->authPath);
      }
    }
    return c;
  }
  if (tomlHasTable(c->configAfter, "databases", db)) {
    c->configAfter = tomlRemoveTable(c->configAfter, "databases", db);
    c->actions.push_back("remove [databases." + db + "] from " + configPath);
  }
  if (tomlHasTable(c->configAfter, "users", r)) {
    c->configAfter = tomlRemoveTable(c->configAfter, "users", r);
    c->actions.push_back("remove [users." + r + "] from " + configPath);
  }
  return c;
}

Result<void> validateChange(const ConfigChange& change) {
  auto cfg = change.ini ? config::parseIni(change.configAfter, change.configPath)
                        : config::parseToml(change.configAfter, change.configPath);
  if (!cfg) {
    return failPlain("the edited config would not load, nothing was written: " +
                     cfg.error().message);
  }
  config::Config& c = **cfg;
  if (!c.authFile.empty()) {
    auto file = (!change.authPath.empty() && c.authFile == change.authPath)
                    ? auth::parseAuthFile(change.authAfter, change.authPath)
                    : auth::loadAuthFile(c.authFile);
    if (!file) {
      return failPlain("the edited auth_file would not load, nothing was written: " +
                       file.error().message);
    }
    for (auto& [user, secret] : *file) c.secrets.try_emplace(user, std::move(secret));
  }
  if (auto ok = config::validate(c); !ok) {
    return failPlain("the edited config would not validate, nothing was written: " +
                     ok.error().message);
  }
  return {};
}

Result<void> commitChange(const ConfigChange& change) {
  if (!change.changed()) return {};
  if (auto ok = validateChange(change); !ok) return ok;
  if (!change.authPath.empty() && change.authBefore != change.authAfter) {
    std::optional<mode_t> mode;
    if (!fileExists(change.authPath)) mode = 0600;
    if (auto ok = atomicWriteFile(change.authPath, change.authAfter, mode); !ok) return ok;
  }
  if (change.configBefore != change.configAfter) {
    if (auto ok = atomicWriteFile(change.configPath, change.configAfter); !ok) return ok;
  }
  return {};
}

}  // namespace usher::ctl
