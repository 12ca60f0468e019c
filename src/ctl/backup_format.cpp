// Backups on disk: names, manifests, retention and the pg_dump argv (pure functions).
#include "usher/ctl/backup_format.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <numeric>

#include "usher/ctl/json.h"

namespace usher::ctl {

std::string manifestToJson(const BackupManifest& m) {
  JsonWriter w;
  w.beginObject()
      .field("format", m.format)
      .field("database", m.database)
      .field("owner", m.owner)
      .field("file", m.file)
      .field("created", backupTimestamp(std::time_t(m.created)))
      .field("created_unix", m.created)
      .field("size", m.size)
      .field("blake2b", m.blake2b)
      .field("encrypted", m.encrypted)
      .field("toc_entries", m.tocEntries)
      .field("source", m.source)
      .field("pg_dump_version", m.pgDumpVersion)
      .endObject();
  return w.str() + "\n";
}

Result<BackupManifest> parseManifest(std::string_view json) {
  auto v = parseJson(json);
  if (!v) return std::unexpected(v.error());
  if (v->kind != JsonValue::Kind::Object) return failPlain("manifest is not a JSON object");
  BackupManifest m;
  auto format = v->getString("format");
  if (format != kManifestFormat) {
    return failPlain("manifest format is " + (format ? "\"" + *format + "\"" : "missing") +
                     ", expected \"" + std::string(kManifestFormat) + "\"");
  }
  auto need = [&](std::string_view key) -> Result<std::string> {
    auto s = v->getString(key);
    if (!s) return failPlain("manifest has no \"" + std::string(key) + "\" string");
    return *s;
  };
  auto needInt = [&](std::string_view key) -> Result<int64_t> {
    auto i = v->getInt(key);
    if (!i || *i < 0) return failPlain("manifest has no \"" + std::string(key) + "\" count");
    return *i;
  };
  auto database = need("database");
  auto file = need("file");
  auto hash = need("blake2b");
  auto size = needInt("size");
  auto created = needInt("created_unix");
  for (const auto* r : {&database, &file, &hash}) {
    if (!*r) return std::unexpected(r->error());
  }
  if (!size) return std::unexpected(size.error());
  if (!created) return std::unexpected(created.error());
  if (hash->size() != 64 || hash->find_first_not_of("0123456789abcdef") != std::string::npos) {
    return failPlain("manifest \"blake2b\" is not 64 lowercase hex digits");
  }
  if (file->find('/') != std::string::npos) return failPlain("manifest \"file\" has a '/'");
  m.database = std::move(*database);
  m.file = std::move(*file);
  m.blake2b = std::move(*hash);
  m.size = *size;
  m.created = *created;
  m.owner = v->getString("owner").value_or("");
  m.encrypted = v->getBool("encrypted").value_or(false);
  m.tocEntries = v->getInt("toc_entries").value_or(0);
  m.source = v->getString("source").value_or("");
  m.pgDumpVersion = v->getString("pg_dump_version").value_or("");
  return m;
}

std::string backupTimestamp(std::time_t t) {
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm);
  return buf;
}

std::optional<std::time_t> parseBackupTimestamp(std::string_view s) {
  if (s.size() != 16 || s[8] != 'T' || s[15] != 'Z') return std::nullopt;
  for (size_t i : {0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14}) {
    if (s[i] < '0' || s[i] > '9') return std::nullopt;
  }
  auto num = [&](size_t pos, size_t len) {
    int v = 0;
    for (size_t i = pos; i < pos + len; ++i) v = v * 10 + (s[i] - '0');
    return v;
  };
  std::tm tm{};
  tm.tm_year = num(0, 4) - 1900;
  tm.tm_mon = num(4, 2) - 1;
  tm.tm_mday = num(6, 2);
  tm.tm_hour = num(9, 2);
  tm.tm_min = num(11, 2);
  tm.tm_sec = num(13, 2);
  if (tm.tm_mon > 11 || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 || tm.tm_min > 59 ||
      tm.tm_sec > 60) {
    return std::nullopt;
  }
  return timegm(&tm);
}

std::string backupFileName(std::string_view database, std::time_t t, bool encrypted) {
  return std::string(database) + "-" + backupTimestamp(t) + ".dump" + (encrypted ? ".enc" : "");
}

std::optional<BackupName> parseBackupFileName(std::string_view name) {
  BackupName out;
  if (name.ends_with(".dump.enc")) {
    out.encrypted = true;
    name.remove_suffix(9);
  } else if (name.ends_with(".dump")) {
    name.remove_suffix(5);
  } else {
    return std::nullopt;
  }
  // An optional "-N" after the stamp (two backups within one second).
  auto dash = name.rfind('-');
  if (dash != std::string_view::npos && dash + 1 < name.size() &&
      name.find_first_not_of("0123456789", dash + 1) == std::string_view::npos &&
      name.size() - dash - 1 <= 4) {
    std::string_view head = name.substr(0, dash);
    if (head.size() > 17 && parseBackupTimestamp(head.substr(head.size() - 16))) {
      out.sequence = std::atoi(std::string(name.substr(dash + 1)).c_str());
      name = head;
    }
  }
  if (name.size() < 18 || name[name.size() - 17] != '-') return std::nullopt;
  auto t = parseBackupTimestamp(name.substr(name.size() - 16));
  if (!t) return std::nullopt;
  out.database = std::string(name.substr(0, name.size() - 17));
  out.created = *t;
  return out;
}

std::set<size_t> selectRetained(const std::vector<std::time_t>& times, int keepDaily,
                                int keepWeekly) {
  std::vector<size_t> order(times.size());
  std::iota(order.begin(), order.end(), 0);
  // Newest first; ties keep input order so the result is deterministic.
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return times[a] > times[b]; });
  std::set<size_t> keep;
  if (order.empty()) return keep;
  keep.insert(order.front());

  auto bucketKeep = [&](int count, const char* format) {
    std::set<std::string> seen;
    for (size_t i : order) {
      if (int(seen.size()) >= count) break;
      std::tm tm{};
      std::time_t t = times[i];
      gmtime_r(&t, &tm);
      char key[32];
      std::strftime(key, sizeof key, format, &tm);
      if (seen.insert(key).second) keep.insert(i);
    }
  };
  bucketKeep(std::max(keepDaily, 0), "%Y-%m-%d");
  bucketKeep(std::max(keepWeekly, 0), "%G-W%V");
  return keep;
}

std::vector<std::string> buildDumpArgv(const DumpCommand& c) {
  std::vector<std::string> argv;
  if (!c.composeService.empty()) {
    argv = {c.docker, "compose"};
    if (!c.composeFile.empty()) {
      argv.push_back("-f");
      argv.push_back(c.composeFile);
    }
    argv.push_back("exec");
    argv.push_back("-T");  // no pseudo-TTY: it would mangle the binary dump
    if (c.passPassword) {
      argv.push_back("-e");
      argv.push_back("PGPASSWORD");  // value taken from our environment, never on the argv
    }
    argv.push_back(c.composeService);
    argv.push_back("pg_dump");
  } else {
    argv.push_back(c.pgDump);
    argv.push_back("--host=" + c.host);
    argv.push_back("--port=" + std::to_string(c.port));
  }
  argv.push_back("--format=custom");
  argv.push_back("--no-password");
  if (!c.user.empty()) argv.push_back("--username=" + c.user);
  argv.push_back("--dbname=" + c.database);
  return argv;
}

std::string humanSize(int64_t bytes) {
  static const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = double(bytes);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  if (u == 0) {
    std::snprintf(buf, sizeof buf, "%lld B", static_cast<long long>(bytes));
  } else {
    std::snprintf(buf, sizeof buf, "%.1f %s", v, kUnits[u]);
  }
  return buf;
}

std::string toHex(const unsigned char* data, size_t size) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(size * 2);
  for (size_t i = 0; i < size; ++i) {
    out.push_back(kDigits[data[i] >> 4]);
    out.push_back(kDigits[data[i] & 15]);
  }
  return out;
}

}  // namespace usher::ctl
