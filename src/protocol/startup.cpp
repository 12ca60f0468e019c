// Startup-phase packets (StartupMessage, SSLRequest, GSSENCRequest, CancelRequest) and libpq's
// `options` parameter.
#include "usher/protocol/startup.h"

#include "usher/base/byte_reader.h"
#include "usher/protocol/tags.h"

namespace usher::protocol {
namespace {

constexpr std::string_view kProtocolViolation = "08P01";

// Reads the name/value pairs of a StartupMessage body up to the terminating empty name, which
// must be the packet's last byte (PostgreSQL rejects anything after it).
Result<void> parseStartupParams(ByteReader& r, StartupPacket& packet) {
  while (true) {
    std::string_view name = r.cstr();
    if (!r.ok()) break;
    if (name.empty()) {
      if (r.atEnd()) return {};
      break;
    }
    std::string_view value = r.cstr();
    if (!r.ok()) break;
    packet.params.emplace_back(std::string(name), std::string(value));
  }
  return fail(std::string(kProtocolViolation),
              "invalid startup packet layout: expected terminator as last byte");
}

}  // namespace

const std::string* StartupPacket::param(std::string_view name) const {
  for (const auto& [key, value] : params) {
    if (key == name) return &value;
  }
  return nullptr;
}

Result<StartupPacket> parseStartup(const uint8_t* data, size_t size) {
  ByteReader r(data, size);
  uint32_t length = r.u32();
  uint32_t code = r.u32();
  if (!r.ok() || length != size || length < 8 || length > kMaxStartupPacket) {
    return fail(std::string(kProtocolViolation), "invalid length of startup packet");
  }
  StartupPacket packet;
  switch (code) {
    case kSslRequestCode:
    case kGssEncRequestCode:
      if (length != 8) {
        return fail(std::string(kProtocolViolation), "invalid length of encryption request packet");
      }
      packet.kind = code == kSslRequestCode ? StartupKind::SslRequest : StartupKind::GssEncRequest;
      return packet;
    case kCancelRequestCode:
      if (length != 16) {
        return fail(std::string(kProtocolViolation), "invalid length of cancel request packet");
      }
      packet.kind = StartupKind::Cancel;
      packet.cancelPid = r.i32();
      packet.cancelKey = r.i32();
      return packet;
    default:
      break;
  }
  packet.kind = StartupKind::Startup;
  packet.version = code;
  auto parsed = parseStartupParams(r, packet);
  if (!parsed) {
    // PostgreSQL checks the major version before the layout: an old or unknown protocol must be
    // answered with "unsupported frontend protocol" by the caller, not a layout error (a 2.0
    // packet has fixed-width fields, not name/value pairs).
    if ((code >> 16) != (kProtocolV3 >> 16)) {
      packet.params.clear();
      return packet;
    }
    return std::unexpected(std::move(parsed.error()));
  }
  return packet;
}

Result<std::vector<std::pair<std::string, std::string>>> parseOptions(std::string_view options) {
  // Split like PostgreSQL's pg_split_opts: whitespace separates arguments and a backslash makes
  // the next character literal (so values may contain spaces).
  std::vector<std::string> args;
  {
    std::string current;
    bool inArg = false;
    for (size_t i = 0; i < options.size(); ++i) {
      char c = options[i];
      if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') {
        if (inArg) args.push_back(std::move(current));
        current.clear();
        inArg = false;
        continue;
      }
      inArg = true;
      if (c == '\\') {
        if (i + 1 == options.size()) break;  // a trailing backslash escapes nothing: dropped
        c = options[++i];
      }
      current.push_back(c);
    }
    if (inArg) args.push_back(std::move(current));
  }

  std::vector<std::pair<std::string, std::string>> settings;
  auto badArgument = [](std::string_view arg) {
    return fail(std::string(kProtocolViolation),
                "unsupported startup option \"" + std::string(arg) +
                    "\": only -c name=value and --name=value are accepted");
  };
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    std::string_view setting;
    if (arg == "-c") {
      if (i + 1 == args.size()) return badArgument(arg);
      setting = args[++i];
    } else if (arg.starts_with("-c")) {
      setting = std::string_view(arg).substr(2);
    } else if (arg.starts_with("--")) {
      setting = std::string_view(arg).substr(2);
    } else {
      return badArgument(arg);
    }
    size_t eq = setting.find('=');
    if (eq == std::string_view::npos || eq == 0) {
      return badArgument(arg == "-c" ? "-c " + std::string(setting) : arg);
    }
    std::string name(setting.substr(0, eq));
    // PostgreSQL's ParseLongOption: "--search-path=x" sets search_path.
    for (char& c : name) {
      if (c == '-') c = '_';
    }
    settings.emplace_back(std::move(name), std::string(setting.substr(eq + 1)));
  }
  return settings;
}

}  // namespace usher::protocol
