// PgClient: blocking login and simple queries over usher's protocol/ writers and auth/ SCRAM.
#include "usher/ctl/pg_client.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>

#include "usher/auth/md5.h"
#include "usher/auth/scram.h"
#include "usher/base/byte_reader.h"
#include "usher/protocol/error_fields.h"
#include "usher/protocol/framer.h"
#include "usher/protocol/params.h"
#include "usher/protocol/tags.h"
#include "usher/protocol/writer.h"

namespace usher::ctl {
namespace {

namespace fe = protocol::fe;
namespace be = protocol::be;

// Biggest server message we accept: DataRows of a SHOW or a catalog query are small; this only
// guards against a peer that is not PostgreSQL.
constexpr uint32_t kMaxMessage = 256u * 1024 * 1024;

bool isUnixHost(const std::string& host) {
  return host.empty() || host.front() == '/';
}

// Waits for `events` on fd until `deadline`; false on timeout.
Result<bool> waitFor(int fd, short events, std::chrono::steady_clock::time_point deadline) {
  while (true) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                    deadline - std::chrono::steady_clock::now())
                    .count();
    if (left <= 0) return false;
    pollfd p{fd, events, 0};
    int rc = ::poll(&p, 1, int(std::min<long long>(left, 60000)));
    if (rc > 0) return true;
    if (rc < 0 && errno != EINTR) return failPlain(std::string("poll: ") + strerror(errno));
  }
}

// Non-blocking connect with a deadline; the socket is left blocking-mode-agnostic (we poll).
Result<int> connectTo(const sockaddr* addr, socklen_t len, int family, int timeoutMs) {
  int fd = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return failPlain(std::string("socket: ") + strerror(errno));
  if (::connect(fd, addr, len) != 0) {
    if (errno != EINPROGRESS) {
      int err = errno;
      ::close(fd);
      return failPlain(strerror(err));
    }
    auto ready = waitFor(fd, POLLOUT,
                         std::chrono::steady_clock::now() + std::chrono::milliseconds(timeoutMs));
    if (!ready || !*ready) {
      ::close(fd);
      return failPlain(!ready ? ready.error().message
                              : "timeout expired after " + std::to_string(timeoutMs / 1000) + " s");
    }
    int err = 0;
    socklen_t errLen = sizeof err;
    ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &errLen);
    if (err != 0) {
      ::close(fd);
      return failPlain(strerror(err));
    }
  }
  if (family != AF_UNIX) {
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  return fd;
}

}  // namespace

std::string ConnParams::where() const {
  if (isUnixHost(host)) {
    return (host.empty() ? std::string("/var/run/postgresql") : host) + "/.s.PGSQL." +
           std::to_string(port);
  }
  return host + ":" + std::to_string(port);
}

int QueryResult::column(std::string_view name) const {
  for (size_t i = 0; i < columns.size(); ++i) {
    if (columns[i] == name) return int(i);
  }
  return -1;
}

std::string QueryResult::value(size_t r, std::string_view name) const {
  int c = column(name);
  if (c < 0 || r >= rows.size() || size_t(c) >= rows[r].size() || !rows[r][size_t(c)]) return {};
  return *rows[r][size_t(c)];
}

std::string quoteIdent(std::string_view name) {
  std::string out = "\"";
  for (char c : name) {
    if (c == '"') out.push_back('"');
    out.push_back(c);
  }
  return out + "\"";
}

std::string quoteLiteralSql(std::string_view value) {
  return protocol::quoteLiteral(value);
}

PgClient::PgClient(PgClient&& o) noexcept
    : params_(std::move(o.params_)),
      fd_(o.fd_),
      in_(std::move(o.in_)),
      out_(std::move(o.out_)),
      serverParams_(std::move(o.serverParams_)) {
  o.fd_ = -1;
}

PgClient& PgClient::operator=(PgClient&& o) noexcept {
  if (this != &o) {
    close();
    params_ = std::move(o.params_);
    fd_ = o.fd_;
    o.fd_ = -1;
    in_ = std::move(o.in_);
    out_ = std::move(o.out_);
    serverParams_ = std::move(o.serverParams_);
  }
  return *this;
}

PgClient::~PgClient() {
  close();
}

void PgClient::close() {
  if (fd_ < 0) return;
  IoBuffer bye;
  protocol::writeTerminate(bye);
  [[maybe_unused]] auto n = ::send(fd_, bye.readPtr(), bye.readable(), MSG_NOSIGNAL);
  ::close(fd_);
  fd_ = -1;
  // The password may sit in params_: wipe it with the connection.
  std::fill(params_.password.begin(), params_.password.end(), '\0');
}

Result<PgClient> PgClient::connect(const ConnParams& params) {
  PgClient c;
  c.params_ = params;
  const std::string where = params.where();
  if (isUnixHost(params.host)) {
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    const std::string path = where;
    if (path.size() >= sizeof sa.sun_path) {
      return failPlain("Unix socket path too long: " + path);
    }
    std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);
    auto fd = connectTo(reinterpret_cast<const sockaddr*>(&sa), sizeof sa, AF_UNIX,
                        params.connectTimeoutMs);
    if (!fd) {
      return failPlain("could not connect to server on socket \"" + path +
                       "\": " + fd.error().message);
    }
    c.fd_ = *fd;
  } else {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    const std::string port = std::to_string(params.port);
    int rc = ::getaddrinfo(params.host.c_str(), port.c_str(), &hints, &res);
    if (rc != 0) {
      return failPlain("could not translate host name \"" + params.host +
                       "\" to address: " + gai_strerror(rc));
    }
    std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> guard(res, ::freeaddrinfo);
    std::string lastError = "no addresses";
    for (addrinfo* ai = res; ai; ai = ai->ai_next) {
      auto fd = connectTo(ai->ai_addr, ai->ai_addrlen, ai->ai_family, params.connectTimeoutMs);
      if (fd) {
        c.fd_ = *fd;
        break;
      }
      lastError = fd.error().message;
    }
    if (c.fd_ < 0) {
      return failPlain("could not connect to server at " + where + ": " + lastError);
    }
  }
  if (auto ok = c.login(); !ok) {
    Error e = ok.error();
    e.message = "login to " + where + " (user \"" + params.user + "\", database \"" +
                params.database + "\") failed: " + e.message;
    return std::unexpected(std::move(e));
  }
  return c;
}

Result<void> PgClient::flush() {
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(params_.ioTimeoutMs);
  while (!out_.empty()) {
    ssize_t n = ::send(fd_, out_.readPtr(), out_.readable(), MSG_NOSIGNAL);
    if (n > 0) {
      out_.consume(size_t(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      auto ready = waitFor(fd_, POLLOUT, deadline);
      if (!ready) return std::unexpected(ready.error());
      if (!*ready) return failPlain("timed out sending to the server");
      continue;
    }
    return failPlain(std::string("could not send to the server: ") + strerror(errno));
  }
  return {};
}

Result<PgClient::Message> PgClient::readMessage() {
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(params_.ioTimeoutMs);
  while (true) {
    protocol::FrameHeader h;
    auto d = in_.hasStorage() ? protocol::peekHeader(in_.readPtr(), in_.readable(), kMaxMessage, h)
                              : protocol::Decode::NeedMore;
    if (d == protocol::Decode::Malformed) {
      return fail("08P01", "malformed message from the server (is it PostgreSQL or usher?)");
    }
    if (d == protocol::Decode::Ready && in_.readable() >= h.frameSize()) {
      Message m;
      m.tag = h.tag;
      m.payload.assign(reinterpret_cast<const char*>(in_.readPtr()) + 5, h.payloadSize());
      in_.consume(h.frameSize());
      return m;
    }
    size_t want = d == protocol::Decode::Ready ? h.frameSize() - in_.readable() : 5;
    in_.ensureWritable(std::max<size_t>(want, 65536));
    ssize_t n = ::recv(fd_, in_.writePtr(), in_.writable(), 0);
    if (n > 0) {
      in_.commit(size_t(n));
      continue;
    }
    if (n == 0) return fail("08006", "server closed the connection unexpectedly");
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      auto ready = waitFor(fd_, POLLIN, deadline);
      if (!ready) return std::unexpected(ready.error());
      if (!*ready) {
        return fail("57014", "timed out after " + std::to_string(params_.ioTimeoutMs / 1000) +
                                 " s waiting for the server");
      }
      continue;
    }
    return fail("08006", std::string("could not receive from the server: ") + strerror(errno));
  }
}

Error PgClient::serverError(const Message& m) const {
  auto f = protocol::parseErrorFields(m.payload);
  std::string msg(f.message.empty() ? "unknown error" : f.message);
  if (!f.detail.empty()) msg += " (" + std::string(f.detail) + ")";
  return Error{std::string(f.sqlstate), msg};
}

Result<void> PgClient::login() {
  protocol::MessageWriter w(out_);
  w.beginUntagged().i32(int32_t(protocol::kProtocolV3));
  w.cstr("user").cstr(params_.user);
  w.cstr("database").cstr(params_.database);
  if (!params_.applicationName.empty()) w.cstr("application_name").cstr(params_.applicationName);
  w.u8(0).end();
  if (auto ok = flush(); !ok) return ok;

  std::unique_ptr<auth::ScramClient> scram;
  auto needPassword = [&](std::string_view method) -> Result<void> {
    if (params_.password.empty()) {
      return fail("28P01", "the server asked for " + std::string(method) +
                               " authentication but no password was given (set PGPASSWORD or "
                               "--password-file)");
    }
    return {};
  };
  while (true) {
    auto m = readMessage();
    if (!m) return std::unexpected(m.error());
    switch (m->tag) {
      case be::kAuthentication: {
        ByteReader r(m->payload);
        auto code = protocol::AuthCode(r.i32());
        switch (code) {
          case protocol::AuthCode::Ok:
            break;
          case protocol::AuthCode::CleartextPassword:
            if (auto ok = needPassword("password"); !ok) return ok;
            protocol::writePasswordMessage(out_, params_.password);
            break;
          case protocol::AuthCode::Md5Password: {
            if (auto ok = needPassword("md5"); !ok) return ok;
            auto s = r.bytes(4);
            if (!r.ok()) return fail("08P01", "malformed md5 request from the server");
            std::array<uint8_t, 4> salt{};
            std::memcpy(salt.data(), s.data(), 4);
            protocol::writePasswordMessage(
                out_, auth::md5Response(auth::md5StoredHash(params_.password, params_.user), salt));
            break;
          }
          case protocol::AuthCode::Sasl: {
            bool offered = false;
            while (r.remaining() > 1) offered |= r.cstr() == auth::kScramMechanism;
            if (!offered) return fail("08P01", "the server offered no SASL mechanism we support");
            if (auto ok = needPassword("SCRAM-SHA-256"); !ok) return ok;
            scram = std::make_unique<auth::ScramClient>(
                auth::ScramClient::withPassword(params_.password));
            protocol::writeSaslInitialResponse(out_, auth::kScramMechanism, scram->clientFirst());
            break;
          }
          case protocol::AuthCode::SaslContinue: {
            if (!scram) return fail("08P01", "unexpected SASL continue from the server");
            auto reply = scram->handleServerFirst(r.rest());
            if (!reply) return std::unexpected(reply.error());
            protocol::writeSaslResponse(out_, *reply);
            break;
          }
          case protocol::AuthCode::SaslFinal: {
            if (!scram) return fail("08P01", "unexpected SASL final from the server");
            auto ok = scram->handleServerFinal(r.rest());
            if (!ok) {
              return fail("08P01",
                          "the server's SCRAM signature did not verify: " + ok.error().message);
            }
            break;
          }
          default:
            return fail("08P01",
                        "the server asked for an authentication method usherctl does "
                        "not support (code " +
                            std::to_string(int(code)) + ")");
        }
        if (auto ok = flush(); !ok) return ok;
        break;
      }
      case be::kParameterStatus: {
        ByteReader r(m->payload);
        std::string name(r.cstr());
        std::string value(r.cstr());
        serverParams_.emplace_back(std::move(name), std::move(value));
        break;
      }
      case be::kBackendKeyData:
      case be::kNoticeResponse:
      case be::kNegotiateProtocolVersion:
        break;
      case be::kErrorResponse:
        return std::unexpected(serverError(*m));
      case be::kReadyForQuery:
        return {};
      default:
        return fail("08P01", std::string("unexpected message '") + m->tag + "' during login");
    }
  }
}

Result<std::vector<QueryResult>> PgClient::execute(std::string_view sql) {
  if (fd_ < 0) return fail("08003", "not connected");
  protocol::writeQuery(out_, sql);
  if (auto ok = flush(); !ok) return std::unexpected(ok.error());
  std::vector<QueryResult> results;
  QueryResult cur;
  std::optional<Error> error;
  while (true) {
    auto m = readMessage();
    if (!m) {
      close();  // the protocol state is unknown: do not reuse the connection
      return std::unexpected(m.error());
    }
    switch (m->tag) {
      case be::kRowDescription: {
        ByteReader r(m->payload);
        int n = r.i16();
        cur = QueryResult{};
        for (int i = 0; i < n && r.ok(); ++i) {
          cur.columns.emplace_back(r.cstr());
          r.bytes(18);  // table oid, column, type oid, size, modifier, format
        }
        if (!r.ok()) return fail("08P01", "malformed RowDescription from the server");
        break;
      }
      case be::kDataRow: {
        ByteReader r(m->payload);
        int n = r.i16();
        std::vector<std::optional<std::string>> row;
        row.reserve(size_t(std::max(n, 0)));
        for (int i = 0; i < n && r.ok(); ++i) {
          int32_t len = r.i32();
          if (len < 0) {
            row.emplace_back(std::nullopt);
          } else {
            row.emplace_back(std::string(r.bytes(size_t(len))));
          }
        }
        if (!r.ok()) return fail("08P01", "malformed DataRow from the server");
        cur.rows.push_back(std::move(row));
        break;
      }
      case be::kCommandComplete: {
        ByteReader r(m->payload);
        cur.commandTag = std::string(r.cstr());
        results.push_back(std::move(cur));
        cur = QueryResult{};
        break;
      }
      case be::kEmptyQueryResponse:
        results.push_back(std::move(cur));
        cur = QueryResult{};
        break;
      case be::kErrorResponse:
        if (!error) error = serverError(*m);
        break;
      case be::kCopyInResponse: {
        // We never send COPY data: refuse, and the server answers with an error.
        IoBuffer& o = out_;
        protocol::MessageWriter(o)
            .begin(fe::kCopyFail)
            .cstr("usherctl does not send COPY data")
            .end();
        if (auto ok = flush(); !ok) return std::unexpected(ok.error());
        break;
      }
      case be::kReadyForQuery:
        if (error) return std::unexpected(*error);
        return results;
      default:
        break;  // notices, parameter status, notifications, COPY out data: not needed
    }
  }
}

Result<QueryResult> PgClient::query(std::string_view sql) {
  auto all = execute(sql);
  if (!all) return std::unexpected(all.error());
  if (all->empty()) return QueryResult{};
  return std::move(all->back());
}

std::string PgClient::parameter(std::string_view name) const {
  for (const auto& [k, v] : serverParams_) {
    if (k == name) return v;
  }
  return {};
}

}  // namespace usher::ctl
