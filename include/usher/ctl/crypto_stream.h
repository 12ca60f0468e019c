// Encryption at rest for backups: libsodium secretstream (XChaCha20-Poly1305) in framed chunks.
//
//   "USHERENC1\n" | secretstream header (24 bytes) | { u32 big-endian length | ciphertext }*
//
// Each chunk holds up to kPlainChunk plaintext bytes; the last carries TAG_FINAL, so a truncated
// file is detected (no final tag) as well as a modified one (authentication fails).
#pragma once

#include <sodium.h>

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "usher/base/result.h"

namespace usher::ctl {

constexpr size_t kEncryptionKeyBytes = 32;
constexpr size_t kPlainChunk = 64 * 1024;
constexpr std::string_view kEncryptedMagic = "USHERENC1\n";

using EncryptionKey = std::array<unsigned char, kEncryptionKeyBytes>;

// Reads a key file: 32 raw bytes, or 64 hex digits, or base64 of 32 bytes (surrounding
// whitespace ignored).
Result<EncryptionKey> loadEncryptionKey(const std::string& path);

// Push side: feed plaintext, get framed ciphertext to append to the file.
class Encryptor {
 public:
  explicit Encryptor(const EncryptionKey& key);
  ~Encryptor();
  // The magic and header: written first.
  std::string begin();
  // Buffers plaintext and returns whole chunks ready for the file.
  std::string update(std::string_view plain);
  // The last (final-tagged) chunk.
  std::string finish();

 private:
  std::string sealChunk(std::string_view plain, bool final);
  crypto_secretstream_xchacha20poly1305_state state_;
  EncryptionKey key_;
  std::string pending_;
};

// Pull side: feed file bytes in any split, get plaintext. finish() fails unless the final chunk
// was seen and nothing followed it.
class Decryptor {
 public:
  explicit Decryptor(const EncryptionKey& key);
  ~Decryptor();
  Result<std::string> update(std::string_view data);
  Result<void> finish() const;

 private:
  crypto_secretstream_xchacha20poly1305_state state_;
  EncryptionKey key_;
  std::string buffer_;
  bool headerDone_ = false;
  bool finalSeen_ = false;
};

}  // namespace usher::ctl
