// SCRAM-SHA-256 (RFC 5802 / RFC 7677) as PostgreSQL speaks it: server side for client logins,
// client side for logging in to PostgreSQL, and pass-through of a client's keys.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "usher/auth/secret.h"
#include "usher/base/result.h"

namespace usher::auth {

constexpr std::string_view kScramMechanism = "SCRAM-SHA-256";
constexpr int kDefaultScramIterations = 4096;

using Key32 = std::array<uint8_t, 32>;

// Derives StoredKey/ServerKey from a password (PBKDF2-HMAC-SHA-256). The password is used as
// given when it is ASCII; PostgreSQL's SASLprep is applied to the extent documented in scram.cpp.
ScramVerifier deriveVerifier(std::string_view password, std::string_view salt, int iterations);
// A verifier for a plaintext secret, with a fresh random 16-byte salt.
ScramVerifier makeVerifier(std::string_view password, int iterations = kDefaultScramIterations);
// "SCRAM-SHA-256$4096:<b64 salt>$<b64 StoredKey>:<b64 ServerKey>", as in pg_authid.
std::string formatVerifier(const ScramVerifier& v);

std::string base64Encode(std::string_view raw);
std::optional<std::string> base64Decode(std::string_view text);

// Server side of one exchange. Errors: 08P01 for malformed messages (the connection is closed),
// 28P01 for a wrong proof.
class ScramServer {
 public:
  explicit ScramServer(ScramVerifier verifier);
  // `nonceForTests`: fixed server nonce (tests only); normally random.
  ScramServer(ScramVerifier verifier, std::string nonceForTests);

  // client-first-message (the SASLInitialResponse data) -> server-first-message.
  Result<std::string> handleClientFirst(std::string_view message);
  // client-final-message -> server-final-message ("v=...").
  Result<std::string> handleClientFinal(std::string_view message);

  // Valid after a successful handleClientFinal: the ClientKey recovered from the client's proof,
  // which lets usher log in to PostgreSQL with the same verifier (pass-through).
  const Key32& clientKey() const { return clientKey_; }
  const ScramVerifier& verifier() const { return verifier_; }

 private:
  ScramVerifier verifier_;
  std::string serverNonce_;
  std::string clientFirstBare_;
  std::string serverFirst_;
  std::string combinedNonce_;
  char gs2Flag_ = 0;  // 'n' or 'y' from client-first; client-final's c= must repeat it
  Key32 clientKey_{};
};

// Client side, for usher's login to PostgreSQL.
class ScramClient {
 public:
  static ScramClient withPassword(std::string_view password);
  // Pass-through: keys recovered from a client's SCRAM login against the same verifier.
  static ScramClient withKeys(const Key32& clientKey, const Key32& serverKey);
  void setNonceForTests(std::string nonce) { clientNonce_ = std::move(nonce); }
  // Sends `user` in n= (tests only, to replay RFC 7677's example); libpq and usher send n= empty
  // because PostgreSQL takes the user from the startup packet.
  void setUserNameForTests(std::string user) { userName_ = std::move(user); }

  std::string clientFirst();  // "n,,n=,r=<nonce>"
  // server-first-message -> client-final-message. Errors are 08P01.
  Result<std::string> handleServerFirst(std::string_view message);
  // Checks the server signature in server-final-message.
  Result<void> handleServerFinal(std::string_view message);

 private:
  ScramClient() = default;
  std::string password_;
  std::optional<Key32> clientKey_;
  std::optional<Key32> serverKey_;
  std::string clientNonce_;
  std::string userName_;
  std::string clientFirstBare_;
  std::string expectedServerSignature_;
};

}  // namespace usher::auth
