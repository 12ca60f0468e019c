// Backups on disk: file names, the manifest beside each dump, retention, and the pg_dump argv.
//
//   <dir>/<database>-<YYYYmmddTHHMMSSZ>[-N].dump[.enc]        the dump (custom format), or its
//                                                              secretstream encryption
//   <dir>/<database>-<YYYYmmddTHHMMSSZ>[-N].dump[.enc].json   its manifest (written last)
//   <dir>/<...>.partial                                       in progress; never listed/restored
//
// A backup is "verified" when its manifest exists and its size matches: the manifest is written
// only after pg_restore read the whole dump back, and it carries the BLAKE2b checksum restore
// checks before touching a database.
#pragma once

#include <cstdint>
#include <ctime>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "usher/base/result.h"

namespace usher::ctl {

constexpr std::string_view kManifestFormat = "usherctl-backup-1";
constexpr std::string_view kManifestSuffix = ".json";
constexpr std::string_view kPartialSuffix = ".partial";

struct BackupManifest {
  std::string format{kManifestFormat};
  std::string database;
  std::string owner;    // the database owner role when dumped (restore recreates it so)
  std::string file;     // the dump's file name (no directory)
  int64_t created = 0;  // Unix seconds, UTC
  int64_t size = 0;     // bytes of `file` as stored
  std::string blake2b;  // hex BLAKE2b-256 of `file` as stored
  bool encrypted = false;
  int64_t tocEntries = 0;  // entries pg_restore --list reported
  std::string source;      // "host:port" or "compose:<service>"
  std::string pgDumpVersion;
};

std::string manifestToJson(const BackupManifest& m);
Result<BackupManifest> parseManifest(std::string_view json);

// "20250914T083000Z" for a UTC time.
std::string backupTimestamp(std::time_t t);
std::optional<std::time_t> parseBackupTimestamp(std::string_view stamp);
// "<database>-<stamp>.dump" (+ ".enc").
std::string backupFileName(std::string_view database, std::time_t t, bool encrypted);

// What a file name in the backup directory says about itself.
struct BackupName {
  std::string database;
  std::time_t created = 0;
  int sequence = 0;  // the N of "-N": later backups within the same second
  bool encrypted = false;
};
std::optional<BackupName> parseBackupFileName(std::string_view fileName);

// Retention: the newest backup of each of the `keepDaily` most recent days that have backups,
// and of each of the `keepWeekly` most recent ISO weeks, are kept; the newest backup overall is
// always kept. Returns the indexes into `times` (one database's backups) to keep.
std::set<size_t> selectRetained(const std::vector<std::time_t>& times, int keepDaily,
                                int keepWeekly);

// The command that produces the dump on stdout. Direct: pg_dump with host/port/user; compose:
// `docker compose [-f FILE] exec -T [-e PGPASSWORD] SERVICE pg_dump ...` (-T: no TTY, which
// would corrupt the binary stream).
struct DumpCommand {
  std::string pgDump = "pg_dump";
  std::string host;
  int port = 5432;
  std::string user;
  std::string database;
  std::string composeService;  // non-empty: run inside this compose service
  std::string composeFile;     // optional -f
  std::string docker = "docker";
  bool passPassword = false;  // compose: forward PGPASSWORD from our environment
};
std::vector<std::string> buildDumpArgv(const DumpCommand& c);

// "1.5 GiB" style sizes for people.
std::string humanSize(int64_t bytes);

// Lowercase hex.
std::string toHex(const unsigned char* data, size_t size);

}  // namespace usher::ctl
