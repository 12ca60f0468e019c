// Backup encryption at rest: libsodium secretstream in length-framed chunks.
#include "usher/ctl/crypto_stream.h"

#include <cctype>

#include "usher/auth/scram.h"
#include "usher/ctl/files.h"

namespace usher::ctl {
namespace {

constexpr size_t kHeaderBytes = crypto_secretstream_xchacha20poly1305_HEADERBYTES;
constexpr size_t kTagBytes = crypto_secretstream_xchacha20poly1305_ABYTES;
constexpr size_t kMaxCipherChunk = kPlainChunk + kTagBytes;

void putU32(std::string& out, uint32_t v) {
  out.push_back(char(v >> 24));
  out.push_back(char(v >> 16));
  out.push_back(char(v >> 8));
  out.push_back(char(v));
}

uint32_t getU32(std::string_view s) {
  auto b = [&](size_t i) { return uint32_t(static_cast<unsigned char>(s[i])); };
  return b(0) << 24 | b(1) << 16 | b(2) << 8 | b(3);
}

}  // namespace

Result<EncryptionKey> loadEncryptionKey(const std::string& path) {
  auto text = readTextFile(path);
  if (!text) return std::unexpected(text.error());
  EncryptionKey key{};
  std::string& s = *text;
  if (s.size() == kEncryptionKeyBytes) {
    std::copy(s.begin(), s.end(), key.begin());
    sodium_memzero(s.data(), s.size());
    return key;
  }
  std::string_view t = s;
  while (!t.empty() && std::isspace(static_cast<unsigned char>(t.back()))) t.remove_suffix(1);
  while (!t.empty() && std::isspace(static_cast<unsigned char>(t.front()))) t.remove_prefix(1);
  size_t binLen = 0;
  if (t.size() == 2 * kEncryptionKeyBytes &&
      sodium_hex2bin(key.data(), key.size(), t.data(), t.size(), nullptr, &binLen, nullptr) == 0 &&
      binLen == key.size()) {
    sodium_memzero(s.data(), s.size());
    return key;
  }
  if (auto raw = auth::base64Decode(t); raw && raw->size() == kEncryptionKeyBytes) {
    std::copy(raw->begin(), raw->end(), key.begin());
    sodium_memzero(raw->data(), raw->size());
    sodium_memzero(s.data(), s.size());
    return key;
  }
  sodium_memzero(s.data(), s.size());
  return failPlain("encryption key file " + path +
                   " must hold 32 random bytes (raw, 64 hex digits or base64); create one with: "
                   "head -c 32 /dev/urandom > KEYFILE && chmod 600 KEYFILE");
}

Encryptor::Encryptor(const EncryptionKey& key) : key_(key) {}
Encryptor::~Encryptor() {
  sodium_memzero(&state_, sizeof state_);
  sodium_memzero(key_.data(), key_.size());
}

std::string Encryptor::begin() {
  unsigned char header[kHeaderBytes];
  crypto_secretstream_xchacha20poly1305_init_push(&state_, header, key_.data());
  std::string out(kEncryptedMagic);
  out.append(reinterpret_cast<const char*>(header), sizeof header);
  return out;
}

std::string Encryptor::sealChunk(std::string_view plain, bool final) {
  std::string out;
  out.resize(4 + plain.size() + kTagBytes);
  unsigned long long clen = 0;
  crypto_secretstream_xchacha20poly1305_push(
      &state_, reinterpret_cast<unsigned char*>(out.data() + 4), &clen,
      reinterpret_cast<const unsigned char*>(plain.data()), plain.size(), nullptr, 0,
      final ? crypto_secretstream_xchacha20poly1305_TAG_FINAL : 0);
  std::string len;
  putU32(len, uint32_t(clen));
  out.replace(0, 4, len);
  out.resize(4 + clen);
  return out;
}

std::string Encryptor::update(std::string_view plain) {
  pending_.append(plain);
  std::string out;
  size_t pos = 0;
  // Keep at least one byte back so finish() always has the final chunk to seal (even empty).
  while (pending_.size() - pos > kPlainChunk) {
    out += sealChunk(std::string_view(pending_).substr(pos, kPlainChunk), false);
    pos += kPlainChunk;
  }
  pending_.erase(0, pos);
  return out;
}

std::string Encryptor::finish() {
  std::string out = sealChunk(pending_, true);
  sodium_memzero(pending_.data(), pending_.size());
  pending_.clear();
  return out;
}

Decryptor::Decryptor(const EncryptionKey& key) : key_(key) {}
Decryptor::~Decryptor() {
  sodium_memzero(&state_, sizeof state_);
  sodium_memzero(key_.data(), key_.size());
}

Result<std::string> Decryptor::update(std::string_view data) {
  buffer_.append(data);
  std::string plain;
  size_t pos = 0;
  if (!headerDone_) {
    if (buffer_.size() < kEncryptedMagic.size() + kHeaderBytes) return plain;
    if (std::string_view(buffer_).substr(0, kEncryptedMagic.size()) != kEncryptedMagic) {
      return failPlain("not an usherctl encrypted backup (bad magic)");
    }
    const auto* header =
        reinterpret_cast<const unsigned char*>(buffer_.data() + kEncryptedMagic.size());
    if (crypto_secretstream_xchacha20poly1305_init_pull(&state_, header, key_.data()) != 0) {
      return failPlain("encrypted backup has an invalid header");
    }
    headerDone_ = true;
    pos = kEncryptedMagic.size() + kHeaderBytes;
  }
  while (buffer_.size() - pos >= 4) {
    const uint32_t clen = getU32(std::string_view(buffer_).substr(pos, 4));
    if (clen < kTagBytes || clen > kMaxCipherChunk) {
      return failPlain("encrypted backup is corrupt (bad chunk length)");
    }
    if (buffer_.size() - pos - 4 < clen) break;
    if (finalSeen_) return failPlain("encrypted backup has data after its final chunk");
    std::string chunk(clen - kTagBytes, '\0');
    unsigned long long mlen = 0;
    unsigned char tag = 0;
    if (crypto_secretstream_xchacha20poly1305_pull(
            &state_, reinterpret_cast<unsigned char*>(chunk.data()), &mlen, &tag,
            reinterpret_cast<const unsigned char*>(buffer_.data() + pos + 4), clen, nullptr,
            0) != 0) {
      return failPlain("decryption failed: wrong key, or the backup was modified or is corrupt");
    }
    chunk.resize(mlen);
    plain += chunk;
    pos += 4 + clen;
    if (tag == crypto_secretstream_xchacha20poly1305_TAG_FINAL) finalSeen_ = true;
  }
  buffer_.erase(0, pos);
  if (finalSeen_ && !buffer_.empty() && buffer_.size() >= 4) {
    return failPlain("encrypted backup has data after its final chunk");
  }
  return plain;
}

Result<void> Decryptor::finish() const {
  if (!headerDone_) return failPlain("encrypted backup is truncated (no header)");
  if (!finalSeen_) return failPlain("encrypted backup is truncated (no final chunk)");
  if (!buffer_.empty()) return failPlain("encrypted backup has data after its final chunk");
  return {};
}

}  // namespace usher::ctl
