// md5 password hashing and challenge responses, as PostgreSQL computes them.
#include "usher/auth/md5.h"

#include <openssl/evp.h>

#include "usher/auth/secret.h"

namespace usher::auth {
namespace {

// hex(md5(a + b)) in lowercase, as pg_md5_hash() produces it.
std::string md5Hex(std::string_view a, std::string_view b) {
  std::string input;
  input.reserve(a.size() + b.size());
  input.append(a).append(b);
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digestLength = 0;
  EVP_Digest(input.data(), input.size(), digest, &digestLength, EVP_md5(), nullptr);
  // The input holds the password (or the stored hash, which is as good as one for md5 logins).
  wipeMemory(input.data(), input.size());
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(digestLength * 2);
  for (unsigned int i = 0; i < digestLength; ++i) {
    out.push_back(kHex[digest[i] >> 4]);
    out.push_back(kHex[digest[i] & 0xf]);
  }
  return out;
}

}  // namespace

std::string md5StoredHash(std::string_view password, std::string_view user) {
  return "md5" + md5Hex(password, user);
}

std::string md5Response(std::string_view storedHash, const std::array<uint8_t, 4>& salt) {
  std::string_view hexPart = storedHash.starts_with("md5") ? storedHash.substr(3) : storedHash;
  return "md5" +
         md5Hex(hexPart, std::string_view(reinterpret_cast<const char*>(salt.data()), salt.size()));
}

}  // namespace usher::auth
