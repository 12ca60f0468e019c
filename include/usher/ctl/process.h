// Child processes for usherctl (pg_dump, pg_restore, pgbench, docker): posix_spawn, no shell.
#pragma once

#include <sys/types.h>

#include <string>
#include <utility>
#include <vector>

#include "usher/base/result.h"

namespace usher::ctl {

// What to connect a child's stdin/stdout to.
enum class Stdio {
  Null,     // /dev/null
  Pipe,     // a pipe we read (stdout) or write (stdin)
  Capture,  // stdout only: kept in memory (a memfd), read after the child exits
};

struct ProcessSpec {
  std::vector<std::string> argv;  // argv[0] is looked up on PATH when it has no '/'
  // Set (or, with an empty value and unset=true, removed) on top of our environment.
  std::vector<std::pair<std::string, std::string>> env;
  std::vector<std::string> unsetEnv;
  Stdio in = Stdio::Null;
  Stdio out = Stdio::Capture;
};

struct ProcessResult {
  int exitCode = -1;   // valid when termSignal == 0
  int termSignal = 0;  // the signal that killed it
  std::string out;     // captured stdout (Stdio::Capture)
  std::string err;     // captured stderr (always)
  bool ok() const { return termSignal == 0 && exitCode == 0; }
  // "exited with status 1" / "was killed by signal 9 (Killed)"
  std::string status() const;
  // The last `lines` lines of stderr, trimmed, for error messages.
  std::string errTail(size_t lines = 5) const;
};

// A running child. Destroying a Child that was not waited for kills and reaps it.
class Child {
 public:
  Child() = default;
  Child(Child&& o) noexcept;
  Child& operator=(Child&& o) noexcept;
  ~Child();

  pid_t pid() const { return pid_; }
  int stdoutFd() const { return outPipe_; }  // Stdio::Pipe: read until EOF
  int stdinFd() const { return inPipe_; }    // Stdio::Pipe: write, then closeStdin()
  void closeStdin();
  // Closes our pipe ends, reaps the child and collects captured output.
  ProcessResult wait();

 private:
  friend Result<Child> spawnProcess(const ProcessSpec& spec);
  void closeFds();
  void reset();  // kills and reaps a child not waited for, closes everything
  pid_t pid_ = -1;
  int outPipe_ = -1;
  int inPipe_ = -1;
  int outMem_ = -1;
  int errMem_ = -1;
};

Result<Child> spawnProcess(const ProcessSpec& spec);

// Runs to completion with stdout captured. Errors only when the program could not be started.
Result<ProcessResult> runProcess(const ProcessSpec& spec);

// Writes all of `data` to `fd` (retrying on EINTR / short writes).
Result<void> writeAll(int fd, std::string_view data, const std::string& what);

}  // namespace usher::ctl
