// Startup-phase packets: StartupMessage, SSLRequest, GSSENCRequest, CancelRequest.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "usher/base/result.h"

namespace usher::protocol {

enum class StartupKind { Startup, SslRequest, GssEncRequest, Cancel };

struct StartupPacket {
  StartupKind kind = StartupKind::Startup;
  uint32_t version = 0;  // protocol version for Startup (major << 16 | minor)
  // Startup: parameters in the order sent (user, database, options, application_name, ...).
  // Copied: they outlive the read buffer.
  std::vector<std::pair<std::string, std::string>> params;
  // Cancel: the key the client was given.
  int32_t cancelPid = 0;
  int32_t cancelKey = 0;

  const std::string* param(std::string_view name) const;
};

// Parses one complete startup-phase packet (length prefix included). Errors carry SQLSTATE 08P01.
Result<StartupPacket> parseStartup(const uint8_t* data, size_t size);

// Splits a libpq `options` value ("-c a=b --c=d -cx=y", backslash escapes spaces) into settings.
Result<std::vector<std::pair<std::string, std::string>>> parseOptions(std::string_view options);

}  // namespace usher::protocol
