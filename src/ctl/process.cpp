// Child processes: posix_spawn with explicit stdio (pipes, memfds for captured output), no shell.
#include "usher/ctl/process.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <utility>

extern char** environ;

namespace usher::ctl {
namespace {

std::string readAllFrom(int fd) {
  std::string out;
  if (fd < 0) return out;
  ::lseek(fd, 0, SEEK_SET);
  char buf[65536];
  while (true) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, size_t(n));
  }
  return out;
}

void closeFd(int& fd) {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

}  // namespace

std::string ProcessResult::status() const {
  if (termSignal != 0) {
    return "was killed by signal " + std::to_string(termSignal) + " (" + strsignal(termSignal) +
           ")";
  }
  return "exited with status " + std::to_string(exitCode);
}

std::string ProcessResult::errTail(size_t lines) const {
  std::string_view s = err;
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.remove_suffix(1);
  size_t pos = s.size();
  for (size_t n = 0; n < lines && pos != std::string_view::npos && pos > 0; ++n) {
    pos = s.rfind('\n', pos - 1);
  }
  if (pos == std::string_view::npos) pos = 0;
  std::string out(s.substr(pos));
  while (!out.empty() && out.front() == '\n') out.erase(0, 1);
  return out.empty() ? "(no error output)" : out;
}

Child::Child(Child&& o) noexcept
    : pid_(o.pid_),
      outPipe_(o.outPipe_),
      inPipe_(o.inPipe_),
      outMem_(o.outMem_),
      errMem_(o.errMem_) {
  o.pid_ = -1;
  o.outPipe_ = o.inPipe_ = o.outMem_ = o.errMem_ = -1;
}

Child& Child::operator=(Child&& o) noexcept {
  if (this != &o) {
    reset();
    pid_ = std::exchange(o.pid_, -1);
    outPipe_ = std::exchange(o.outPipe_, -1);
    inPipe_ = std::exchange(o.inPipe_, -1);
    outMem_ = std::exchange(o.outMem_, -1);
    errMem_ = std::exchange(o.errMem_, -1);
  }
  return *this;
}

Child::~Child() {
  reset();
}

void Child::reset() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    int st = 0;
    while (::waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
  }
  closeFds();
}

void Child::closeFds() {
  closeFd(outPipe_);
  closeFd(inPipe_);
  closeFd(outMem_);
  closeFd(errMem_);
}

void Child::closeStdin() {
  closeFd(inPipe_);
}

ProcessResult Child::wait() {
  ProcessResult r;
  closeFd(inPipe_);
  closeFd(outPipe_);
  if (pid_ > 0) {
    int st = 0;
    while (::waitpid(pid_, &st, 0) < 0) {
      if (errno != EINTR) break;
    }
    pid_ = -1;
    if (WIFSIGNALED(st)) {
      r.termSignal = WTERMSIG(st);
    } else if (WIFEXITED(st)) {
      r.exitCode = WEXITSTATUS(st);
    }
  }
  r.out = readAllFrom(outMem_);
  r.err = readAllFrom(errMem_);
  closeFds();
  return r;
}

Result<Child> spawnProcess(const ProcessSpec& spec) {
  if (spec.argv.empty()) return failPlain("no program to run");
  const std::string& program = spec.argv[0];

  // Environment: ours, minus unsetEnv, plus env.
  std::map<std::string, std::string> env;
  for (char** e = environ; e && *e; ++e) {
    std::string_view kv = *e;
    auto eq = kv.find('=');
    if (eq == std::string_view::npos) continue;
    env[std::string(kv.substr(0, eq))] = std::string(kv.substr(eq + 1));
  }
  for (const auto& k : spec.unsetEnv) env.erase(k);
  for (const auto& [k, v] : spec.env) env[k] = v;
  std::vector<std::string> envStrings;
  envStrings.reserve(env.size());
  for (const auto& [k, v] : env) envStrings.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& s : envStrings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> argvCopy = spec.argv;
  std::vector<char*> argv;
  for (auto& a : argvCopy) argv.push_back(a.data());
  argv.push_back(nullptr);

  Child child;
  int inPipe[2] = {-1, -1}, outPipe[2] = {-1, -1};
  auto failWith = [&](const std::string& what) {
    for (int fd : {inPipe[0], inPipe[1], outPipe[0], outPipe[1]}) {
      if (fd >= 0) ::close(fd);
    }
    for (auto& s : envStrings) std::fill(s.begin(), s.end(), '\0');  // PGPASSWORD
    return failPlain(what);
  };
  child.errMem_ = ::memfd_create("usherctl-stderr", MFD_CLOEXEC);
  if (child.errMem_ < 0) return failWith("memfd_create: " + std::string(strerror(errno)));
  if (spec.out == Stdio::Capture) {
    child.outMem_ = ::memfd_create("usherctl-stdout", MFD_CLOEXEC);
    if (child.outMem_ < 0) return failWith("memfd_create: " + std::string(strerror(errno)));
  }
  if (spec.in == Stdio::Pipe && ::pipe2(inPipe, O_CLOEXEC) != 0) {
    return failWith("pipe: " + std::string(strerror(errno)));
  }
  if (spec.out == Stdio::Pipe && ::pipe2(outPipe, O_CLOEXEC) != 0) {
    return failWith("pipe: " + std::string(strerror(errno)));
  }

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  if (spec.in == Stdio::Pipe) {
    posix_spawn_file_actions_adddup2(&fa, inPipe[0], 0);
  } else {
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  }
  if (spec.out == Stdio::Pipe) {
    posix_spawn_file_actions_adddup2(&fa, outPipe[1], 1);
  } else if (spec.out == Stdio::Capture) {
    posix_spawn_file_actions_adddup2(&fa, child.outMem_, 1);
  } else {
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  }
  posix_spawn_file_actions_adddup2(&fa, child.errMem_, 2);

  // The child starts with default signal dispositions (we ignore SIGPIPE; pg_dump should not).
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t defaults;
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGPIPE);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF);

  pid_t pid = -1;
  int rc = program.find('/') == std::string::npos
               ? posix_spawnp(&pid, program.c_str(), &fa, &attr, argv.data(), envp.data())
               : posix_spawn(&pid, program.c_str(), &fa, &attr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    std::string hint = rc == ENOENT ? " (not found: is it installed and on PATH?)" : "";
    return failWith("cannot run " + program + ": " + strerror(rc) + hint);
  }
  for (auto& s : envStrings) std::fill(s.begin(), s.end(), '\0');
  child.pid_ = pid;
  if (inPipe[0] >= 0) ::close(inPipe[0]);
  if (outPipe[1] >= 0) ::close(outPipe[1]);
  child.inPipe_ = inPipe[1];
  child.outPipe_ = outPipe[0];
  return child;
}

Result<ProcessResult> runProcess(const ProcessSpec& spec) {
  auto child = spawnProcess(spec);
  if (!child) return std::unexpected(child.error());
  return child->wait();
}

Result<void> writeAll(int fd, std::string_view data, const std::string& what) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return failPlain("write to " + what + ": " + strerror(errno));
    }
    data.remove_prefix(size_t(n));
  }
  return {};
}

}  // namespace usher::ctl
