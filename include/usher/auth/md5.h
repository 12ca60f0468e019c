// md5 password authentication as PostgreSQL defines it.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace usher::auth {

// "md5" + hex(md5(password + user)): what pg_authid stores.
std::string md5StoredHash(std::string_view password, std::string_view user);
// What a client sends for salt `salt` given the stored hash ("md5..."):
// "md5" + hex(md5(hex-part-of-stored + salt)).
std::string md5Response(std::string_view storedHash, const std::array<uint8_t, 4>& salt);

}  // namespace usher::auth
