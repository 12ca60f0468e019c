// Editing usher's config for tenants: usher.toml tables or pgbouncer.ini lines + userlist.txt
// entries, planned as text, validated with usher's own loaders, then written atomically.
//
// Editing is line based and touches only what usherctl owns (one [databases.X] / [users.Y] table,
// one `X = ...` line, one userlist entry): comments, order and every other line stay as they are.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "usher/base/result.h"
#include "usher/config/config.h"

namespace usher::ctl {

// ---- usher.toml ----------------------------------------------------------------------------
// `table` is the parent ("databases", "users"), `name` the child; headers are matched whether
// written [databases.x], [databases."x"] or with spaces around the dots.

// A TOML basic string literal for `s`.
std::string tomlString(std::string_view s);
bool tomlHasTable(std::string_view text, std::string_view table, std::string_view name);
// The raw value text of `key` in [table.name], if present.
std::optional<std::string> tomlGetKey(std::string_view text, std::string_view table,
                                      std::string_view name, std::string_view key);
// Appends [table.name] with `keyValues` (raw TOML values) after the last [table.*] table (or at
// the end of the file), preceded by `comment` lines ("# ..." each) when given.
std::string tomlAddTable(std::string_view text, std::string_view table, std::string_view name,
                         const std::vector<std::pair<std::string, std::string>>& keyValues,
                         std::string_view comment = {});
// Sets `key = rawValue` in [table.name] (replacing the first of `key` or `alsoReplace`, removing
// any others of them), creating the table when it does not exist.
std::string tomlSetKey(std::string_view text, std::string_view table, std::string_view name,
                       std::string_view key, std::string_view rawValue,
                       const std::vector<std::string>& alsoReplace = {});
// Removes [table.name] up to the next table header, with the comment block usherctl wrote above
// it (lines starting "# usherctl:").
std::string tomlRemoveTable(std::string_view text, std::string_view table, std::string_view name);

// ---- pgbouncer.ini -------------------------------------------------------------------------

std::optional<std::string> iniGetKey(std::string_view text, std::string_view section,
                                     std::string_view key);
// Replaces `key = ...` in [section] or adds it after the section's last entry (creating the
// section at the end when missing).
std::string iniSetKey(std::string_view text, std::string_view section, std::string_view key,
                      std::string_view value);
std::string iniRemoveKey(std::string_view text, std::string_view section, std::string_view key);

// ---- userlist.txt (auth_file) --------------------------------------------------------------

std::string userlistQuote(std::string_view s);  // "..." with "" for a quote
// The secret text stored for `user` (the second field), if the user has a line.
std::optional<std::string> userlistGet(std::string_view text, std::string_view user);
std::string userlistSet(std::string_view text, std::string_view user, std::string_view secret);
std::string userlistRemove(std::string_view text, std::string_view user);

// ---- planned changes -------------------------------------------------------------------------

// How a tenant appears in usher's config.
struct TenantConfigEntry {
  std::string database;  // the name clients use; also the database name on the server
  std::string host;      // where usher reaches PostgreSQL for it
  int port = 5432;
  std::optional<int> poolSize;
  std::string role;
  std::string verifier;      // SCRAM-SHA-256 verifier (never the plaintext)
  std::string verifierFile;  // usher.toml: the password_file holding `verifier`
};

struct ConfigChange {
  std::string configPath;
  bool ini = false;
  std::string configBefore, configAfter;
  std::string authPath;  // pgbouncer.ini's auth_file, when it changes
  std::string authBefore, authAfter;
  std::vector<std::string> actions;  // what changes, for the report
  bool changed() const { return configBefore != configAfter || authBefore != authAfter; }
};

// Plans adding (or completing) a tenant. `loaded` is the config as usher's loader read it (it
// tells the format and the resolved auth_file). In usher.toml the verifier file must exist with
// `entry.verifier` before validateChange() runs (password_file is read by the loader).
Result<ConfigChange> planAddTenant(const std::string& configPath, const config::Config& loaded,
                                   const TenantConfigEntry& entry);
// Plans replacing a tenant role's secret (pgbouncer.ini: its userlist entry; usher.toml: its
// password_file key, when it does not already point at `entry.verifierFile`).
Result<ConfigChange> planSetSecret(const std::string& configPath, const config::Config& loaded,
                                   const TenantConfigEntry& entry);
Result<ConfigChange> planRemoveTenant(const std::string& configPath, const config::Config& loaded,
                                      std::string_view database, std::string_view role);

// Loads the planned texts with usher's own parsers and validation, as usher would on reload.
Result<void> validateChange(const ConfigChange& change);
// Validates, then writes the auth file (if changed) and the config atomically.
Result<void> commitChange(const ConfigChange& change);

}  // namespace usher::ctl
