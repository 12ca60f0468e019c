// ServerSession: one connection from usher to PostgreSQL, from connect and login to close.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "usher/auth/scram.h"
#include "usher/base/intrusive_list.h"
#include "usher/base/result.h"
#include "usher/net/address.h"
#include "usher/net/socket.h"
#include "usher/pool/param_set.h"
#include "usher/pool/statement_relay.h"

namespace usher::client {
class ClientSession;
}
namespace usher::net {
class Worker;
}

namespace usher::pool {

class Pool;
class SharedCounter;

// An idle, logged-in server on its way from one worker to another: everything its ServerSession
// knows that outlives a link. If it is dropped undelivered (the other worker stopped), the
// connection is closed and its places in the shared counts are given back.
struct ServerTransfer {
  ServerTransfer() = default;
  ServerTransfer(const ServerTransfer&) = delete;
  ServerTransfer& operator=(const ServerTransfer&) = delete;
  ~ServerTransfer();

  int fd = -1;
  uint64_t id = 0;
  net::Endpoint endpoint;
  ParamSet params;
  ParamSet localSets;
  int32_t backendPid = 0;
  int32_t backendKey = 0;
  int64_t createdAtMs = 0;
  int64_t lastUsedMs = 0;
  std::vector<std::pair<uint64_t, std::string>> statements;
  SharedCounter* slots[3] = {};  // pool, database, user
};

// Lifecycle. setState() is the only writer and checks these edges:
//
//   from \ to   Login  Idle  Active  Setup  Resetting  Closed
//   Connecting    x                                       x     connected / failed, timed out
//   Login               x                                 x     ReadyForQuery / auth failed
//   Idle                      x       x                   x     linked (setup if params differ)
//   Setup                     x                           x     our SET answered
//   Active              x                    x            x     released (reset query if needed)
//   Resetting           x                                 x     reset query answered
//
// In Setup and Resetting the server is running a query of usher's own; its replies are consumed
// here and never reach a client.
enum class ServerState { Connecting, Login, Idle, Setup, Active, Resetting, Closed };
const char* toString(ServerState s);

class ServerSession final : public net::SocketOwner {
 public:
  ServerSession(net::Worker& worker, Pool& pool, uint64_t id);
  ~ServerSession();

  // Takes a socket whose nonblocking connect to `ep` is under way. False if it cannot be
  // polled (the caller then deletes the session; nothing else refers to it yet).
  bool start(int fd, const net::Endpoint& ep);
  // Hand-over between workers. readyToMove(): idle with nothing buffered. handOff() posts it to
  // worker `to` and frees this session; adopt() recreates it there, idle, in `pool`.
  bool readyToMove() const;
  void handOff(int to);
  static void adopt(net::Worker& worker, Pool& pool, std::unique_ptr<ServerTransfer> transfer);

  ServerState state() const { return state_; }
  uint64_t id() const { return id_; }
  Pool& pool() { return pool_; }
  client::ClientSession* client() const { return client_; }
  const net::Endpoint& endpoint() const { return endpoint_; }
  int32_t backendPid() const { return backendPid_; }
  int32_t backendKey() const { return backendKey_; }
  const ParamSet& params() const { return params_; }
  int64_t createdAtMs() const { return createdAtMs_; }
  int64_t lastUsedMs() const { return lastUsedMs_; }
  int64_t stateSinceMs() const { return stateSinceMs_; }
  // Ready for a transaction boundary: ReadyForQuery 'I' seen, nothing of ours in flight.
  char txStatus() const { return txStatus_; }

  // Pool → server: link to a client. Runs the SET needed to give the server the client's
  // parameters first (state Setup), then tells the client to go on (clientLinked()).
  void link(client::ClientSession& client);
  // Client → server: the client is leaving. `clientQuiet`: the client has nothing unanswered in
  // flight; with ReadyForQuery 'I' that makes a clean boundary and the server is reused,
  // otherwise it is closed (after a CancelRequest if a query is running) so no transaction or
  // lock outlives the client.
  void unlink(bool clientQuiet);
  // Sends what is queued for the client (bytes read from us); called again when the client's
  // socket drains. Releases the server to the pool once a releasable ReadyForQuery went out.
  void flushToClient();
  net::Socket& socket() { return sock_; }
  net::Outflow& outflow() { return toClient_; }
  net::Worker& worker() { return worker_; }
  StatementRelay& relay() { return relay_; }
  bool relayActive() const { return mapsStatements_; }
  const StatementRelay& relay() const { return relay_; }
  // Login took too long (janitor).
  void abortLogin(const Error& error);
  // Closes the connection; `reason` is logged once. Safe to call more than once.
  void close(std::string_view reason);
  // Sends a CancelRequest for whatever this server is running, on a new connection.
  void sendCancel();

  ListNode poolNode;        // on exactly one of the pool's lists while not Closed
  uint64_t generation = 0;  // the pool's settings generation this server logged in with

 private:
  void onReadable() override;
  void onWritable() override;
  void onSocketClosed() override;

  void setState(ServerState next);
  void onConnected();
  void sendStartup();
  // Startup phase: one complete message. Returns false when the session was closed.
  bool handleLoginMessage(char tag, std::string_view payload);
  bool handleAuthRequest(std::string_view payload);
  // Active: scan the read buffer, approve bytes for the client, intercept what the pool needs.
  void processActive();
  // Setup/Resetting/Idle: consume complete messages ourselves.
  void processInternal();
  void startInternalQuery(std::string_view sql, ServerState during);
  void internalQueryDone();
  void failLogin(const Error& error, bool fromServer, std::string_view serverPayload = {});
  void trackParameterStatus(std::string_view payload, bool forwardToClient);
  bool releasable() const;

  net::Worker& worker_;
  Pool& pool_;
  uint64_t id_;
  net::Socket sock_;
  net::Outflow toClient_;
  net::Endpoint endpoint_;
  ServerState state_ = ServerState::Connecting;
  client::ClientSession* client_ = nullptr;
  ParamSet params_;
  int32_t backendPid_ = 0;
  int32_t backendKey_ = 0;
  char txStatus_ = 'I';
  int64_t createdAtMs_ = 0;
  int64_t lastUsedMs_ = 0;
  int64_t stateSinceMs_ = 0;
  bool releaseAfterFlush_ = false;
  bool resetting_ = false;  // Resetting runs the reset query (not connect_query)
  // Parameters PostgreSQL does not report (statement_timeout, ...) that usher SET for a client:
  // the next client that did not ask for them gets a RESET.
  ParamSet localSets_;
  std::optional<Error> internalError_;
  std::unique_ptr<auth::ScramClient> scram_;  // login only
  StatementRelay relay_;
  bool mapsStatements_ = false;  // this link maps statement names (the pool's mode, at link)
  bool deallocating_ = false;    // Resetting runs DEALLOCATE ALL after SQL-level PREPARE
};

}  // namespace usher::pool
