// auth_file (userlist.txt): `"user" "secret"` lines, as PgBouncer reads them.
#pragma once

#include <map>
#include <string>
#include <string_view>

#include "usher/auth/secret.h"
#include "usher/base/result.h"

namespace usher::auth {

using AuthFile = std::map<std::string, Secret, std::less<>>;

// Parses the text of an auth file. Lines: `"name" "secret" ...` (further fields ignored, `""`
// inside quotes is a literal quote), blank lines and lines starting with ';' or '#' skipped.
// Errors name the file and line: "<path>:<line>: ...".
Result<AuthFile> parseAuthFile(std::string_view text, std::string_view pathForErrors);
Result<AuthFile> loadAuthFile(const std::string& path);

}  // namespace usher::auth
