// Address parsing, listening and nonblocking connect on raw fds (the loop polls them).
#include "usher/net/address.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>

namespace usher::net {
namespace {

std::string errnoText(int err) {
  return std::strerror(err);
}

std::string formatIp(const sockaddr_storage& addr) {
  char host[INET6_ADDRSTRLEN] = {};
  if (addr.ss_family == AF_INET) {
    auto* in = reinterpret_cast<const sockaddr_in*>(&addr);
    inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
    return std::string(host) + ":" + std::to_string(ntohs(in->sin_port));
  }
  if (addr.ss_family == AF_INET6) {
    auto* in6 = reinterpret_cast<const sockaddr_in6*>(&addr);
    inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
    return "[" + std::string(host) + "]:" + std::to_string(ntohs(in6->sin6_port));
  }
  return "unix";
}

}  // namespace

Result<Endpoint> numericEndpoint(std::string_view host, int port) {
  Endpoint ep;
  std::string h(host);
  auto* in = reinterpret_cast<sockaddr_in*>(&ep.addr);
  auto* in6 = reinterpret_cast<sockaddr_in6*>(&ep.addr);
  if (inet_pton(AF_INET, h.c_str(), &in->sin_addr) == 1) {
    in->sin_family = AF_INET;
    in->sin_port = htons(uint16_t(port));
    ep.length = sizeof(sockaddr_in);
  } else if (inet_pton(AF_INET6, h.c_str(), &in6->sin6_addr) == 1) {
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(uint16_t(port));
    ep.length = sizeof(sockaddr_in6);
  } else {
    return failPlain("not a numeric address: " + h);
  }
  ep.text = formatIp(ep.addr);
  return ep;
}

Result<Endpoint> unixEndpoint(std::string_view dir, int port) {
  Endpoint ep;
  std::string path = std::string(dir) + "/.s.PGSQL." + std::to_string(port);
  auto* un = reinterpret_cast<sockaddr_un*>(&ep.addr);
  if (path.size() >= sizeof(un->sun_path)) return failPlain("Unix socket path too long: " + path);
  un->sun_family = AF_UNIX;
  std::memcpy(un->sun_path, path.c_str(), path.size() + 1);
  ep.length = socklen_t(offsetof(sockaddr_un, sun_path) + path.size() + 1);
  ep.text = path;
  return ep;
}

Result<std::vector<Endpoint>> listenEndpoints(const std::vector<std::string>& addrs, int port) {
  std::vector<Endpoint> out;
  for (const auto& a : addrs) {
    if (a.empty()) continue;
    if (a == "*") {
      for (const char* any : {"0.0.0.0", "::"}) out.push_back(*numericEndpoint(any, port));
      continue;
    }
    if (auto ep = numericEndpoint(a, port)) {
      out.push_back(*ep);
      continue;
    }
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    addrinfo* res = nullptr;
    int rc = getaddrinfo(a.c_str(), std::to_string(port).c_str(), &hints, &res);
    if (rc != 0) return failPlain("cannot resolve listen_addr " + a + ": " + gai_strerror(rc));
    for (auto* ai = res; ai; ai = ai->ai_next) {
      Endpoint ep;
      std::memcpy(&ep.addr, ai->ai_addr, ai->ai_addrlen);
      ep.length = ai->ai_addrlen;
      ep.text = formatIp(ep.addr);
      out.push_back(ep);
    }
    freeaddrinfo(res);
  }
  return out;
}

Result<int> listenOn(const Endpoint& ep, int backlog, bool reusePort, int unixMode) {
  int fd = ::socket(ep.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return failPlain("socket(" + ep.text + "): " + errnoText(errno));
  int one = 1;
  if (!ep.isUnix()) {
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (reusePort) setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (ep.family() == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  } else {
    // A socket file left by a previous run would make bind fail; PostgreSQL and PgBouncer
    // remove it the same way.
    ::unlink(ep.text.c_str());
  }
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&ep.addr), ep.length) != 0) {
    int err = errno;
    ::close(fd);
    return failPlain("cannot listen on " + ep.text + ": " + errnoText(err));
  }
  if (ep.isUnix()) ::chmod(ep.text.c_str(), mode_t(unixMode));
  if (::listen(fd, backlog) != 0) {
    int err = errno;
    ::close(fd);
    return failPlain("listen(" + ep.text + "): " + errnoText(err));
  }
  return fd;
}

Result<int> connectStart(const Endpoint& ep) {
  int fd = ::socket(ep.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return failPlain(errnoText(errno));
  int rc;
  do {
    rc = ::connect(fd, reinterpret_cast<const sockaddr*>(&ep.addr), ep.length);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0 && errno != EINPROGRESS) {
    int err = errno;
    ::close(fd);
    return failPlain(errnoText(err));
  }
  tuneStream(fd, ep);
  return fd;
}

int connectResult(int fd) {
  int err = 0;
  socklen_t len = sizeof err;
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) return errno;
  return err;
}

void tuneStream(int fd, const Endpoint& ep) {
  if (ep.isUnix()) return;
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
}

std::string peerText(const sockaddr_storage& addr, socklen_t) {
  return formatIp(addr);
}

}  // namespace usher::net
