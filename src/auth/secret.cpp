// Secret: classifying stored credentials (plain, md5, SCRAM verifier) and keeping them out of
// freed memory.
#include "usher/auth/secret.h"

#include <sodium.h>

#include <charconv>

#include "usher/auth/scram.h"

namespace usher::auth {
namespace {

constexpr std::string_view kScramPrefix = "SCRAM-SHA-256$";
constexpr size_t kMd5SecretLength = 35;  // "md5" + 32 hex digits

// PostgreSQL's get_password_type(): exactly "md5" followed by 32 lowercase hex digits.
bool isMd5Secret(std::string_view text) {
  if (text.size() != kMd5SecretLength || !text.starts_with("md5")) return false;
  for (char c : text.substr(3)) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

// "<iterations>:<b64 salt>$<b64 StoredKey>:<b64 ServerKey>" (after the prefix). The messages
// describe the defect without quoting the secret, since they end up in logs.
Result<ScramVerifier> parseScramVerifier(std::string_view body) {
  size_t colon = body.find(':');
  size_t dollar = body.find('$');
  if (colon == std::string_view::npos || dollar == std::string_view::npos || colon > dollar) {
    return failPlain(
        "malformed SCRAM secret: expected <iterations>:<salt>$<StoredKey>:<ServerKey>");
  }
  std::string_view iterText = body.substr(0, colon);
  std::string_view saltText = body.substr(colon + 1, dollar - colon - 1);
  std::string_view keys = body.substr(dollar + 1);
  size_t keyColon = keys.find(':');
  if (keyColon == std::string_view::npos) {
    return failPlain("malformed SCRAM secret: expected <StoredKey>:<ServerKey>");
  }
  ScramVerifier v;
  auto [end, ec] =
      std::from_chars(iterText.data(), iterText.data() + iterText.size(), v.iterations);
  if (ec != std::errc() || end != iterText.data() + iterText.size() || v.iterations <= 0) {
    return failPlain("malformed SCRAM secret: invalid iteration count");
  }
  auto salt = base64Decode(saltText);
  if (!salt || salt->empty()) return failPlain("malformed SCRAM secret: invalid salt");
  v.salt = std::move(*salt);
  auto decodeKey = [](std::string_view text, std::array<uint8_t, 32>& key) {
    auto raw = base64Decode(text);
    bool ok = raw && raw->size() == key.size();
    if (ok) std::copy(raw->begin(), raw->end(), key.begin());
    if (raw) wipeMemory(raw->data(), raw->size());
    return ok;
  };
  if (!decodeKey(keys.substr(0, keyColon), v.storedKey)) {
    return failPlain("malformed SCRAM secret: StoredKey is not 32 bytes of base64");
  }
  if (!decodeKey(keys.substr(keyColon + 1), v.serverKey)) {
    return failPlain("malformed SCRAM secret: ServerKey is not 32 bytes of base64");
  }
  return v;
}

}  // namespace

Secret::Secret(const Secret& other)
    : kind_(other.kind_), text_(other.text_), scram_(other.scram_) {}

Secret& Secret::operator=(const Secret& other) {
  if (this != &other) {
    wipe();
    kind_ = other.kind_;
    text_ = other.text_;
    scram_ = other.scram_;
  }
  return *this;
}

// Moving a short string copies its bytes out of the source's inline buffer and leaves them there,
// so the source is wiped too, not just emptied.
Secret::Secret(Secret&& other) noexcept
    : kind_(other.kind_), text_(std::move(other.text_)), scram_(std::move(other.scram_)) {
  other.wipe();
}

Secret& Secret::operator=(Secret&& other) noexcept {
  if (this != &other) {
    wipe();
    kind_ = other.kind_;
    text_ = std::move(other.text_);
    scram_ = std::move(other.scram_);
    other.wipe();
  }
  return *this;
}

Secret::~Secret() {
  wipe();
}

void Secret::wipe() {
  // Grow to the full capacity first so every byte the string owns (including what a shorter
  // assignment left behind) is inside size() and gets overwritten.
  text_.resize(text_.capacity());
  wipeMemory(text_.data(), text_.size());
  text_.clear();
  scram_.salt.resize(scram_.salt.capacity());
  wipeMemory(scram_.salt.data(), scram_.salt.size());
  scram_.salt.clear();
  wipeMemory(scram_.storedKey.data(), scram_.storedKey.size());
  wipeMemory(scram_.serverKey.data(), scram_.serverKey.size());
  scram_.iterations = 0;
  kind_ = SecretKind::None;
}

Result<Secret> Secret::parse(std::string_view text) {
  Secret s;
  s.text_ = std::string(text);
  if (isMd5Secret(text)) {
    s.kind_ = SecretKind::Md5;
  } else if (text.starts_with(kScramPrefix)) {
    // PostgreSQL would fall back to treating this as a plaintext password; for an auth file that
    // is almost certainly a copy-paste accident, so it is reported instead.
    auto verifier = parseScramVerifier(text.substr(kScramPrefix.size()));
    if (!verifier) return std::unexpected(std::move(verifier.error()));
    s.kind_ = SecretKind::Scram;
    s.scram_ = std::move(*verifier);
  } else {
    s.kind_ = SecretKind::Plain;
  }
  return s;
}

Secret Secret::plain(std::string_view password) {
  Secret s;
  s.kind_ = SecretKind::Plain;
  s.text_ = std::string(password);
  return s;
}

bool constantTimeEqual(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  if (a.empty()) return true;
  return sodium_memcmp(a.data(), b.data(), a.size()) == 0;
}

void wipeMemory(void* p, size_t n) {
  if (n) sodium_memzero(p, n);
}

}  // namespace usher::auth
