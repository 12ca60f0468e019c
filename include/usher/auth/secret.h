// Secret: a stored credential (plaintext, md5 hash or SCRAM-SHA-256 verifier), zeroed on
// destruction.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "usher/base/result.h"

namespace usher::auth {

struct ScramVerifier {
  int iterations = 0;
  std::string salt;  // raw bytes (not base64)
  std::array<uint8_t, 32> storedKey{};
  std::array<uint8_t, 32> serverKey{};
};

enum class SecretKind { None, Plain, Md5, Scram };

class Secret {
 public:
  Secret() = default;
  Secret(const Secret&);
  Secret& operator=(const Secret&);
  Secret(Secret&&) noexcept;
  Secret& operator=(Secret&&) noexcept;
  ~Secret();

  // Classifies stored text the way PostgreSQL and PgBouncer do: "md5" + 32 hex digits is an md5
  // hash, "SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>" a verifier, anything else (even
  // empty) a plaintext password. A malformed SCRAM string is an error, not a plaintext password.
  static Result<Secret> parse(std::string_view text);
  static Secret plain(std::string_view password);

  SecretKind kind() const { return kind_; }
  bool empty() const { return kind_ == SecretKind::None; }
  // Plain: the password. Md5: the "md5..." string. Scram: the verifier text. Never log it.
  const std::string& text() const { return text_; }
  const ScramVerifier& scram() const { return scram_; }

 private:
  void wipe();
  SecretKind kind_ = SecretKind::None;
  std::string text_;
  ScramVerifier scram_;
};

// Constant-time equality for equal-length inputs (false, in time independent of content, if the
// lengths differ).
bool constantTimeEqual(std::string_view a, std::string_view b);

// Overwrites memory so the compiler cannot drop the store (libsodium's sodium_memzero).
void wipeMemory(void* p, size_t n);

}  // namespace usher::auth
