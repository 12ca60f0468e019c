// Key tables and value parsers shared by the pgbouncer.ini and usher.toml loaders (private).
//
// Both formats use PgBouncer's key names, so one table per section (in config.cpp) says what each
// key is, how its text is read and where it lands in Config. The ini loader hands every value over
// as text; the TOML loader first checks the TOML type against the key's ValueKind, then renders
// the value as the same text, so a key behaves identically in both formats.
#pragma once

#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "usher/base/result.h"
#include "usher/config/config.h"

namespace usher::config::detail {

// What a value looks like; decides which TOML types a key accepts.
enum class ValueKind {
  Integer,   // TOML integer
  Octal,     // TOML integer (0o777) or string ("0777")
  Boolean,   // TOML boolean
  Duration,  // TOML integer/float seconds, or a string with a unit ("250ms", "5s", "2m", "1h")
  Text,      // TOML string
  List,      // TOML array of strings, or a comma-separated string
  Choice,    // TOML string from a fixed set (pool_mode, auth_type, log_format)
  Secret,    // TOML string; never echoed in any message
};

enum class FileFormat { Ini, Toml };

// Relative paths in a file (auth_file, password_file) are resolved against its directory.
struct ApplyContext {
  FileFormat format = FileFormat::Toml;
  std::filesystem::path baseDir;
};

// The kind of an implemented key; nullopt for keys usher does not implement (unsupported or
// unknown). password/password_file exist only in usher.toml.
std::optional<ValueKind> generalKind(std::string_view key);
std::optional<ValueKind> databaseKind(std::string_view key, FileFormat format);
std::optional<ValueKind> userKind(std::string_view key, FileFormat format);

// Apply one key given as text. A key PgBouncer 1.25 documents but usher does not implement is
// recorded in config.unsupportedKeys ("<section>.<key>", "databases.<db>.<key>", ...); any other
// key is an error. Error messages are "<key>: <problem>" (the caller adds "<file>:<line>: ") and
// never contain a secret.
Result<void> applyGeneralKey(Config& config, std::string_view section, std::string_view key,
                             std::string_view text, const ApplyContext& ctx);
Result<void> applyDatabaseKey(Config& config, DatabaseConfig& db, std::string_view key,
                              std::string_view text, const ApplyContext& ctx);
Result<void> applyUserKey(Config& config, UserConfig& user, std::string_view key,
                          std::string_view text, const ApplyContext& ctx);

// Records an unsupported key once.
void noteUnsupported(Config& config, std::string name);

// The closest of `known` within edit distance 2 of `key`, or "" when none is that close.
std::string_view suggestKey(std::string_view key, std::span<const std::string_view> known);

// Defaults of a new [databases] / [users] entry called `name`.
DatabaseConfig newDatabase(std::string_view name);
UserConfig newUser(std::string_view name);

// Replaces an entry of the same name (a later definition wins, as in PgBouncer) or appends.
void upsertDatabase(Config& config, DatabaseConfig db);
void upsertUser(Config& config, UserConfig user);

// libpq-style `key=value key='quoted value'` pairs as PgBouncer reads them ('' and \' escape a
// quote). The error never quotes the text: it may hold a password.
using Pairs = std::vector<std::pair<std::string, std::string>>;
Result<Pairs> parseConnstring(std::string_view text);

// Overwrites the values of parsed pairs once applied (they may hold passwords).
void wipePairs(Pairs& pairs);

// Reads a whole file; the error names the path and errno text (never the content).
Result<std::string> readFile(const std::filesystem::path& path);

// Resolves `p` against `base` unless it is absolute or empty.
std::string resolvePath(const std::filesystem::path& base, std::string_view p);

// "<file>:<line>: <message>": the prefix of every loader error.
std::string located(std::string_view file, size_t line, std::string_view message);

std::string_view trim(std::string_view s);
std::string lowercase(std::string_view s);  // ASCII only: keys and keywords
std::string inQuotes(std::string_view s);   // "\"s\"", for values that are not secrets

}  // namespace usher::config::detail
