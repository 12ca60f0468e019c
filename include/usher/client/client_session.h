// ClientSession: one application connection to usher, from startup and authentication through
// idle, waiting for a server and linked to one, to close.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>

#include "usher/auth/scram.h"
#include "usher/auth/secret.h"
#include "usher/base/intrusive_list.h"
#include "usher/base/result.h"
#include "usher/net/socket.h"
#include "usher/pool/param_set.h"
#include "usher/pool/prepared.h"
#include "usher/pool/statement_relay.h"
#include "usher/protocol/framer.h"

namespace usher::net {
class Worker;
}
namespace usher::pool {
class Pool;
class ServerSession;
}  // namespace usher::pool

namespace usher::client {

// Lifecycle. setState() is the only writer and checks these edges:
//
//   from \ to   Auth  LoginWait  Idle  Waiting  Linked  Closing
//   Startup      x                x                        x     startup packet / trust login
//   Auth                x         x                        x     password checked
//   LoginWait                     x                        x     pool learned server params
//   Idle                                x        x         x     first message of a transaction
//   Waiting                                      x         x     a server was assigned
//   Linked                        x     x                  x     released / lost (session mode)
//
// Closing is final: the socket is closing and the session is freed in its close callback.
enum class ClientState { Startup, Auth, LoginWait, Idle, Waiting, Linked, Closing };
const char* toString(ClientState s);

class ClientSession final : public net::SocketOwner {
 public:
  ClientSession(net::Worker& worker, uint64_t id, std::string peer);
  ~ClientSession();

  // `overLimit`: max_client_conn was reached; the startup packet gets a refusal (except for
  // the console). `peerUid`: the peer's uid on a Unix socket (SO_PEERCRED), -1 over TCP.
  bool start(int fd, bool overLimit = false, int peerUid = -1);

  ClientState state() const { return state_; }
  uint64_t id() const { return id_; }
  const std::string& user() const { return user_; }
  const std::string& database() const { return database_; }
  const std::string& peer() const { return peer_; }
  pool::Pool* pool() const { return pool_; }
  pool::ServerSession* server() const { return server_; }
  const pool::ParamSet& params() const { return params_; }
  net::Socket& socket() { return sock_; }
  net::Outflow& outflow() { return toServer_; }
  int64_t connectedAtMs() const { return connectedAtMs_; }
  int64_t stateSinceMs() const { return stateSinceMs_; }
  int32_t cancelPid() const { return cancelPid_; }
  int32_t cancelKey() const { return cancelKey_; }
  // Requests the server has yet to answer with ReadyForQuery, and whether extended-protocol
  // messages were sent since the last Sync: the server is kept until both are settled.
  int pendingReady() const { return pendingReady_; }
  bool unsynced() const { return unsynced_; }
  // The server answered one request; `status` is its transaction status. Counts the query (and
  // the transaction, when it ended) in the pool's statistics.
  void onReadyForQuery(char status);
  uint64_t waitStartUs() const { return waitStartUs_; }
  bool isAdmin() const { return admin_; }
  // Console support: a command that completes later (PAUSE, WAIT_CLOSE) parks the client here.
  void setAdminPending(uint8_t command) { adminPending_ = command; }
  uint8_t adminPending() const { return adminPending_; }
  net::Worker& worker() { return worker_; }
  int64_t lastReadyMs() const { return lastReadyMs_; }
  int64_t busySinceMs() const { return busySinceMs_; }
  // Its named and unnamed prepared statements (transaction pooling); null until it has some.
  pool::ClientStatements* statementsIfAny() const { return statements_.get(); }
  // What the server's StatementRelay works on while this client is linked.
  pool::RelayClient relayView() {
    return {&sock_.in, &toServer_, &sock_.out, &statements_, &discard_, &pendingReady_};
  }
  // What the client now believes a parameter is (it saw a ParameterStatus).
  void noteParameter(std::string_view name, std::string_view value);

  // Pool → client.
  void finishLogin();                        // server parameters are known: welcome it
  void linked(pool::ServerSession& server);  // a server is ours; Setup may still run
  void serverReady();                        // Setup done: forward what we hold
  void unlinked();                           // the server went back to the pool
  void serverLost(std::string_view reason);  // the linked server closed under us
  // Server → client: scan what the client sent and forward it (after a release or Setup).
  void processPending();
  // A message waits for the server to answer an earlier Parse (StatementRelay::Step::Wait).
  bool blockedOnRelay() const { return blockedOnRelay_; }
  void resumeAfterRelay() { processMessages(); }
  // Sends own output and the approved bytes to the server; called again when it drains.
  void flushToServer();
  // Ends the session with an ErrorResponse (severity FATAL). Logged once, counted, closed.
  void fail(std::string_view sqlstate, std::string_view message, std::string_view detail = {});
  // Relays a server's ErrorResponse payload (e.g. a login failure) and closes.
  void failWithServerError(std::string_view errorPayload);
  void close(std::string_view reason);
  // Sends what usher itself queued for this client (errors, console answers).
  void flushOwnOutput();

  ListNode workerNode;  // Worker's list of all clients
  ListNode poolNode;    // the pool's waiting list while Waiting / LoginWait

 private:
  void onReadable() override;
  void onWritable() override;
  void onSocketClosed() override;

  void setState(ClientState next);
  void processStartup();
  void handleStartupPacket(const uint8_t* data, size_t size);
  void beginAuth();
  void handleAuthMessage(char tag, std::string_view payload);
  void authSucceeded();
  void authFailed();
  // Scan the read buffer: approve messages for the server, handle Terminate, ask for a server.
  void processMessages();
  void processConsole();
  bool peerIsOwner() const;
  void requestStarted();
  // A named Parse + Sync between transactions, of SQL a server of the pool already accepted:
  // answered without taking a server. False (nothing consumed) when it does not apply.
  bool answerParseWithoutServer(const protocol::FrameHeader& h, size_t avail);
  void writeWelcome();

  net::Worker& worker_;
  uint64_t id_;
  std::string peer_;
  net::Socket sock_;
  net::Outflow toServer_;
  ClientState state_ = ClientState::Startup;
  std::string user_;
  std::string database_;
  pool::ParamSet params_;
  pool::Pool* pool_ = nullptr;
  pool::ServerSession* server_ = nullptr;
  int pendingReady_ = 0;
  bool unsynced_ = false;
  size_t discard_ = 0;
  std::unique_ptr<pool::ClientStatements> statements_;
  bool processing_ = false;      // inside processMessages(): re-entrant calls only note more work
  bool blockedOnRelay_ = false;  // a message waits for the server's answer to an earlier Parse
  int sslAnswers_ = 0;
  bool overLimit_ = false;
  int peerUid_ = -1;
  int32_t cancelPid_ = 0;
  int32_t cancelKey_ = 0;
  int64_t connectedAtMs_ = 0;
  int64_t stateSinceMs_ = 0;
  int64_t lastReadyMs_ = 0;
  uint64_t waitStartUs_ = 0;
  uint64_t queryStartUs_ = 0;
  uint64_t xactStartUs_ = 0;
  bool inXact_ = false;
  bool admin_ = false;  // connected to the console database ("pgbouncer" / "usher")
  uint8_t adminPending_ = 0;
  int64_t busySinceMs_ = 0;  // when the oldest unanswered request was sent

  // Only while authenticating.
  struct AuthExchange {
    enum class Method { Md5, Scram, Cleartext } method = Method::Scram;
    std::array<uint8_t, 4> md5Salt{};
    std::unique_ptr<auth::ScramServer> scram;
    bool scramFirstDone = false;
    bool userKnown = true;
    auth::Secret secret;
  };
  std::unique_ptr<AuthExchange> auth_;
};

}  // namespace usher::client
