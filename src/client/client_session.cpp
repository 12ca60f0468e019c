// ClientSession: startup, authentication (SCRAM-SHA-256, md5, cleartext, trust), and forwarding a
// client's messages to the server the pool links it to.
#include "usher/client/client_session.h"

#include <sodium.h>

#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "usher/admin/console.h"
#include "usher/auth/md5.h"
#include "usher/base/byte_reader.h"
#include "usher/base/clock.h"
#include "usher/base/log.h"
#include "usher/base/random.h"
#include "usher/net/worker.h"
#include "usher/pool/pool.h"
#include "usher/pool/server_session.h"
#include "usher/protocol/framer.h"
#include "usher/protocol/params.h"
#include "usher/protocol/startup.h"
#include "usher/protocol/tags.h"
#include "usher/protocol/writer.h"

namespace usher::client {
namespace fe = protocol::fe;
using protocol::Decode;
using protocol::FrameHeader;

namespace {
// Authentication messages are small; anything bigger is not a password exchange.
constexpr uint32_t kMaxAuthMessage = 8192;

bool isTracked(const config::Config& cfg, std::string_view name) {
  return pool::isTrackedParam(name, cfg.trackExtraParameters);
}

bool isIgnored(const config::Config& cfg, std::string_view name) {
  for (const auto& ignored : cfg.ignoreStartupParameters)
    if (pool::ParamSet::sameName(ignored, name)) return true;
  return false;
}
}  // namespace

const char* toString(ClientState s) {
  switch (s) {
    case ClientState::Startup:
      return "startup";
    case ClientState::Auth:
      return "auth";
    case ClientState::LoginWait:
      return "login-wait";
    case ClientState::Idle:
      return "idle";
    case ClientState::Waiting:
      return "waiting";
    case ClientState::Linked:
      return "linked";
    case ClientState::Closing:
      return "closing";
  }
  return "?";
}

ClientSession::ClientSession(net::Worker& worker, uint64_t id, std::string peer)
    : worker_(worker), id_(id), peer_(std::move(peer)), sock_(worker.loop(), *this) {
  connectedAtMs_ = stateSinceMs_ = lastReadyMs_ = worker.nowMs();
}

ClientSession::~ClientSession() = default;

bool ClientSession::start(int fd, bool overLimit, int peerUid) {
  overLimit_ = overLimit;
  peerUid_ = peerUid;
  sock_.want(true, false);
  return sock_.open(fd);
}

bool ClientSession::peerIsOwner() const {
  return peerUid_ >= 0 && uid_t(peerUid_) == ::geteuid() && user_ == "pgbouncer";
}

void ClientSession::setState(ClientState next) {
  using S = ClientState;
  static constexpr bool kLegal[7][7] = {
      //              Startup Auth   LoginW Idle   Waiting Linked Closing
      /* Startup  */ {false, true, false, true, false, false, true},
      /* Auth     */ {false, false, true, true, false, false, true},
      /* LoginW   */ {false, false, false, true, false, false, true},
      /* Idle     */ {false, false, false, false, true, true, true},
      /* Waiting  */ {false, false, false, false, false, true, true},
      /* Linked   */ {false, false, false, true, true, false, true},
      /* Closing  */ {false, false, false, false, false, false, false},
  };
  if (!kLegal[int(state_)][int(next)]) {
    log::net().error("C-{}: illegal state change {} -> {}", id_, toString(state_), toString(next));
    return;
  }
  (void)S::Startup;
  state_ = next;
  stateSinceMs_ = worker_.nowMs();
}

void ClientSession::onReadable() {
  size_t got = 0;
  auto status = sock_.readSome(worker_.buffers(), &got);
  if (status == net::IoStatus::WouldBlock) return;
  if (status != net::IoStatus::Ok) {
    close(status == net::IoStatus::Eof ? "client unexpected eof" : "client read failed");
    return;
  }
  if (got == 0) {
    // The buffer is full of bytes not yet forwarded (the server is busy with usher's own
    // query): stop reading until they move, or the level-triggered poll would spin.
    sock_.wantRead(false);
    return;
  }
  switch (state_) {
    case ClientState::Startup:
      processStartup();
      break;
    case ClientState::Auth: {
      auto& in = sock_.in;
      while (state_ == ClientState::Auth && in.readable() >= 5) {
        FrameHeader h;
        if (protocol::peekHeader(in.readPtr(), in.readable(), kMaxAuthMessage, h) ==
            Decode::Malformed) {
          fail("08P01", "invalid message length during authentication");
          return;
        }
        if (in.readable() < h.frameSize()) break;
        std::string_view payload(reinterpret_cast<const char*>(in.readPtr()) + 5, h.payloadSize());
        // Consumed before it is handled: a successful login goes on to forward whatever follows
        // in the buffer, which must not include this message. The bytes stay valid meanwhile
        // (nothing writes to `in` until the next read).
        in.consume(h.frameSize());
        handleAuthMessage(h.tag, payload);
      }
      break;
    }
    case ClientState::LoginWait:
      sock_.wantRead(false);
      break;  // nothing is due before welcome
    case ClientState::Closing:
      break;
    default:
      processMessages();
      break;
  }
}

void ClientSession::onWritable() {
  if (server_ && server_->state() == pool::ServerState::Active) {
    server_->flushToClient();
    return;
  }
  flushOwnOutput();
}

void ClientSession::flushOwnOutput() {
  auto status = sock_.send();
  if (status == net::IoStatus::Error && state_ != ClientState::Closing)
    close("client write failed");
  if (status == net::IoStatus::Ok && state_ == ClientState::Closing) sock_.close();
  // An idle client holds no buffer: give back what login or the console used.
  if (status == net::IoStatus::Ok && !server_) sock_.releaseBuffers(worker_.buffers());
}

// ---- startup -------------------------------------------------------------------------------

void ClientSession::processStartup() {
  auto& in = sock_.in;
  while (state_ == ClientState::Startup && !in.empty()) {
    uint32_t length = 0;
    auto d = protocol::peekStartup(in.readPtr(), in.readable(), length);
    if (d == Decode::Malformed) {
      // An HTTP request, TLS ClientHello or other non-PostgreSQL bytes: answer now, not after
      // client_login_timeout.
      fail("08P01", "invalid startup packet");
      return;
    }
    if (d == Decode::NeedMore) {
      if (length > 0) in.ensureWritable(length - std::min<size_t>(length, in.readable()));
      return;
    }
    const uint8_t* packet = in.readPtr();
    in.consume(length);  // before handling, as in the Auth loop
    handleStartupPacket(packet, length);
  }
}

void ClientSession::handleStartupPacket(const uint8_t* data, size_t size) {
  auto packet = protocol::parseStartup(data, size);
  if (!packet) {
    fail(packet.error().sqlstate, packet.error().message);
    return;
  }
  const auto& cfg = worker_.config();
  switch (packet->kind) {
    case protocol::StartupKind::SslRequest:
    case protocol::StartupKind::GssEncRequest:
      // No TLS or GSS encryption yet: 'N' tells the client to go on in plaintext.
      if (++sslAnswers_ > 2) {
        fail("08P01", "too many encryption requests");
        return;
      }
      sock_.out.append("N", 1);
      flushOwnOutput();
      return;
    case protocol::StartupKind::Cancel:
      worker_.cancelRequested(packet->cancelPid, packet->cancelKey);
      setState(ClientState::Closing);
      sock_.close();
      return;
    case protocol::StartupKind::Startup:
      break;
  }

  uint32_t major = packet->version >> 16, minor = packet->version & 0xffff;
  if (major != 3) {
    fail("0A000", "unsupported frontend protocol " + std::to_string(major) + "." +
                      std::to_string(minor) + ": server supports 3.0 to 3.0");
    return;
  }
  std::vector<std::string_view> protocolOptions;
  for (auto& [name, value] : packet->params) {
    if (name == "user") {
      user_ = value;
    } else if (name == "database") {
      database_ = value;
    } else if (name == "replication") {
      if (value != "false" && value != "0" && value != "off" && value != "no") {
        fail("08P01", "replication connections are not supported by usher");
        return;
      }
    } else if (name.starts_with("_pq_.")) {
      protocolOptions.push_back(name);
    } else if (isIgnored(cfg, name)) {
      continue;
    } else if (name == "options") {
      auto settings = protocol::parseOptions(value);
      if (!settings) {
        fail(settings.error().sqlstate, settings.error().message);
        return;
      }
      for (auto& [k, v] : *settings)
        if (!isIgnored(cfg, k)) params_.set(k, v);
    } else {
      // Every other parameter is a setting the client wants for its session (application_name,
      // DateStyle, statement_timeout from node-postgres, ...): applied on whichever server it
      // gets, with a SET only when that server's value differs.
      params_.set(name, value);
    }
  }
  if (minor > 0 || !protocolOptions.empty()) {
    // A client asking for 3.2 (or protocol options) is told we speak 3.0 and goes on.
    protocol::writeNegotiateProtocolVersion(sock_.out, 0, {});
    if (!protocolOptions.empty()) {
      sock_.out.consume(sock_.out.readable());  // rewrite with the options listed
      protocol::MessageWriter w(sock_.out);
      w.begin(protocol::be::kNegotiateProtocolVersion).i32(0).i32(int32_t(protocolOptions.size()));
      for (auto o : protocolOptions) w.cstr(o);
      w.end();
    }
  }
  if (user_.empty()) {
    fail("28000", "no PostgreSQL user name specified in startup packet");
    return;
  }
  if (database_.empty()) database_ = user_;
  admin_ = admin::isConsoleDatabase(database_);
  // The console stays reachable when max_client_conn is reached, so operators can look.
  if (overLimit_ && !admin_) {
    fail("53300", "no more connections allowed (max_client_conn)");
    return;
  }
  if (admin_) {
    if (!cfg.isAdminUser(user_) && !cfg.isStatsUser(user_) && !peerIsOwner()) {
      log::admin().warn("C-{}: {}@{} refused: not in admin_users or stats_users", id_, user_,
                        peer_);
      fail("08P01", "not allowed");
      return;
    }
    if (peerIsOwner()) {
      // The OS user running usher, over the Unix socket: trusted like PgBouncer's peer login.
      authSucceeded();
      return;
    }
  } else if (worker_.isDisabled(database_)) {
    fail("08P01", "database does not allow connections: " + database_);
    return;
  } else if (!cfg.findDatabase(database_)) {
    log::net().info("C-{}: {}/{}@{} no such database", id_, database_, user_, peer_);
    fail("08P01", "no such database: " + database_);
    return;
  }
  if (cfg.logConnections)
    log::net().info("C-{}: {}/{}@{} login attempt", id_, database_, user_, peer_);
  beginAuth();
}

// ---- authentication --------------------------------------------------------------------------

void ClientSession::beginAuth() {
  const auto& cfg = worker_.config();
  if (cfg.authType == config::AuthType::Trust || cfg.authType == config::AuthType::Any) {
    authSucceeded();
    return;
  }
  auth_ = std::make_unique<AuthExchange>();
  const auth::Secret* secret = cfg.findSecret(user_);
  auth_->userKnown = secret && !secret->empty();
  if (auth_->userKnown) auth_->secret = *secret;
  auto kind = auth_->secret.kind();

  using Method = AuthExchange::Method;
  if (cfg.authType == config::AuthType::Plain)
    auth_->method = Method::Cleartext;
  else if (cfg.authType == config::AuthType::Md5 && kind != auth::SecretKind::Scram)
    auth_->method = Method::Md5;
  else
    auth_->method = Method::Scram;

  switch (auth_->method) {
    case Method::Scram: {
      auth::ScramVerifier verifier;
      if (kind == auth::SecretKind::Scram) {
        verifier = auth_->secret.scram();
      } else if (kind == auth::SecretKind::Plain) {
        verifier = worker_.pools().verifierFor(user_, auth_->secret);
      } else {
        // Unknown user, or only an md5 hash: run the exchange against a random verifier so the
        // client cannot tell which (PostgreSQL does the same), and fail it at the end.
        auth_->userKnown = false;
        verifier.iterations = auth::kDefaultScramIterations;
        verifier.salt.resize(16);
        secureRandom(verifier.salt.data(), verifier.salt.size());
        secureRandom(verifier.storedKey.data(), verifier.storedKey.size());
        secureRandom(verifier.serverKey.data(), verifier.serverKey.size());
      }
      auth_->scram = std::make_unique<auth::ScramServer>(std::move(verifier));
      std::string mechanisms(auth::kScramMechanism);
      mechanisms.push_back('\0');
      mechanisms.push_back('\0');
      protocol::writeAuthRequest(sock_.out, protocol::AuthCode::Sasl, mechanisms);
      break;
    }
    case Method::Md5:
      secureRandom(auth_->md5Salt.data(), auth_->md5Salt.size());
      protocol::writeAuthRequest(
          sock_.out, protocol::AuthCode::Md5Password,
          std::string_view(reinterpret_cast<const char*>(auth_->md5Salt.data()), 4));
      break;
    case Method::Cleartext:
      protocol::writeAuthRequest(sock_.out, protocol::AuthCode::CleartextPassword);
      break;
  }
  setState(ClientState::Auth);
  flushOwnOutput();
}

void ClientSession::handleAuthMessage(char tag, std::string_view payload) {
  if (tag != fe::kPassword) {
    fail("08P01", std::string("expected password response, got message type ") + tag);
    return;
  }
  using Method = AuthExchange::Method;
  switch (auth_->method) {
    case Method::Scram: {
      if (!auth_->scramFirstDone) {
        ByteReader r(payload);
        auto mechanism = r.cstr();
        int32_t length = r.i32();
        auto data = length >= 0 ? r.bytes(size_t(length)) : std::string_view{};
        if (!r.ok() || !r.atEnd() || length < 0) {
          fail("08P01", "malformed SASLInitialResponse message");
          return;
        }
        if (mechanism != auth::kScramMechanism) {
          fail("08P01", "client selected an invalid SASL authentication mechanism");
          return;
        }
        auto reply = auth_->scram->handleClientFirst(data);
        if (!reply) {
          fail(reply.error().sqlstate.empty() ? "08P01" : reply.error().sqlstate,
               reply.error().message);
          return;
        }
        auth_->scramFirstDone = true;
        protocol::writeAuthRequest(sock_.out, protocol::AuthCode::SaslContinue, *reply);
        flushOwnOutput();
        return;
      }
      auto reply = auth_->scram->handleClientFinal(payload);
      if (!reply) {
        if (reply.error().sqlstate == "28P01")
          authFailed();
        else
          fail(reply.error().sqlstate.empty() ? "08P01" : reply.error().sqlstate,
               reply.error().message);
        return;
      }
      if (!auth_->userKnown) {
        authFailed();
        return;
      }
      protocol::writeAuthRequest(sock_.out, protocol::AuthCode::SaslFinal, *reply);
      authSucceeded();
      return;
    }
    case Method::Md5: {
      ByteReader r(payload);
      auto response = r.cstr();
      if (!r.ok()) {
        fail("08P01", "malformed password message");
        return;
      }
      if (!auth_->userKnown) {
        authFailed();
        return;
      }
      std::string stored = auth_->secret.kind() == auth::SecretKind::Md5
                               ? auth_->secret.text()
                               : auth::md5StoredHash(auth_->secret.text(), user_);
      std::string expected = auth::md5Response(stored, auth_->md5Salt);
      bool ok = auth::constantTimeEqual(expected, response);
      auth::wipeMemory(stored.data(), stored.size());
      if (ok)
        authSucceeded();
      else
        authFailed();
      return;
    }
    case Method::Cleartext: {
      ByteReader r(payload);
      auto password = r.cstr();
      if (!r.ok()) {
        fail("08P01", "malformed password message");
        return;
      }
      bool ok = false;
      const auth::Secret& s = auth_->secret;
      if (!auth_->userKnown) {
        ok = false;
      } else if (s.kind() == auth::SecretKind::Plain) {
        ok = auth::constantTimeEqual(s.text(), password);
      } else if (s.kind() == auth::SecretKind::Md5) {
        ok = auth::constantTimeEqual(s.text(), auth::md5StoredHash(password, user_));
      } else if (s.kind() == auth::SecretKind::Scram) {
        auto v = auth::deriveVerifier(password, s.scram().salt, s.scram().iterations);
        ok = auth::constantTimeEqual(
            std::string_view(reinterpret_cast<const char*>(v.storedKey.data()), 32),
            std::string_view(reinterpret_cast<const char*>(s.scram().storedKey.data()), 32));
      }
      if (ok)
        authSucceeded();
      else
        authFailed();
      return;
    }
  }
}

void ClientSession::authFailed() {
  log::auth().info("C-{}: {}/{}@{} password authentication failed", id_, database_, user_, peer_);
  fail("28P01", "password authentication failed for user \"" + user_ + "\"");
}

void ClientSession::authSucceeded() {
  auto& cfg = worker_.config();
  if (admin_) {
    auth_.reset();
    protocol::writeAuthRequest(sock_.out, protocol::AuthCode::Ok);
    std::tie(cancelPid_, cancelKey_) = worker_.issueCancelKey(*this);
    admin::writeWelcome(sock_.out);
    protocol::writeBackendKeyData(sock_.out, cancelPid_, cancelKey_);
    protocol::writeReadyForQuery(sock_.out, 'I');
    if (state_ == ClientState::Startup) setState(ClientState::Auth);
    setState(ClientState::LoginWait);
    setState(ClientState::Idle);
    log::admin().info("C-{}: {}@{} console login", id_, user_, peer_);
    flushOwnOutput();
    if (!sock_.in.empty()) processConsole();
    return;
  }
  pool_ = worker_.pools().poolFor(cfg, database_, user_);
  if (!pool_) {
    fail("08P01", "no such database: " + database_);
    return;
  }
  if (auth_ && auth_->scram && auth_->secret.kind() == auth::SecretKind::Scram)
    pool_->rememberScramKeys(auth_->scram->clientKey(), auth_->secret.scram());
  auth_.reset();
  protocol::writeAuthRequest(sock_.out, protocol::AuthCode::Ok);
  std::tie(cancelPid_, cancelKey_) = worker_.issueCancelKey(*this);
  if (state_ == ClientState::Startup) setState(ClientState::Auth);
  setState(ClientState::LoginWait);
  pool_->clientLoggedIn(*this);  // finishLogin() now or once a server has logged in
  if (state_ == ClientState::LoginWait) flushOwnOutput();
}

void ClientSession::finishLogin() {
  writeWelcome();
  setState(ClientState::Idle);
  flushOwnOutput();
  sock_.wantRead(true);
  if (!sock_.in.empty()) processMessages();
}

void ClientSession::writeWelcome() {
  // The client's own values win for what it asked for; everything else is what PostgreSQL said
  // at the pool's first login. Only the client's own values are stored per client: for the rest
  // the pool's welcome values are the reference when a server is linked (ServerSession::link).
  for (const auto& e : pool_->welcome().entries()) {
    const std::string* mine = params_.find(e.name);
    protocol::writeParameterStatus(sock_.out, e.name, mine ? *mine : e.value);
  }
  protocol::writeBackendKeyData(sock_.out, cancelPid_, cancelKey_);
  protocol::writeReadyForQuery(sock_.out, 'I');
}

void ClientSession::noteParameter(std::string_view name, std::string_view value) {
  if (params_.find(name) || isTracked(worker_.config(), name)) params_.set(name, value);
}

// ---- forwarding ----------------------------------------------------------------------------

void ClientSession::processPending() {
  if (admin_ && state_ == ClientState::Idle) {
    processConsole();
    return;
  }
  if (state_ == ClientState::Idle || state_ == ClientState::Linked) {
    sock_.wantRead(true);
    if (!sock_.in.empty())
      processMessages();
    else
      sock_.releaseBuffers(worker_.buffers());
  }
}

// The console: complete simple-protocol queries are answered here, one at a time.
void ClientSession::processConsole() {
  auto& in = sock_.in;
  while (state_ == ClientState::Idle && adminPending_ == 0 && in.readable() >= 5) {
    FrameHeader h;
    if (protocol::peekHeader(in.readPtr(), in.readable(), kMaxAuthMessage * 8, h) ==
        Decode::Malformed) {
      fail("08P01", "invalid message length");
      return;
    }
    if (in.readable() < h.frameSize()) {
      in.ensureWritable(h.frameSize() - in.readable());
      return;
    }
    std::string_view payload(reinterpret_cast<const char*>(in.readPtr()) + 5, h.payloadSize());
    std::string sql;
    if (h.tag == fe::kQuery) {
      ByteReader r(payload);
      sql.assign(r.cstr());
    }
    in.consume(h.frameSize());
    if (h.tag == fe::kTerminate) {
      close("client close request");
      return;
    }
    if (h.tag != fe::kQuery) {
      // The console speaks only the simple protocol. As PgBouncer: an ERROR the client can
      // read, then FATAL and close.
      bool extended = h.tag == fe::kParse || h.tag == fe::kBind || h.tag == fe::kExecute;
      protocol::writeErrorResponse(
          sock_.out, "ERROR", "08P01",
          extended ? "extended query protocol not supported by admin console"
                   : "unsupported packet type for admin console: " + std::to_string(int(h.tag)));
      protocol::writeReadyForQuery(sock_.out, 'I');
      fail("08P01", "bad packet");
      return;
    }
    admin::handleQuery(worker_, *this, sql);
    if (state_ == ClientState::Closing) return;
  }
  flushOwnOutput();
}

void ClientSession::processMessages() {
  if (admin_) {
    processConsole();
    return;
  }
  if (processing_) return;  // the outer call's loop picks the new state up
  processing_ = true;
  blockedOnRelay_ = false;
  auto& in = sock_.in;
  const uint32_t maxPacket = worker_.config().maxPacketSize;
  while (state_ == ClientState::Idle || state_ == ClientState::Linked) {
    if (server_ && server_->state() != pool::ServerState::Active) break;  // Setup running
    size_t avail = in.readable() - toServer_.ready;
    if (toServer_.passthrough) {
      size_t take = std::min<size_t>(toServer_.passthrough, avail);
      toServer_.ready += take;
      toServer_.passthrough -= uint32_t(take);
      if (toServer_.passthrough) break;
      continue;
    }
    if (discard_) {
      // The rest of a message usher answered itself (nothing before it is approved).
      size_t n = std::min(discard_, in.readable());
      in.consume(n);
      discard_ -= n;
      if (discard_) break;
      continue;
    }
    if (avail < 5) break;
    FrameHeader h;
    if (protocol::peekHeader(in.readPtr() + toServer_.ready, avail, maxPacket, h) ==
        Decode::Malformed) {
      processing_ = false;
      fail("08P01", h.length > maxPacket && h.length >= 4 ? "message too large (max_packet_size)"
                                                          : "invalid message length");
      return;
    }
    if (h.tag == fe::kTerminate) {
      if (toServer_.ready > 0) break;  // send what came before it first
      processing_ = false;
      close("client close request");
      return;
    }
    if (!server_ && answerParseWithoutServer(h, avail)) continue;
    if (!server_) {
      // First message of a transaction: get a server. acquire() may link one right away.
      waitStartUs_ = monotonicMicros();
      setState(ClientState::Waiting);
      pool_->acquire(*this);
      // Queued: the socket stays readable. What arrives meanwhile waits in the buffer (a full
      // buffer pauses reading, see onReadable), and a client that gives up is noticed at once.
      // Not toggling the interest saves two epoll_ctl per queued transaction.
      if (!server_) break;
      if (server_->state() != pool::ServerState::Active) break;  // Setup runs first
    }
    auto step = pool::StatementRelay::Step::Forward;
    if (server_->relayActive()) {
      step = server_->relay().onClientMessage(h);
      if (step == pool::StatementRelay::Step::Wait) {
        blockedOnRelay_ = true;  // the server's replies resume us (ServerSession::processActive)
        break;
      }
      if (step == pool::StatementRelay::Step::NeedMore) {
        // A Bind is needed only up to its two names; its parameters may be huge.
        size_t need = h.frameSize() - avail;
        in.ensureWritable(h.tag == fe::kBind ? std::min<size_t>(need, 1024) : need);
        break;
      }
    }
    switch (h.tag) {
      case fe::kQuery:
      case fe::kFunctionCall:
        if (pendingReady_++ == 0) requestStarted();
        break;
      case fe::kSync:
        if (pendingReady_++ == 0) requestStarted();
        unsynced_ = false;
        break;
      case fe::kParse:
        ++pool_->stats.clientParses;
        unsynced_ = true;
        break;
      case fe::kBind:
        ++pool_->stats.binds;
        unsynced_ = true;
        break;
      case fe::kDescribe:
      case fe::kExecute:
      case fe::kClose:
      case fe::kFlush:
        unsynced_ = true;
        break;
      default:
        break;
    }
    if (step == pool::StatementRelay::Step::Consumed) continue;
    size_t take = std::min<size_t>(h.frameSize(), avail);
    toServer_.ready += take;
    if (take < h.frameSize()) {
      toServer_.passthrough = uint32_t(h.frameSize() - take);
      break;
    }
  }
  processing_ = false;
  // Replies usher owes at once (a Flush after a Parse it answered itself).
  if (server_ && server_->relayActive() && server_->relay().emitDue()) server_->flushToClient();
  if (server_ && (toServer_.ready > 0 || server_->socket().hasPendingOutput()))
    flushToServer();
  else if (!server_ && sock_.hasPendingOutput())
    flushOwnOutput();  // replies usher gave without a server
  else if (in.empty() && !server_)
    sock_.releaseBuffers(worker_.buffers());
}

bool ClientSession::answerParseWithoutServer(const FrameHeader& h, size_t avail) {
  // This is how pgbench's PQprepare and most drivers prepare: Parse then Sync, waiting for the
  // answer. Taking a server for it costs a round trip, and can stall a client thread that holds
  // another server in a transaction (pgbench -M prepared, more clients per thread than servers).
  if (h.tag != fe::kParse || !pool_ || !pool_->mapsStatements()) return false;
  if (toServer_.ready != 0 || avail < h.frameSize() + 5) return false;
  const uint8_t* at = sock_.in.readPtr();
  if (at[h.frameSize()] != fe::kSync || std::memcmp(at + h.frameSize() + 1, "\0\0\0\4", 4) != 0)
    return false;
  pool::ParseMessage m;
  std::string_view payload(reinterpret_cast<const char*>(at) + 5, h.payloadSize());
  if (!pool::parseParse(payload, m) || m.name.empty()) return false;
  if (statements_ && statements_->find(m.name)) return false;  // 42P05 comes from the relay
  pool::StmtRef stmt = pool_->statements.findProvenValid(m.body);
  if (!stmt) return false;
  if (!statements_) statements_ = std::make_unique<pool::ClientStatements>();
  statements_->named.emplace(std::string(m.name), std::move(stmt));
  sock_.in.consume(h.frameSize() + 5);
  ++pool_->stats.clientParses;
  protocol::MessageWriter(sock_.out).begin(protocol::be::kParseComplete).end();
  protocol::writeReadyForQuery(sock_.out, 'I');  // between transactions: idle
  lastReadyMs_ = worker_.nowMs();
  return true;
}

void ClientSession::requestStarted() {
  busySinceMs_ = worker_.nowMs();
  queryStartUs_ = monotonicMicros();
  if (!inXact_) {
    inXact_ = true;
    xactStartUs_ = queryStartUs_;
  }
}

void ClientSession::onReadyForQuery(char status) {
  if (pendingReady_ > 0) --pendingReady_;
  lastReadyMs_ = worker_.nowMs();
  if (pendingReady_ > 0) return;  // PgBouncer counts a pipelined batch as one query
  uint64_t now = monotonicMicros();
  auto& st = pool_->stats;
  ++st.queryCount;
  st.queryTimeUs += now - queryStartUs_;
  st.queryTimes.observe(now - queryStartUs_);
  if (status == 'I' && inXact_) {
    ++st.xactCount;
    st.xactTimeUs += now - xactStartUs_;
    st.xactTimes.observe(now - xactStartUs_);
    inXact_ = false;
  }
}

void ClientSession::flushToServer() {
  if (!server_) return;
  auto& ss = server_->socket();
  size_t sent = 0;
  auto status = ss.send(&sock_, &toServer_, &sent);
  if (pool_) pool_->stats.bytesReceived += sent;
  if (status == net::IoStatus::Error) {
    server_->close("server write failed");
    return;
  }
  if (status == net::IoStatus::WouldBlock) {
    sock_.wantRead(false);  // backpressure: stop reading the client until the server drains
    return;
  }
  if (state_ == ClientState::Closing) return;
  sock_.wantRead(true);
  // A Terminate (or more messages) may be waiting behind what just went out.
  if (sock_.in.readable() > 0 && !processing_) processMessages();
}

void ClientSession::linked(pool::ServerSession& server) {
  server_ = &server;
  setState(ClientState::Linked);
}

void ClientSession::serverReady() {
  if (state_ != ClientState::Linked) return;
  sock_.wantRead(true);
  processMessages();
}

void ClientSession::unlinked() {
  server_ = nullptr;
  if (state_ == ClientState::Linked) setState(ClientState::Idle);
}

void ClientSession::serverLost(std::string_view reason) {
  server_ = nullptr;
  if (state_ == ClientState::Closing) return;
  log::net().warn("C-{}: {}/{}@{} server connection lost: {}", id_, database_, user_, peer_,
                  reason);
  fail("08P01", "server conn crashed?");
}

// ---- errors and close ------------------------------------------------------------------------

void ClientSession::fail(std::string_view sqlstate, std::string_view message,
                         std::string_view detail) {
  if (state_ == ClientState::Closing) return;
  if (worker_.config().logPoolerErrors)
    log::net().warn("C-{}: {}/{}@{} pooler error: {}", id_,
                    database_.empty() ? "(nodb)" : database_, user_.empty() ? "(nouser)" : user_,
                    peer_, message);
  protocol::writeErrorResponse(sock_.out, "FATAL", sqlstate, message, detail);
  close(message);
}

void ClientSession::failWithServerError(std::string_view errorPayload) {
  if (state_ == ClientState::Closing) return;
  protocol::MessageWriter w(sock_.out);
  w.begin(protocol::be::kErrorResponse).raw(errorPayload).end();
  close("server login failed");
}

void ClientSession::close(std::string_view reason) {
  if (state_ == ClientState::Closing) return;
  if (worker_.config().logDisconnections && state_ != ClientState::Startup)
    log::net().info("C-{}: {}/{}@{} closing because: {} (age={}s)", id_, database_, user_, peer_,
                    reason, (worker_.nowMs() - connectedAtMs_) / 1000);
  if (server_) {
    auto* s = server_;
    bool quiet =
        pendingReady_ == 0 && !unsynced_ && toServer_.ready == 0 && toServer_.passthrough == 0;
    server_ = nullptr;
    s->unlink(quiet);
  }
  if (pool_) pool_->forgetClient(*this);
  if (adminPending_) worker_.forgetConsoleCommand(*this);
  if (cancelPid_) worker_.forgetCancelKey(cancelPid_);
  auth_.reset();
  setState(ClientState::Closing);
  // Best effort: the last ErrorResponse goes out if the socket takes it now.
  if (sock_.hasPendingOutput() && sock_.isOpen()) (void)sock_.send();
  sock_.close();
}

void ClientSession::onSocketClosed() {
  worker_.clientClosed(*this);
  delete this;
}

}  // namespace usher::client
