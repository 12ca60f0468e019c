// auth_file (PgBouncer's userlist.txt): parsing `"user" "secret"` lines into secrets.
#include "usher/auth/auth_file.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <optional>

#include <sys/stat.h>

namespace usher::auth {
namespace {

bool isBlank(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}

void skipBlanks(std::string_view& s) {
  while (!s.empty() && isBlank(s.front())) s.remove_prefix(1);
}

// A double-quoted field; `""` inside stands for one quote. Consumes it from `s`.
std::optional<std::string> readQuoted(std::string_view& s) {
  if (s.empty() || s.front() != '"') return std::nullopt;
  std::string out;
  size_t i = 1;
  while (i < s.size()) {
    if (s[i] == '"') {
      if (i + 1 < s.size() && s[i + 1] == '"') {
        out.push_back('"');
        i += 2;
        continue;
      }
      s.remove_prefix(i + 1);
      return out;
    }
    out.push_back(s[i++]);
  }
  wipeMemory(out.data(), out.size());  // unterminated: may hold part of a password
  return std::nullopt;
}

void wipeString(std::string& s) {
  s.resize(s.capacity());
  wipeMemory(s.data(), s.size());
  s.clear();
}

}  // namespace

Result<AuthFile> parseAuthFile(std::string_view text, std::string_view pathForErrors) {
  AuthFile users;
  size_t lineNumber = 0;
  while (!text.empty()) {
    ++lineNumber;
    size_t newline = text.find('\n');
    std::string_view line = text.substr(0, newline);
    text = newline == std::string_view::npos ? std::string_view{} : text.substr(newline + 1);

    skipBlanks(line);
    if (line.empty() || line.front() == ';' || line.front() == '#') continue;

    // Errors quote the path and line, never the line itself: it holds a password.
    auto where = std::string(pathForErrors) + ":" + std::to_string(lineNumber) + ": ";
    auto name = readQuoted(line);
    std::optional<std::string> password;
    if (name) {
      // The separator is required: `"a""b"` is the single field a"b.
      bool separated = !line.empty() && isBlank(line.front());
      skipBlanks(line);
      if (separated) password = readQuoted(line);
    }
    // Anything after the second field (PgBouncer ignores further fields) is ignored.
    if (!name || !password) {
      if (password) wipeString(*password);
      return failPlain(where + "invalid line in auth file: expected \"user\" \"password\"");
    }
    if (name->empty()) {
      wipeString(*password);
      return failPlain(where + "empty user name in auth file");
    }
    auto secret = Secret::parse(*password);
    wipeString(*password);
    if (!secret) {
      return failPlain(where + "invalid secret for user \"" + *name +
                       "\": " + secret.error().message);
    }
    // A later line for the same user replaces the earlier one, as in PgBouncer.
    users.insert_or_assign(std::move(*name), std::move(*secret));
  }
  return users;
}

Result<AuthFile> loadAuthFile(const std::string& path) {
  auto cannotRead = [&path](int err) {
    return failPlain("cannot read auth file " + path + ": " + std::strerror(err));
  };
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return cannotRead(errno);
  std::string text;
  // Reserve the whole file up front: growing would leave copies of the secrets in freed memory.
  struct stat st {};
  if (::fstat(::fileno(f), &st) == 0 && st.st_size > 0) text.reserve(size_t(st.st_size) + 1);
  char chunk[4096];
  size_t n;
  while ((n = std::fread(chunk, 1, sizeof chunk, f)) > 0) text.append(chunk, n);
  int readError = std::ferror(f) ? errno : 0;
  std::fclose(f);
  wipeMemory(chunk, sizeof chunk);
  if (readError) {
    wipeString(text);
    return cannotRead(readError);
  }
  auto parsed = parseAuthFile(text, path);
  wipeString(text);
  return parsed;
}

}  // namespace usher::auth
