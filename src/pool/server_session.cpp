// ServerSession: connect, log in to PostgreSQL, run usher's own queries, and forward a linked
// client's traffic with the release rule of transaction pooling.
#include "usher/pool/server_session.h"

#include <unistd.h>

#include <cstring>

#include "usher/auth/md5.h"
#include "usher/base/byte_reader.h"
#include "usher/base/log.h"
#include "usher/client/client_session.h"
#include "usher/net/worker.h"
#include "usher/pool/pool.h"
#include "usher/protocol/error_fields.h"
#include "usher/protocol/framer.h"
#include "usher/protocol/params.h"
#include "usher/protocol/startup.h"
#include "usher/protocol/tags.h"
#include "usher/protocol/writer.h"

namespace usher::pool {
namespace be = protocol::be;
using protocol::Decode;
using protocol::FrameHeader;

namespace {

// Largest message we insist on holding whole from a server (ParameterStatus, ReadyForQuery,
// authentication, errors during login). Bigger ones are a protocol violation.
constexpr uint32_t kMaxWholeServerMessage = 1 << 20;
// Largest message we accept at all from a server (DataRow of a 1 GB field plus slack).
constexpr uint32_t kMaxServerMessage = 0x7fffffff;

// Sends one CancelRequest on a connection of its own and frees itself when done.
class CancelSender final : public net::SocketOwner {
 public:
  CancelSender(uv_loop_t* loop, int32_t pid, int32_t key) : sock_(loop, *this) {
    protocol::writeCancelRequest(sock_.out, pid, key);
  }
  static void send(uv_loop_t* loop, const net::Endpoint& ep, int32_t pid, int32_t key) {
    auto fd = net::connectStart(ep);
    if (!fd) {
      log::pool().warn("cancel request to {} failed: {}", ep.text, fd.error().message);
      return;
    }
    auto* self = new CancelSender(loop, pid, key);
    self->sock_.want(false, true);
    if (!self->sock_.open(*fd)) delete self;
  }

 private:
  void onWritable() override {
    if (net::connectResult(sock_.fd()) == 0) {
      (void)sock_.send();  // 16 bytes into an empty socket buffer: one send does it
    }
    sock_.close();
  }
  void onReadable() override { sock_.close(); }
  void onSocketClosed() override { delete this; }
  net::Socket sock_;
};

std::string errorText(const protocol::ErrorFields& f) {
  std::string s(f.message);
  if (!f.detail.empty()) s.append(" (").append(f.detail).append(")");
  return s;
}

}  // namespace

const char* toString(ServerState s) {
  switch (s) {
    case ServerState::Connecting:
      return "connecting";
    case ServerState::Login:
      return "login";
    case ServerState::Idle:
      return "idle";
    case ServerState::Setup:
      return "setup";
    case ServerState::Active:
      return "active";
    case ServerState::Resetting:
      return "resetting";
    case ServerState::Closed:
      return "closed";
  }
  return "?";
}

ServerSession::ServerSession(net::Worker& worker, Pool& pool, uint64_t id)
    : worker_(worker),
      pool_(pool),
      id_(id),
      sock_(worker.loop(), *this),
      relay_({&sock_.in, &toClient_, &sock_.out, &pool.statements, &pool.stats.serverParses}) {
  createdAtMs_ = lastUsedMs_ = stateSinceMs_ = worker.nowMs();
}

ServerSession::~ServerSession() = default;

void ServerSession::setState(ServerState next) {
  static constexpr bool kLegal[7][7] = {
      //            Conn   Login  Idle   Setup  Active Reset  Closed
      /* Conn   */ {false, true, false, false, false, false, true},
      /* Login  */ {false, false, true, false, false, true, true},
      /* Idle   */ {false, false, false, true, true, false, true},
      /* Setup  */ {false, false, true, false, true, false, true},
      /* Active */ {false, false, true, false, false, true, true},
      /* Reset  */ {false, false, true, false, false, false, true},
      /* Closed */ {false, false, false, false, false, false, false},
  };
  if (!kLegal[int(state_)][int(next)]) {
    log::pool().error("S-{}: illegal state change {} -> {}", id_, toString(state_), toString(next));
    return;
  }
  state_ = next;
  stateSinceMs_ = worker_.nowMs();
  pool_.serverStateChanged(*this);
}

bool ServerSession::start(int fd, const net::Endpoint& ep) {
  endpoint_ = ep;
  sock_.want(false, true);  // writable = the connect finished (or failed)
  if (!sock_.open(fd)) return false;
  pool_.serverStateChanged(*this);
  return true;
}

// ---- hand-over between workers ------------------------------------------------------------------

ServerTransfer::~ServerTransfer() {
  if (fd < 0) return;  // delivered
  ::close(fd);
  for (auto* c : slots)
    if (c) c->sub();
}

bool ServerSession::readyToMove() const {
  return state_ == ServerState::Idle && sock_.in.empty() && !sock_.hasPendingOutput() &&
         relay_.idle();
}

void ServerSession::handOff(int to) {
  auto t = std::make_unique<ServerTransfer>();
  t->id = id_;
  t->endpoint = endpoint_;
  t->params = std::move(params_);
  t->localSets = std::move(localSets_);
  t->backendPid = backendPid_;
  t->backendKey = backendKey_;
  t->createdAtMs = createdAtMs_;
  t->lastUsedMs = lastUsedMs_;
  t->statements = relay_.exportStatements();
  auto slots = pool_.slots();
  t->slots[0] = slots.pool;
  t->slots[1] = slots.database;
  t->slots[2] = slots.user;
  sock_.releaseBuffers(worker_.buffers());
  t->fd = sock_.release();  // this session is freed from the close callback
  setState(ServerState::Closed);
  pool_.serverLeft(*this);
  log::pool().debug("S-{}: handed to worker {}", id_, to);
  SharedPool* key = &pool_.shared();
  worker_.engine().post(to, [key, t = std::move(t)](net::Worker& w) mutable {
    Pool* pool = w.pools().find(*key);
    if (pool) adopt(w, *pool, std::move(t));
    // no pool there (it cannot have had waiters): t closes the connection
  });
}

void ServerSession::adopt(net::Worker& worker, Pool& pool, std::unique_ptr<ServerTransfer> t) {
  auto* s = new ServerSession(worker, pool, t->id);
  s->endpoint_ = t->endpoint;
  s->params_ = std::move(t->params);
  s->localSets_ = std::move(t->localSets);
  s->backendPid_ = t->backendPid;
  s->backendKey_ = t->backendKey;
  s->createdAtMs_ = t->createdAtMs;
  s->lastUsedMs_ = t->lastUsedMs;
  s->relay_.importStatements(t->statements);
  s->state_ = ServerState::Idle;  // arrives logged in and idle: no transition to check
  s->sock_.want(true, false);     // an idle server is read for notices and its own close
  int fd = std::exchange(t->fd, -1);
  if (!s->sock_.open(fd)) {
    for (auto* c : t->slots) c->sub();
    delete s;  // its socket closes the fd it was never able to poll
    return;
  }
  pool.serverArrived(*s);
}

void ServerSession::onWritable() {
  if (state_ == ServerState::Connecting) {
    int err = net::connectResult(sock_.fd());
    if (err != 0) {
      failLogin(Error{"08006", "connect to " + endpoint_.text + " failed: " + std::strerror(err)},
                false);
      return;
    }
    onConnected();
    return;
  }
  if (client_ && (state_ == ServerState::Active)) {
    client_->flushToServer();
    return;
  }
  if (sock_.send() == net::IoStatus::Error) close("server write failed");
}

void ServerSession::onConnected() {
  log::pool().debug("S-{}: connected to {}", id_, endpoint_.text);
  setState(ServerState::Login);
  sendStartup();
  sock_.want(true, false);
  if (sock_.send() == net::IoStatus::Error) failLogin(Error{"08006", "server write failed"}, false);
}

void ServerSession::sendStartup() {
  const ServerLogin& login = pool_.login();
  protocol::MessageWriter w(sock_.out);
  w.beginUntagged().i32(int32_t(protocol::kProtocolV3));
  w.cstr("user").cstr(login.user).cstr("database").cstr(login.database);
  for (const auto& [name, value] : pool_.serverParams()) w.cstr(name).cstr(value);
  w.u8(0).end();
}

void ServerSession::onReadable() {
  auto status = sock_.readSome(worker_.buffers());
  if (status == net::IoStatus::WouldBlock) return;
  if (status == net::IoStatus::Eof || status == net::IoStatus::Error) {
    if (state_ == ServerState::Connecting || state_ == ServerState::Login) {
      failLogin(Error{"08006", "server closed the connection during login"}, false);
    } else {
      close(status == net::IoStatus::Eof ? "server closed the connection" : "server read failed");
    }
    return;
  }
  switch (state_) {
    case ServerState::Active:
      processActive();
      break;
    case ServerState::Connecting:
      break;
    case ServerState::Closed:
      break;
    default:
      processInternal();
      break;
  }
}

// Login, Setup, Resetting and Idle: every message is complete and consumed here.
void ServerSession::processInternal() {
  auto& in = sock_.in;
  while (state_ != ServerState::Closed && state_ != ServerState::Active && in.readable() >= 5) {
    FrameHeader h;
    if (protocol::peekHeader(in.readPtr(), in.readable(), kMaxWholeServerMessage, h) ==
        Decode::Malformed) {
      close("server sent a malformed message");
      return;
    }
    if (in.readable() < h.frameSize()) {
      in.ensureWritable(h.frameSize() - in.readable());
      break;
    }
    std::string_view payload(reinterpret_cast<const char*>(in.readPtr()) + 5, h.payloadSize());
    bool alive = true;
    if (state_ == ServerState::Login) {
      alive = handleLoginMessage(h.tag, payload);
    } else {
      switch (h.tag) {
        case be::kReadyForQuery:
          txStatus_ = payload.empty() ? 'I' : payload[0];
          in.consume(h.frameSize());
          if (state_ == ServerState::Setup || state_ == ServerState::Resetting) internalQueryDone();
          continue;
        case be::kParameterStatus:
          trackParameterStatus(payload, false);
          break;
        case be::kErrorResponse: {
          auto f = protocol::parseErrorFields(payload);
          if (state_ == ServerState::Idle) {
            log::pool().warn("S-{}: server says: {} {}", id_, f.sqlstate, errorText(f));
          } else if (!internalError_) {
            internalError_ = Error{std::string(f.sqlstate), errorText(f)};
          }
          break;
        }
        case be::kNoticeResponse:
        case be::kNotificationResponse:
        default:
          break;  // results of our own query, or async messages for nobody
      }
    }
    if (!alive) return;
    in.consume(h.frameSize());
  }
  if (in.empty()) sock_.releaseBuffers(worker_.buffers());
}

bool ServerSession::handleLoginMessage(char tag, std::string_view payload) {
  switch (tag) {
    case be::kAuthentication:
      return handleAuthRequest(payload);
    case be::kParameterStatus:
      trackParameterStatus(payload, false);
      return true;
    case be::kBackendKeyData: {
      ByteReader r(payload);
      backendPid_ = r.i32();
      backendKey_ = r.i32();
      return true;
    }
    case be::kErrorResponse: {
      auto f = protocol::parseErrorFields(payload);
      failLogin(Error{std::string(f.sqlstate), errorText(f)}, true, payload);
      return false;
    }
    case be::kReadyForQuery: {
      txStatus_ = payload.empty() ? 'I' : payload[0];
      scram_.reset();
      sock_.in.consume(6);  // ReadyForQuery is 6 bytes; consumed here because we change state
      log::pool().info("S-{}: {}/{}@{} new connection to server", id_, pool_.database(),
                       pool_.user(), endpoint_.text);
      pool_.serverLoggedIn(*this);
      if (state_ == ServerState::Closed) return false;
      if (!pool_.connectQuery().empty()) {
        resetting_ = false;
        startInternalQuery(pool_.connectQuery(), ServerState::Resetting);
      } else {
        setState(ServerState::Idle);
        pool_.serverIdle(*this);
      }
      return false;  // already consumed; the caller's loop re-reads the state
    }
    case be::kNoticeResponse:
    case be::kNegotiateProtocolVersion:
      return true;
    default:
      failLogin(
          Error{"08P01", std::string("unexpected message '") + tag + "' from server during login"},
          false);
      return false;
  }
}

bool ServerSession::handleAuthRequest(std::string_view payload) {
  ByteReader r(payload);
  auto code = protocol::AuthCode(r.i32());
  const ServerLogin& login = pool_.login();
  const auth::Secret& secret = login.secret;
  auto noCredentials = [&](std::string_view what) {
    failLogin(
        Error{"08P01", "server requested " + std::string(what) + " authentication for user \"" +
                           login.user + "\", but usher has no usable password for it"},
        false);
    return false;
  };
  switch (code) {
    case protocol::AuthCode::Ok:
      return true;
    case protocol::AuthCode::CleartextPassword:
      if (secret.kind() != auth::SecretKind::Plain) return noCredentials("cleartext password");
      protocol::writePasswordMessage(sock_.out, secret.text());
      break;
    case protocol::AuthCode::Md5Password: {
      std::array<uint8_t, 4> salt{};
      auto s = r.bytes(4);
      if (!r.ok()) break;
      std::memcpy(salt.data(), s.data(), 4);
      std::string stored;
      if (secret.kind() == auth::SecretKind::Plain)
        stored = auth::md5StoredHash(secret.text(), login.user);
      else if (secret.kind() == auth::SecretKind::Md5)
        stored = secret.text();
      else
        return noCredentials("md5");
      protocol::writePasswordMessage(sock_.out, auth::md5Response(stored, salt));
      break;
    }
    case protocol::AuthCode::Sasl: {
      bool offered = false;
      while (r.remaining() > 1) offered |= r.cstr() == auth::kScramMechanism;
      if (!offered) return noCredentials("an unsupported SASL mechanism for");
      if (secret.kind() == auth::SecretKind::Plain) {
        scram_ =
            std::make_unique<auth::ScramClient>(auth::ScramClient::withPassword(secret.text()));
      } else if (auto pass = pool_.scramForLogin()) {
        scram_ = std::make_unique<auth::ScramClient>(std::move(*pass));
      } else {
        return noCredentials("SCRAM");
      }
      protocol::writeSaslInitialResponse(sock_.out, auth::kScramMechanism, scram_->clientFirst());
      break;
    }
    case protocol::AuthCode::SaslContinue: {
      if (!scram_) break;
      auto reply = scram_->handleServerFirst(r.rest());
      if (!reply) {
        failLogin(reply.error(), false);
        return false;
      }
      protocol::writeSaslResponse(sock_.out, *reply);
      break;
    }
    case protocol::AuthCode::SaslFinal: {
      if (!scram_) break;
      auto ok = scram_->handleServerFinal(r.rest());
      if (!ok) {
        failLogin(Error{"08P01", "server's SCRAM signature did not verify: " + ok.error().message},
                  false);
        return false;
      }
      return true;
    }
    default:
      failLogin(
          Error{"08P01", "server requested an authentication method usher does not support (" +
                             std::to_string(int(code)) + ")"},
          false);
      return false;
  }
  if (!r.ok()) {
    failLogin(Error{"08P01", "malformed authentication request from server"}, false);
    return false;
  }
  if (sock_.send() == net::IoStatus::Error) {
    failLogin(Error{"08006", "server write failed"}, false);
    return false;
  }
  return true;
}

void ServerSession::failLogin(const Error& error, bool fromServer, std::string_view serverPayload) {
  if (state_ == ServerState::Closed) return;
  log::pool().warn("S-{}: {}/{}@{} login failed: {}{}", id_, pool_.database(), pool_.user(),
                   endpoint_.text, error.sqlstate.empty() ? "" : error.sqlstate + " ",
                   error.message);
  Error copy = error;
  std::string payload(fromServer ? serverPayload : std::string_view{});
  close("login failed");
  pool_.serverLoginFailed(*this, copy, payload);
}

void ServerSession::abortLogin(const Error& error) {
  failLogin(error, false);
}

void ServerSession::trackParameterStatus(std::string_view payload, bool forwardToClient) {
  ByteReader r(payload);
  auto name = r.cstr();
  auto value = r.cstr();
  if (!r.ok()) return;
  params_.set(name, value);
  if (forwardToClient && client_) client_->noteParameter(name, value);
}

void ServerSession::link(client::ClientSession& client) {
  client_ = &client;
  lastUsedMs_ = worker_.nowMs();
  toClient_ = {};
  mapsStatements_ = pool_.mapsStatements();
  if (mapsStatements_) relay_.attach(client.relayView(), worker_.config().maxPreparedStatements);
  // Give the server the client's view of every tracked parameter. set_config() takes list values
  // (search_path) as PostgreSQL parses them, unlike SET with one quoted literal.
  std::string sql;  // stays empty (no allocation) when the server already matches
  auto want = [&](const std::string& name, const std::string& value) {
    const std::string* have = params_.find(name);
    if (!have) have = localSets_.find(name);
    if (have && protocol::paramValuesEqual(name, value, *have)) return;
    sql.append(sql.empty() ? "SELECT " : ", ");
    sql.append("pg_catalog.set_config(")
        .append(protocol::quoteLiteral(name))
        .append(", ")
        .append(protocol::quoteLiteral(value))
        .append(", false)");
    if (!params_.find(name)) localSets_.set(name, value);
  };
  for (const auto& e : client.params().entries()) want(e.name, e.value);
  // Tracked parameters the client left at the server default: another client may have changed
  // them on this server.
  const auto& extra = worker_.config().trackExtraParameters;
  for (const auto& e : pool_.welcome().entries())
    if (!client.params().find(e.name) && isTrackedParam(e.name, extra)) want(e.name, e.value);
  std::string resets;
  std::vector<std::string> dropped;
  for (const auto& e : localSets_.entries()) {
    if (client.params().find(e.name)) continue;
    resets.append("RESET ").append(e.name).append(";");
    dropped.push_back(e.name);
  }
  for (const auto& name : dropped) localSets_.erase(name);
  if (!sql.empty()) sql.append(";");
  sql.append(resets);
  if (sql.empty()) {
    setState(ServerState::Active);
    client.serverReady();
  } else {
    log::pool().debug("S-{}: setting parameters for C-{}", id_, client.id());
    startInternalQuery(sql, ServerState::Setup);
  }
}

void ServerSession::startInternalQuery(std::string_view sql, ServerState during) {
  internalError_.reset();
  // server_reset_query (DISCARD ALL) and usher's DEALLOCATE ALL drop prepared statements; a
  // failed one leaves them in doubt. Either way usher prepares again when a statement is needed.
  if (during == ServerState::Resetting) relay_.forgetServerStatements();
  protocol::writeQuery(sock_.out, sql);
  setState(during);
  sock_.wantRead(true);
  if (sock_.send() == net::IoStatus::Error) close("server write failed");
}

void ServerSession::internalQueryDone() {
  if (state_ == ServerState::Setup) {
    if (!client_) {  // the client left while we were setting it up
      setState(ServerState::Idle);
      pool_.serverIdle(*this);
      return;
    }
    if (internalError_) {
      auto* c = client_;
      Error e = *internalError_;
      setState(ServerState::Active);
      c->fail(e.sqlstate, "could not apply the session parameters: " + e.message);
      return;
    }
    setState(ServerState::Active);
    client_->serverReady();
    return;
  }
  // Resetting: the reset query (or connect_query) finished.
  if (internalError_) {
    log::pool().warn("S-{}: {} failed: {} {}", id_,
                     deallocating_ ? "DEALLOCATE ALL"
                     : resetting_  ? "server_reset_query"
                                   : "connect_query",
                     internalError_->sqlstate, internalError_->message);
    close("internal query failed");
    return;
  }
  if (resetting_ && !deallocating_) localSets_.clear();  // DISCARD ALL / RESET ALL dropped them
  deallocating_ = false;
  setState(ServerState::Idle);
  pool_.serverIdle(*this);
}

bool ServerSession::releasable() const {
  return pool_.mode() != config::PoolMode::Session && txStatus_ == 'I' && client_ &&
         client_->pendingReady() == 0 && !client_->unsynced() && toClient_.passthrough == 0 &&
         relay_.idle();
}

// Active: approve the server's messages for the client, looking only at what the pool needs.
void ServerSession::processActive() {
  auto& in = sock_.in;
  while (!releaseAfterFlush_) {
    size_t avail = in.readable() - toClient_.ready;
    if (toClient_.passthrough) {
      size_t take = std::min<size_t>(toClient_.passthrough, avail);
      toClient_.ready += take;
      toClient_.passthrough -= uint32_t(take);
      if (toClient_.passthrough) break;
      continue;
    }
    if (mapsStatements_) relay_.emitDue();  // replies usher owes come before the next one
    avail = in.readable() - toClient_.ready;
    if (avail < 5) break;
    const uint8_t* at = in.readPtr() + toClient_.ready;
    FrameHeader h;
    if (protocol::peekHeader(at, avail, kMaxServerMessage, h) == Decode::Malformed) {
      close("server sent a malformed message");
      return;
    }
    if (mapsStatements_ && h.tag != be::kParameterStatus) {
      bool whole = StatementRelay::wantsWhole(h.tag) || h.tag == be::kReadyForQuery;
      if (whole && avail < h.frameSize()) {
        if (h.length > kMaxWholeServerMessage) {
          close("server sent an oversized message");
          return;
        }
        in.ensureWritable(h.frameSize() - avail);
        break;
      }
      std::string_view payload(reinterpret_cast<const char*>(at) + 5, whole ? h.payloadSize() : 0);
      auto reply = relay_.onServerMessage(h.tag, payload);
      if (reply != StatementRelay::Reply::Forward) {
        // Dropped, or replaced by what the relay wrote: the approved bytes before it went first.
        relay_.cutServerStream();
        in.consume(h.frameSize());
        continue;
      }
    }
    if (h.tag == be::kReadyForQuery || h.tag == be::kParameterStatus) {
      if (avail < h.frameSize()) {
        if (h.length > kMaxWholeServerMessage) {
          close("server sent an oversized message");
          return;
        }
        in.ensureWritable(h.frameSize() - avail);
        break;
      }
      std::string_view payload(reinterpret_cast<const char*>(at) + 5, h.payloadSize());
      toClient_.ready += h.frameSize();
      if (h.tag == be::kParameterStatus) {
        trackParameterStatus(payload, true);
        if (mapsStatements_) relay_.noteParameterStatus();
        continue;
      }
      txStatus_ = payload.empty() ? 'I' : payload[0];
      client_->onReadyForQuery(txStatus_);
      if (pool_.mode() == config::PoolMode::Statement && txStatus_ != 'I') {
        auto* c = client_;
        c->fail("08P01", "transaction blocks not allowed in statement pooling mode");
        return;
      }
      if (releasable()) releaseAfterFlush_ = true;
      continue;
    }
    size_t take = std::min<size_t>(h.frameSize(), avail);
    toClient_.ready += take;
    if (take < h.frameSize()) {
      toClient_.passthrough = uint32_t(h.frameSize() - take);
      break;
    }
  }
  flushToClient();
  // A client message that named a statement whose Parse was still unanswered may go on now.
  if (client_ && client_->blockedOnRelay()) client_->resumeAfterRelay();
}

void ServerSession::flushToClient() {
  if (!client_) return;
  auto* c = client_;
  size_t sent = 0;
  auto status = c->socket().send(&sock_, &toClient_, &sent);
  pool_.stats.bytesSent += sent;
  if (status == net::IoStatus::Error) {
    c->close("client write failed");
    return;
  }
  if (status == net::IoStatus::WouldBlock) {
    sock_.wantRead(false);  // backpressure: stop reading the server until the client drains
    return;
  }
  sock_.wantRead(true);
  if (!releaseAfterFlush_) {
    // Everything approved went out; a partial message left in the buffer waits for more input.
    if (sock_.in.empty()) sock_.releaseBuffers(worker_.buffers());
    return;
  }
  releaseAfterFlush_ = false;
  if (!releasable()) {
    // While its socket was full the client sent more (a pipelined query): not a boundary after
    // all. Go on with what the server already sent.
    if (!sock_.in.empty()) processActive();
    return;
  }
  // Transaction boundary: the client has its ReadyForQuery; the server goes back to the pool.
  client_ = nullptr;
  relay_.unlinked();
  c->unlinked();
  if (relay_.leftState()) {
    // Handing this server to another client would hand it this client's session state.
    log::pool().warn(
        "S-{}: C-{} left session state on the server ({}), which transaction "
        "pooling cannot carry: closing the server instead of reusing it",
        id_, c->id(), relay_.leftState());
    close("client left session state");
    c->processPending();
    return;
  }
  if (relay_.sqlPrepared()) {
    // SQL-level PREPARE made statements that would outlive the transaction on a shared server,
    // where another client could EXECUTE them: drop them now. The client's next EXECUTE fails
    // cleanly with "does not exist" instead of running on whichever server it gets.
    relay_.clearSqlPrepared();
    resetting_ = true;
    deallocating_ = true;
    startInternalQuery("DEALLOCATE ALL", ServerState::Resetting);
    c->processPending();
    return;
  }
  setState(ServerState::Idle);
  pool_.serverIdle(*this);
  if (state_ == ServerState::Idle && !sock_.in.empty()) processInternal();
  c->processPending();
}

void ServerSession::unlink(bool clientQuiet) {
  auto* c = client_;
  bool opsSettled = relay_.idle() && !sock_.hasPendingOutput();
  relay_.unlinked();
  client_ = nullptr;
  toClient_ = {};
  releaseAfterFlush_ = false;
  if (state_ == ServerState::Setup) return;  // internalQueryDone() finds no client and idles
  if (state_ != ServerState::Active) return;
  bool atBoundary = clientQuiet && opsSettled && txStatus_ == 'I';
  if (!atBoundary) {
    if (c && c->pendingReady() > 0) sendCancel();
    close(txStatus_ == 'I' ? "client disconnected with a query running"
                           : "client disconnected inside a transaction");
    return;
  }
  if (relay_.leftState()) {
    close("client left session state");
    return;
  }
  sock_.in.consume(sock_.in.readable());  // stale async messages meant for that client
  const auto& cfg = worker_.config();
  bool reset = !cfg.serverResetQuery.empty() &&
               (pool_.mode() == config::PoolMode::Session || cfg.serverResetQueryAlways);
  if (reset) {
    resetting_ = true;
    startInternalQuery(cfg.serverResetQuery, ServerState::Resetting);
  } else {
    setState(ServerState::Idle);
    pool_.serverIdle(*this);
  }
}

void ServerSession::sendCancel() {
  if (backendPid_ == 0) return;
  CancelSender::send(worker_.loop(), endpoint_, backendPid_, backendKey_);
}

void ServerSession::close(std::string_view reason) {
  if (state_ == ServerState::Closed) return;
  auto* c = client_;
  relay_.unlinked();
  client_ = nullptr;
  bool wasLoggedIn = state_ != ServerState::Connecting && state_ != ServerState::Login;
  if (wasLoggedIn)
    log::pool().info("S-{}: {}/{}@{} closing because: {} (age={}s)", id_, pool_.database(),
                     pool_.user(), endpoint_.text, reason, (worker_.nowMs() - createdAtMs_) / 1000);
  if (sock_.isOpen() && wasLoggedIn) {
    protocol::writeTerminate(sock_.out);
    (void)sock_.send();
  }
  setState(ServerState::Closed);
  pool_.serverClosed(*this);
  if (c) c->serverLost(reason);
  sock_.close();
}

void ServerSession::onSocketClosed() {
  delete this;
}

}  // namespace usher::pool
