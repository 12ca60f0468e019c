// File helpers for usherctl: reading, atomic replacement (temp + fsync + rename) and modes.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <string_view>

#include "usher/base/result.h"

namespace usher::ctl {

Result<std::string> readTextFile(const std::string& path);

// Replaces `path` with `content` atomically: a temp file in the same directory created with
// O_EXCL and `mode` (default: the existing file's mode and owner, else 0644), fsync, rename over
// `path`, fsync the directory. A reader sees the old or the new content, never a mix.
Result<void> atomicWriteFile(const std::string& path, std::string_view content,
                             std::optional<mode_t> mode = std::nullopt);

Result<void> fsyncPath(const std::string& path);  // a file or a directory
Result<void> fsyncParentDir(const std::string& path);

std::string parentDir(const std::string& path);  // "." for a bare name
std::string baseName(const std::string& path);
std::string joinPath(const std::string& dir, const std::string& name);

// Permission bits of `path` (stat, following symlinks), or nullopt when it does not exist.
std::optional<mode_t> fileMode(const std::string& path);
bool fileExists(const std::string& path);

// Creates `dir` (one level) with `mode` when it does not exist.
Result<void> ensureDirectory(const std::string& dir, mode_t mode);

// "strerror(errno)" in one place, for messages that name a path.
std::string errnoText(int err);

}  // namespace usher::ctl
