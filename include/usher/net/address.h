// Endpoints: parsing listen addresses, Unix socket paths, nonblocking connect and listen.
#pragma once

#include <sys/socket.h>

#include <string>
#include <string_view>
#include <vector>

#include "usher/base/result.h"

namespace usher::net {

struct Endpoint {
  sockaddr_storage addr{};
  socklen_t length = 0;
  std::string text;  // "127.0.0.1:5432", "[::1]:6432" or "/run/postgresql/.s.PGSQL.5432"

  int family() const { return addr.ss_family; }
  bool isUnix() const { return addr.ss_family == AF_UNIX; }
};

// A numeric IPv4/IPv6 address (no DNS). Fails for host names.
Result<Endpoint> numericEndpoint(std::string_view host, int port);
// `<dir>/.s.PGSQL.<port>`, as libpq and PostgreSQL name it.
Result<Endpoint> unixEndpoint(std::string_view dir, int port);
// Listen endpoints for `listen_addr` entries: "*" is every IPv4 and IPv6 address; host names are
// resolved once here (startup, not on a loop).
Result<std::vector<Endpoint>> listenEndpoints(const std::vector<std::string>& addrs, int port);

// A nonblocking listening socket (SO_REUSEADDR, SO_REUSEPORT when `reusePort`). Unix sockets get
// `unixMode` permissions and replace a stale socket file.
Result<int> listenOn(const Endpoint& ep, int backlog, bool reusePort, int unixMode);
// Starts a nonblocking connect; the fd becomes writable when it completes (check SO_ERROR).
Result<int> connectStart(const Endpoint& ep);
// SO_ERROR of a connecting socket: 0 when connected.
int connectResult(int fd);
// Socket options for an accepted or connected TCP stream: TCP_NODELAY (latency over batching:
// every message is a full protocol unit).
void tuneStream(int fd, const Endpoint& ep);
// Peer address text of an accepted connection ("127.0.0.1:52311" or "unix").
std::string peerText(const sockaddr_storage& addr, socklen_t len);

}  // namespace usher::net
