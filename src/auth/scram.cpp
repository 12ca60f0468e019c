// SCRAM-SHA-256 (RFC 5802 / RFC 7677) as PostgreSQL speaks it: verifiers, the server side of a
// client's login, the client side of usher's login to PostgreSQL, and base64.
//
// SASLprep limitation: PostgreSQL normalizes passwords with SASLprep (RFC 4013) and, when a
// password is not valid UTF-8 or SASLprep rejects it, uses the raw bytes instead. usher does not
// implement SASLprep: every password is used as raw bytes. That is exact for ASCII passwords (the
// common case, SASLprep leaves them unchanged) and for the passwords SASLprep refuses; a non-ASCII
// password that SASLprep would change (e.g. one with non-NFKC characters or mapped spaces) derives
// a different verifier than PostgreSQL's, and the login fails rather than succeeding wrongly.
#include "usher/auth/scram.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <sodium.h>

#include <charconv>

namespace usher::auth {
namespace {

constexpr std::string_view kProtocolViolation = "08P01";
constexpr std::string_view kInvalidPassword = "28P01";
constexpr size_t kRawNonceLength = 18;  // PostgreSQL's SCRAM_RAW_NONCE_LEN
constexpr size_t kSaltLength = 16;      // PostgreSQL's SCRAM_DEFAULT_SALT_LEN

std::unexpected<Error> malformed(std::string_view what) {
  return fail(std::string(kProtocolViolation), "malformed SCRAM message: " + std::string(what));
}

void randomBytes(void* p, size_t n) {
  // sodium_init() is idempotent and thread-safe; the static runs it once per process.
  [[maybe_unused]] static const int initialized = sodium_init();
  randombytes_buf(p, n);
}

std::string randomNonce() {
  uint8_t raw[kRawNonceLength];
  randomBytes(raw, sizeof raw);
  return base64Encode(std::string_view(reinterpret_cast<const char*>(raw), sizeof raw));
}

std::string_view asText(const Key32& key) {
  return {reinterpret_cast<const char*>(key.data()), key.size()};
}

Key32 hmacSha256(std::string_view key, std::string_view message) {
  Key32 out{};
  unsigned int length = 0;
  HMAC(EVP_sha256(), key.data(), int(key.size()),
       reinterpret_cast<const unsigned char*>(message.data()), message.size(), out.data(), &length);
  return out;
}

Key32 sha256(const Key32& input) {
  Key32 out{};
  SHA256(input.data(), input.size(), out.data());
  return out;
}

Key32 saltedPassword(std::string_view password, std::string_view salt, int iterations) {
  Key32 out{};
  PKCS5_PBKDF2_HMAC(password.data(), int(password.size()),
                    reinterpret_cast<const unsigned char*>(salt.data()), int(salt.size()),
                    iterations, EVP_sha256(), int(out.size()), out.data());
  return out;
}

// The printable characters RFC 5802 allows in a nonce: %x21-2B / %x2D-7E (no comma).
bool isPrintableNonce(std::string_view nonce) {
  for (char c : nonce) {
    auto u = static_cast<unsigned char>(c);
    if (u < 0x21 || u > 0x7e || c == ',') return false;
  }
  return true;
}

// Walks the comma-separated "a=value" attributes of a SCRAM message. Values never contain a
// comma (names escape it as =2C, base64 and nonces cannot hold one), so splitting is exact.
class Attributes {
 public:
  explicit Attributes(std::string_view message) : rest_(message) {}
  bool done() const { return finished_; }
  std::string_view rest() const { return rest_; }

  // The next attribute, which must be `expected` (any letter when 0).
  Result<std::pair<char, std::string_view>> next(char expected) {
    if (finished_) {
      if (expected) return malformed(std::string("attribute \"") + expected + "\" expected");
      return malformed("attribute expected");
    }
    size_t comma = rest_.find(',');
    std::string_view field = rest_.substr(0, comma);
    if (comma == std::string_view::npos) {
      rest_ = {};
      finished_ = true;
    } else {
      rest_ = rest_.substr(comma + 1);
    }
    char attr = field.empty() ? '\0' : field[0];
    bool letter = (attr >= 'a' && attr <= 'z') || (attr >= 'A' && attr <= 'Z');
    if (!letter || (expected && attr != expected)) {
      if (expected) return malformed(std::string("attribute \"") + expected + "\" expected");
      return malformed("invalid attribute");
    }
    if (field.size() < 2 || field[1] != '=') {
      return malformed(std::string("expected \"=\" after attribute \"") + attr + "\"");
    }
    return std::pair{attr, field.substr(2)};
  }

 private:
  std::string_view rest_;
  bool finished_ = false;
};

// SASLname escaping (RFC 5802 5.1): ',' and '=' become "=2C" and "=3D".
std::string saslName(std::string_view name) {
  std::string out;
  for (char c : name) {
    if (c == ',') {
      out += "=2C";
    } else if (c == '=') {
      out += "=3D";
    } else {
      out.push_back(c);
    }
  }
  return out;
}

Key32 xorKeys(const Key32& a, const Key32& b) {
  Key32 out{};
  for (size_t i = 0; i < out.size(); ++i) out[i] = a[i] ^ b[i];
  return out;
}

}  // namespace

// ---- base64 ----

std::string base64Encode(std::string_view raw) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((raw.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= raw.size(); i += 3) {
    uint32_t v =
        uint32_t(uint8_t(raw[i])) << 16 | uint32_t(uint8_t(raw[i + 1])) << 8 | uint8_t(raw[i + 2]);
    out.push_back(kAlphabet[v >> 18]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(kAlphabet[(v >> 6) & 63]);
    out.push_back(kAlphabet[v & 63]);
  }
  size_t left = raw.size() - i;
  if (left) {
    uint32_t v = uint32_t(uint8_t(raw[i])) << 16;
    if (left == 2) v |= uint32_t(uint8_t(raw[i + 1])) << 8;
    out.push_back(kAlphabet[v >> 18]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(left == 2 ? kAlphabet[(v >> 6) & 63] : '=');
    out.push_back('=');
  }
  return out;
}

// Strict standard base64: padding, when present, must complete the last quantum and end the
// text. Unpadded text is accepted (some tools strip it); stray characters are not.
std::optional<std::string> base64Decode(std::string_view text) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  size_t padding = 0;
  while (padding < 2 && padding < text.size() && text[text.size() - 1 - padding] == '=') ++padding;
  if (padding && text.size() % 4 != 0) return std::nullopt;
  std::string_view body = text.substr(0, text.size() - padding);
  if (body.size() % 4 == 1) return std::nullopt;
  std::string out;
  out.reserve(body.size() * 3 / 4);
  uint32_t acc = 0;
  int bits = 0;
  for (char c : body) {
    int v = value(c);
    if (v < 0) return std::nullopt;
    acc = (acc << 6) | uint32_t(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(char((acc >> bits) & 0xff));
    }
  }
  return out;
}

// ---- verifiers ----

ScramVerifier deriveVerifier(std::string_view password, std::string_view salt, int iterations) {
  ScramVerifier v;
  v.iterations = iterations;
  v.salt = std::string(salt);
  Key32 salted = saltedPassword(password, salt, iterations);
  Key32 clientKey = hmacSha256(asText(salted), "Client Key");
  v.storedKey = sha256(clientKey);
  v.serverKey = hmacSha256(asText(salted), "Server Key");
  wipeMemory(salted.data(), salted.size());
  wipeMemory(clientKey.data(), clientKey.size());
  return v;
}

ScramVerifier makeVerifier(std::string_view password, int iterations) {
  char salt[kSaltLength];
  randomBytes(salt, sizeof salt);
  return deriveVerifier(password, std::string_view(salt, sizeof salt), iterations);
}

std::string formatVerifier(const ScramVerifier& v) {
  return std::string(kScramMechanism) + "$" + std::to_string(v.iterations) + ":" +
         base64Encode(v.salt) + "$" + base64Encode(asText(v.storedKey)) + ":" +
         base64Encode(asText(v.serverKey));
}

// ---- server ----

ScramServer::ScramServer(ScramVerifier verifier) : verifier_(std::move(verifier)) {}

ScramServer::ScramServer(ScramVerifier verifier, std::string nonceForTests)
    : verifier_(std::move(verifier)), serverNonce_(std::move(nonceForTests)) {}

// client-first-message = gs2-header client-first-message-bare
//   gs2-header = ("n" | "y" | "p=" cb-name) "," [authzid] ","
//   client-first-message-bare = [reserved-mext ","] "n=" user "," "r=" nonce ["," extensions]
Result<std::string> ScramServer::handleClientFirst(std::string_view message) {
  if (!serverFirst_.empty()) return malformed("unexpected second client-first-message");
  if (message.empty()) return malformed("empty client-first-message");
  switch (message[0]) {
    case 'n':
    case 'y':
      // 'y': the client could bind but believes we cannot; true, since we never offer -PLUS.
      break;
    case 'p':
      return fail(std::string(kProtocolViolation),
                  "channel binding not supported: the client selected SCRAM-SHA-256 but sent "
                  "channel binding data");
    default:
      return malformed("unexpected channel-binding flag in client-first-message");
  }
  if (message.size() < 2 || message[1] != ',') {
    return malformed("comma expected after channel-binding flag");
  }
  if (message.size() < 3) return malformed("client-first-message is truncated");
  if (message[2] == 'a') {
    return fail(std::string(kProtocolViolation),
                "client uses authorization identity, but it is not supported");
  }
  if (message[2] != ',') return malformed("unexpected attribute in client-first-message");
  char flag = message[0];
  std::string_view bare = message.substr(3);

  if (bare.starts_with("m=")) {
    return fail(std::string(kProtocolViolation), "client requires an unsupported SCRAM extension");
  }
  Attributes attrs(bare);
  // The user name in n= is ignored, as PostgreSQL does: the startup packet's user is the one
  // being authenticated (libpq sends it empty).
  auto user = attrs.next('n');
  if (!user) return std::unexpected(std::move(user.error()));
  auto nonce = attrs.next('r');
  if (!nonce) return std::unexpected(std::move(nonce.error()));
  std::string_view clientNonce = nonce->second;
  if (clientNonce.empty()) return malformed("empty client nonce");
  if (!isPrintableNonce(clientNonce)) return malformed("non-printable characters in client nonce");
  while (!attrs.done()) {  // optional extensions: ignored, but must be well-formed
    auto ext = attrs.next(0);
    if (!ext) return std::unexpected(std::move(ext.error()));
  }

  if (serverNonce_.empty()) serverNonce_ = randomNonce();
  gs2Flag_ = flag;
  clientFirstBare_ = std::string(bare);
  combinedNonce_ = std::string(clientNonce) + serverNonce_;
  serverFirst_ = "r=" + combinedNonce_ + ",s=" + base64Encode(verifier_.salt) +
                 ",i=" + std::to_string(verifier_.iterations);
  return serverFirst_;
}

// client-final-message = "c=" b64(gs2-header) "," "r=" nonce ["," extensions] "," "p=" proof
Result<std::string> ScramServer::handleClientFinal(std::string_view message) {
  if (serverFirst_.empty()) return malformed("client-final-message before client-first-message");
  Attributes attrs(message);
  auto binding = attrs.next('c');
  if (!binding) return std::unexpected(std::move(binding.error()));
  std::string expectedBinding = base64Encode(gs2Flag_ == 'y' ? "y,," : "n,,");
  if (binding->second != expectedBinding) {
    return fail(std::string(kProtocolViolation), "SCRAM channel binding check failed");
  }
  auto nonce = attrs.next('r');
  if (!nonce) return std::unexpected(std::move(nonce.error()));
  if (nonce->second != combinedNonce_) {
    return fail(std::string(kProtocolViolation),
                "SCRAM nonce in client-final-message does not match");
  }
  // Extensions may precede the proof; the proof must be last.
  std::string_view withoutProof;
  std::string_view proofText;
  while (true) {
    size_t offset = message.size() - attrs.rest().size();
    auto attr = attrs.next(0);
    if (!attr) return std::unexpected(std::move(attr.error()));
    if (attr->first == 'p') {
      withoutProof = message.substr(0, offset - 1);  // up to, not including, ",p="
      proofText = attr->second;
      break;
    }
  }
  if (!attrs.done()) return malformed("garbage at the end of client-final-message");
  auto proof = base64Decode(proofText);
  if (!proof || proof->size() != Key32{}.size()) {
    return malformed("invalid proof in client-final-message");
  }

  std::string authMessage = clientFirstBare_ + "," + serverFirst_ + "," + std::string(withoutProof);
  Key32 clientSignature = hmacSha256(asText(verifier_.storedKey), authMessage);
  Key32 proofKey{};
  std::copy(proof->begin(), proof->end(), proofKey.begin());
  Key32 clientKey = xorKeys(proofKey, clientSignature);
  Key32 storedKey = sha256(clientKey);
  if (!constantTimeEqual(asText(storedKey), asText(verifier_.storedKey))) {
    wipeMemory(clientKey.data(), clientKey.size());
    return fail(std::string(kInvalidPassword), "password authentication failed");
  }
  clientKey_ = clientKey;
  wipeMemory(clientKey.data(), clientKey.size());
  Key32 serverSignature = hmacSha256(asText(verifier_.serverKey), authMessage);
  return "v=" + base64Encode(asText(serverSignature));
}

// ---- client ----

ScramClient ScramClient::withPassword(std::string_view password) {
  ScramClient c;
  c.password_ = std::string(password);
  return c;
}

ScramClient ScramClient::withKeys(const Key32& clientKey, const Key32& serverKey) {
  ScramClient c;
  c.clientKey_ = clientKey;
  c.serverKey_ = serverKey;
  return c;
}

std::string ScramClient::clientFirst() {
  if (clientNonce_.empty()) clientNonce_ = randomNonce();
  clientFirstBare_ = "n=" + saslName(userName_) + ",r=" + clientNonce_;
  return "n,," + clientFirstBare_;
}

// server-first-message = "r=" nonce "," "s=" salt "," "i=" iteration-count ["," extensions]
Result<std::string> ScramClient::handleServerFirst(std::string_view message) {
  if (clientFirstBare_.empty())
    return malformed("server-first-message before client-first-message");
  if (message.starts_with("m=")) {
    return fail(std::string(kProtocolViolation), "server requires an unsupported SCRAM extension");
  }
  Attributes attrs(message);
  auto nonce = attrs.next('r');
  if (!nonce) return std::unexpected(std::move(nonce.error()));
  std::string_view combined = nonce->second;
  // The server must extend our nonce; otherwise it could replay an old exchange.
  if (combined.size() <= clientNonce_.size() || !combined.starts_with(clientNonce_) ||
      !isPrintableNonce(combined)) {
    return fail(std::string(kProtocolViolation), "invalid SCRAM response (nonce mismatch)");
  }
  auto saltAttr = attrs.next('s');
  if (!saltAttr) return std::unexpected(std::move(saltAttr.error()));
  auto salt = base64Decode(saltAttr->second);
  if (!salt || salt->empty()) return malformed("invalid salt");
  auto iterAttr = attrs.next('i');
  if (!iterAttr) return std::unexpected(std::move(iterAttr.error()));
  std::string_view iterText = iterAttr->second;
  int iterations = 0;
  auto [end, ec] = std::from_chars(iterText.data(), iterText.data() + iterText.size(), iterations);
  if (ec != std::errc() || end != iterText.data() + iterText.size() || iterations <= 0) {
    return malformed("invalid iteration count");
  }
  while (!attrs.done()) {
    auto ext = attrs.next(0);
    if (!ext) return std::unexpected(std::move(ext.error()));
  }

  if (!clientKey_ || !serverKey_) {
    Key32 salted = saltedPassword(password_, *salt, iterations);
    clientKey_ = hmacSha256(asText(salted), "Client Key");
    serverKey_ = hmacSha256(asText(salted), "Server Key");
    wipeMemory(salted.data(), salted.size());
    // The keys are all that is needed from here on.
    password_.resize(password_.capacity());
    wipeMemory(password_.data(), password_.size());
    password_.clear();
  }

  std::string withoutProof = "c=" + base64Encode("n,,") + ",r=" + std::string(combined);
  std::string authMessage = clientFirstBare_ + "," + std::string(message) + "," + withoutProof;
  Key32 storedKey = sha256(*clientKey_);
  Key32 clientSignature = hmacSha256(asText(storedKey), authMessage);
  Key32 proof = xorKeys(*clientKey_, clientSignature);
  Key32 serverSignature = hmacSha256(asText(*serverKey_), authMessage);
  expectedServerSignature_ = std::string(asText(serverSignature));
  return withoutProof + ",p=" + base64Encode(asText(proof));
}

// server-final-message = "e=" server-error-value | "v=" b64(ServerSignature) ["," extensions]
Result<void> ScramClient::handleServerFinal(std::string_view message) {
  if (expectedServerSignature_.empty()) {
    return malformed("server-final-message before server-first-message");
  }
  if (message.starts_with("e=")) {
    std::string_view text = message.substr(2);
    text = text.substr(0, text.find(','));
    return fail(std::string(kProtocolViolation),
                "error received from server in SCRAM exchange: " + std::string(text));
  }
  Attributes attrs(message);
  auto verifier = attrs.next('v');
  if (!verifier) return std::unexpected(std::move(verifier.error()));
  while (!attrs.done()) {
    auto ext = attrs.next(0);
    if (!ext) return std::unexpected(std::move(ext.error()));
  }
  auto signature = base64Decode(verifier->second);
  if (!signature || signature->size() != Key32{}.size()) {
    return malformed("invalid server signature");
  }
  if (!constantTimeEqual(*signature, expectedServerSignature_)) {
    return fail(std::string(kProtocolViolation), "incorrect server signature");
  }
  return {};
}

}  // namespace usher::auth
