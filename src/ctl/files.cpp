// File helpers: reading, atomic replacement (temp + fsync + rename + directory fsync), modes.
#include "usher/ctl/files.h"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "usher/ctl/process.h"

namespace usher::ctl {

std::string errnoText(int err) {
  return std::strerror(err);
}

Result<std::string> readTextFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return failPlain("cannot read " + path + ": " + errnoText(errno));
  std::string out;
  char buf[65536];
  while (true) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      return failPlain("cannot read " + path + ": " + errnoText(err));
    }
    if (n == 0) break;
    out.append(buf, size_t(n));
  }
  ::close(fd);
  return out;
}

std::string parentDir(const std::string& path) {
  auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::string baseName(const std::string& path) {
  auto slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

std::string joinPath(const std::string& dir, const std::string& name) {
  if (dir.empty()) return name;
  if (!name.empty() && name[0] == '/') return name;
  return dir.back() == '/' ? dir + name : dir + "/" + name;
}

std::optional<mode_t> fileMode(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return std::nullopt;
  return st.st_mode & 07777;
}

bool fileExists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

Result<void> fsyncPath(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return failPlain("cannot open " + path + " to fsync: " + errnoText(errno));
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) return failPlain("fsync " + path + ": " + errnoText(err));
  return {};
}

Result<void> fsyncParentDir(const std::string& path) {
  return fsyncPath(parentDir(path));
}

Result<void> ensureDirectory(const std::string& dir, mode_t mode) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode)) return failPlain(dir + " exists and is not a directory");
    return {};
  }
  if (::mkdir(dir.c_str(), mode) != 0 && errno != EEXIST) {
    return failPlain("cannot create directory " + dir + ": " + errnoText(errno));
  }
  return {};
}

Result<void> atomicWriteFile(const std::string& path, std::string_view content,
                             std::optional<mode_t> mode) {
  struct stat old {};
  const bool exists = ::stat(path.c_str(), &old) == 0;
  const mode_t finalMode = mode ? *mode : (exists ? (old.st_mode & 07777) : 0644);

  [[maybe_unused]] static const int initialized = sodium_init();
  unsigned char rnd[6];
  randombytes_buf(rnd, sizeof rnd);
  char suffix[32];
  std::snprintf(suffix, sizeof suffix, ".%d.%02x%02x%02x%02x%02x%02x.tmp", int(::getpid()), rnd[0],
                rnd[1], rnd[2], rnd[3], rnd[4], rnd[5]);
  const std::string tmp = joinPath(parentDir(path), "." + baseName(path) + suffix);

  // O_EXCL with the final mode from the start: a secret is never readable by others, not even
  // for the moment between create and chmod.
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, finalMode);
  if (fd < 0) return failPlain("cannot create " + tmp + ": " + errnoText(errno));
  auto cleanup = [&](const std::string& message) {
    ::close(fd);
    ::unlink(tmp.c_str());
    return failPlain(message);
  };
  if (::fchmod(fd, finalMode) != 0) return cleanup("chmod " + tmp + ": " + errnoText(errno));
  if (exists && !mode && ::geteuid() == 0) {
    // Keep the owner of a file we replace (usher may run as another user and must read it).
    if (::fchown(fd, old.st_uid, old.st_gid) != 0) {
      return cleanup("chown " + tmp + ": " + errnoText(errno));
    }
  }
  if (auto ok = writeAll(fd, content, tmp); !ok) return cleanup(ok.error().message);
  if (::fsync(fd) != 0) return cleanup("fsync " + tmp + ": " + errnoText(errno));
  if (::close(fd) != 0) {
    ::unlink(tmp.c_str());
    return failPlain("close " + tmp + ": " + errnoText(errno));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return failPlain("cannot rename " + tmp + " to " + path + ": " + errnoText(err));
  }
  return fsyncParentDir(path);
}

}  // namespace usher::ctl
