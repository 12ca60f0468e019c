// The backup directory as a store: listing backups with their manifests, checking a backup's
// checksum, and finding the freshest verified backup of a database.
#pragma once

#include <ctime>
#include <optional>
#include <string>
#include <vector>

#include "usher/base/result.h"
#include "usher/ctl/backup_format.h"

namespace usher::ctl {

struct StoredBackup {
  std::string path;          // the dump file
  std::string manifestPath;  // path + ".json"
  BackupName name;           // from the file name
  std::optional<BackupManifest> manifest;
  int64_t size = 0;  // on disk
  // "verified": manifest present and matching size; otherwise why not ("no manifest", ...).
  std::string status;
  bool verified() const { return status == "verified"; }
};

// Every backup file in `dir` (".partial" files skipped), newest first. A missing directory is
// an empty list.
Result<std::vector<StoredBackup>> listBackups(const std::string& dir);

// Recomputes the BLAKE2b of the file and compares size and checksum with the manifest.
Result<void> verifyChecksum(const StoredBackup& b);

// The newest verified backup of `database` created at or after `notBefore`.
std::optional<StoredBackup> freshestVerifiedBackup(const std::vector<StoredBackup>& all,
                                                   const std::string& database,
                                                   std::time_t notBefore);

}  // namespace usher::ctl
