// Tenant passwords: libsodium generation, the weak-password rules, and what audit tries.
#include "usher/ctl/password.h"

#include <sodium.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>

#include "usher/auth/md5.h"
#include "usher/auth/scram.h"
#include "usher/auth/secret.h"

namespace usher::ctl {
namespace {

// Lowercase. What operators actually set, including the platform's own history ("6432").
constexpr std::array<std::string_view, 40> kWeak = {
    "password",   "password1", "password123", "passw0rd",      "p@ssw0rd",  "postgres",
    "postgresql", "admin",     "admin123",    "administrator", "root",      "secret",
    "changeme",   "change_me", "letmein",     "welcome",       "default",   "pass",
    "test",       "testing",   "qwerty",      "qwerty123",     "abc123",    "123456",
    "1234567",    "12345678",  "123456789",   "1234567890",    "111111",    "000000",
    "iloveyou",   "pgbouncer", "usher",       "trading",       "librarian", "platform",
    "database",   "db",        "user",        "guest",
};

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = char(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool isPortNumber(std::string_view s) {
  if (s.empty() || s.size() > 5) return false;
  int v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() && end == s.data() + s.size() && v >= 1 && v <= 65535;
}

std::string withoutUserSuffix(std::string_view user) {
  for (std::string_view suffix : {"_app_user", "_user", "_app"}) {
    if (user.size() > suffix.size() && user.ends_with(suffix)) {
      return std::string(user.substr(0, user.size() - suffix.size()));
    }
  }
  return std::string(user);
}

}  // namespace

std::string generatePassword(size_t length) {
  static constexpr std::string_view kAlphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  static_assert(kAlphabet.size() == 64);
  [[maybe_unused]] static const int initialized = sodium_init();
  std::string raw(length, '\0');
  randombytes_buf(raw.data(), raw.size());
  std::string out(length, '\0');
  // 64 symbols: the low 6 bits of a uniform byte are uniform, so there is no modulo bias.
  for (size_t i = 0; i < length; ++i) out[i] = kAlphabet[static_cast<unsigned char>(raw[i]) & 63];
  sodium_memzero(raw.data(), raw.size());
  return out;
}

std::optional<std::string> passwordWeakness(std::string_view password, std::string_view user) {
  const std::string pw = lower(password);
  if (std::find(kWeak.begin(), kWeak.end(), pw) != kWeak.end()) {
    return "it is in the built-in list of common passwords";
  }
  if (!user.empty() && (pw == lower(user) || pw == lower(withoutUserSuffix(user)))) {
    return "it is the user name";
  }
  if (isPortNumber(password)) {
    return "it is a port number (" + std::string(password) + ")";
  }
  if (password.size() < kMinPasswordLength) {
    return "it is shorter than " + std::to_string(kMinPasswordLength) + " characters";
  }
  return std::nullopt;
}

std::span<const std::string_view> builtinWeakPasswords() {
  return kWeak;
}

std::vector<std::string> weakPasswordCandidates(std::string_view role) {
  std::vector<std::string> out;
  auto add = [&out](std::string s) {
    if (!s.empty() && std::find(out.begin(), out.end(), s) == out.end())
      out.push_back(std::move(s));
  };
  // Ports first: the platform's known incident is a password equal to 6432.
  for (std::string_view port : {"6432", "5432", "6379", "5433", "8080"}) add(std::string(port));
  add(std::string(role));
  add(lower(role));
  const std::string base = withoutUserSuffix(role);
  add(base);
  add(base + "123");
  add(std::string(role) + "123");
  add(base + "_password");
  for (std::string_view w : kWeak) {
    add(std::string(w));
    // Capitalised variants of the list ("Password1", "Admin123") are what policies push people to.
    std::string cap(w);
    cap[0] = char(std::toupper(static_cast<unsigned char>(cap[0])));
    add(std::move(cap));
  }
  return out;
}

bool passwordMatches(std::string_view password, std::string_view role, std::string_view stored) {
  auto secret = auth::Secret::parse(stored);
  if (!secret) return false;
  switch (secret->kind()) {
    case auth::SecretKind::Scram: {
      const auth::ScramVerifier& v = secret->scram();
      if (v.iterations <= 0 || v.iterations > 10'000'000) return false;
      const auth::ScramVerifier d = auth::deriveVerifier(password, v.salt, v.iterations);
      return sodium_memcmp(d.storedKey.data(), v.storedKey.data(), v.storedKey.size()) == 0;
    }
    case auth::SecretKind::Md5:
      return auth::constantTimeEqual(auth::md5StoredHash(password, role), secret->text());
    case auth::SecretKind::Plain:
      return auth::constantTimeEqual(password, secret->text());
    case auth::SecretKind::None:
      return false;
  }
  return false;
}

}  // namespace usher::ctl
