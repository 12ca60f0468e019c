// Tenant passwords: generation from libsodium, the weak-password rules, and audit candidates.
#pragma once

#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace usher::ctl {

constexpr size_t kGeneratedPasswordLength = 40;
constexpr size_t kMinPasswordLength = 16;

// A random password of `length` characters from the URL-safe alphabet [A-Za-z0-9-_] (6 bits per
// character, no modulo bias): safe in URLs, env files and connection strings without quoting.
std::string generatePassword(size_t length = kGeneratedPasswordLength);

// Why `password` is too weak for role `user`, or nullopt when it is acceptable. Rules: not in the
// built-in list of common passwords, not the user name (or the user name without its _user
// suffix), not a port number like 6432, at least kMinPasswordLength characters.
std::optional<std::string> passwordWeakness(std::string_view password, std::string_view user);

// The built-in list of trivially weak passwords (lowercase; matched case-insensitively).
std::span<const std::string_view> builtinWeakPasswords();

// What audit tries against a role's stored verifier: the built-in list, the role name and its
// obvious variants, and the platform's port numbers. Deduplicated, in a stable order.
std::vector<std::string> weakPasswordCandidates(std::string_view role);

// Whether `password` is the one behind `stored` (pg_authid.rolpassword or a userlist secret): a
// SCRAM-SHA-256 verifier is re-derived with its own salt and iterations, an md5 hash recomputed
// for `role`, a plaintext compared. Constant time for a given stored secret.
bool passwordMatches(std::string_view password, std::string_view role, std::string_view stored);

}  // namespace usher::ctl
