// Pool: the server connections for one (database, user) pair, and the clients waiting for them.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "usher/auth/scram.h"
#include "usher/base/intrusive_list.h"
#include "usher/client/client_session.h"
#include "usher/config/config.h"
#include "usher/metrics/histogram.h"
#include "usher/net/address.h"
#include "usher/pool/param_set.h"
#include "usher/pool/prepared.h"
#include "usher/pool/server_session.h"
#include "usher/pool/shared_pool.h"

namespace usher::net {
class Worker;
}

namespace usher::pool {

class PoolManager;

using ServerList = IntrusiveList<ServerSession, &ServerSession::poolNode>;
using ClientList = IntrusiveList<client::ClientSession, &client::ClientSession::poolNode>;

// Counters as PgBouncer keeps them (SHOW STATS). Times in microseconds. One worker owns them:
// no atomics; the console sums pools.
struct PoolStats {
  uint64_t xactCount = 0;
  uint64_t queryCount = 0;
  uint64_t bytesReceived = 0;  // from clients
  uint64_t bytesSent = 0;      // to clients
  uint64_t xactTimeUs = 0;
  uint64_t queryTimeUs = 0;
  uint64_t waitTimeUs = 0;
  uint64_t serverAssignments = 0;
  uint64_t clientParses = 0;
  uint64_t serverParses = 0;  // Parse usher sent for clients' named statements
  uint64_t binds = 0;
  uint64_t logins = 0;
  metrics::Histogram xactTimes;  // for /metrics; SHOW STATS uses the sums above
  metrics::Histogram queryTimes;

  PoolStats& operator+=(const PoolStats& o);
  PoolStats minus(const PoolStats& o) const;
};

// What usher logs in to PostgreSQL with, for this pool.
struct ServerLogin {
  std::string user;
  std::string database;
  auth::Secret secret;  // may be empty (trust) or a SCRAM verifier (pass-through)
};

// One worker's part of a pool. The workers' parts of one (database, user) share a SharedPool:
// pool_size and the database and user limits count servers on every worker, and a server that
// goes idle is given to the client that has waited longest on any worker (handed over to that
// worker when it is not this one).
class Pool {
 public:
  Pool(net::Worker& worker, PoolManager& manager, SharedPool& shared, std::string database,
       std::string user);
  ~Pool();

  const std::string& database() const { return database_; }
  const std::string& user() const { return user_; }
  // The settings this pool follows, from the current config snapshot (refreshed on reload).
  void configure(const config::Config& config, const config::DatabaseConfig& db,
                 const config::UserConfig* user);
  config::PoolMode mode() const { return mode_; }
  const ServerLogin& login() const { return login_; }
  const std::vector<std::pair<std::string, std::string>>& serverParams() const {
    return startupParams_;
  }
  const std::string& connectQuery() const { return connectQuery_; }

  // Client side.
  // A client that authenticated: welcome it now if the server parameters are known, otherwise
  // once the first server has logged in.
  void clientLoggedIn(client::ClientSession& client);
  // A client with a transaction to run: link an idle server or queue it (FIFO).
  void acquire(client::ClientSession& client);
  // A client that leaves the pool (closed, timed out, killed).
  void forgetClient(client::ClientSession& client);
  // SCRAM keys of a client that logged in against this pool's user verifier: lets usher log in
  // to PostgreSQL with the same verifier (pass-through).
  void rememberScramKeys(const auth::Key32& clientKey, const auth::ScramVerifier& verifier);

  // Server side (called by ServerSession).
  void serverLoggedIn(ServerSession& server);
  void serverIdle(ServerSession& server);  // released clean, or reset done
  void serverClosed(ServerSession& server);
  void serverLoginFailed(ServerSession& server, const Error& error, std::string_view serverError);
  void serverStateChanged(ServerSession& server);  // moves it to the list of its state
  // Hand-over between workers: an idle server left for another worker / arrived from one.
  void serverLeft(ServerSession& server);
  void serverArrived(ServerSession& server);
  // Another worker has clients waiting: give them idle servers of this worker.
  void serveOtherWorkers();
  SharedPool& shared() { return shared_; }
  // The shared counts a server of this pool holds a place in (released when it closes).
  struct Slots {
    SharedCounter* pool;
    SharedCounter* database;
    SharedCounter* user;
    void release() const;
  };
  Slots slots() const { return {&shared_.servers, dbServers_, userServers_}; }
  std::optional<auth::ScramClient> scramForLogin() const;

  // The parameters PostgreSQL announced at the first login: sent to every client at its login.
  bool welcomeKnown() const { return welcomeKnown_; }
  // The first login on any worker made them known (SharedPool::welcome).
  void welcomeArrived();
  const ParamSet& welcome() const { return welcome_; }

  // Janitor: timeouts, connection retries, min_pool_size, idle/lifetime closing.
  void sweep(int64_t nowMs);
  void closeAll(std::string_view reason);

  // Counts on this worker (for logs and the admin console); the limits use the shared counts.
  size_t serverCount() const { return serverCount_; }
  size_t idleCount() const { return idle_.size(); }
  size_t activeCount() const { return active_.size(); }
  size_t waitingCount() const { return waiting_.size() + loginWaiting_.size(); }
  size_t clientCount() const { return clients_.size() + waitingCount(); }
  size_t activeClientCount() const { return clients_.size(); }
  size_t loginCount() const { return pending_.size(); }
  size_t resettingCount();
  // Oldest waiting client's wait, in microseconds (0 when nobody waits).
  uint64_t maxWaitUs(uint64_t nowUs);

  // PAUSE / RESUME / RECONNECT / KILL from the console.
  void pause() { paused_ = true; }
  void resume();
  bool paused() const { return paused_; }
  void reconnect();                    // servers close as they are released
  void kill(std::string_view reason);  // drops every client and server now
  bool needsClose(const ServerSession& s) const { return s.generation != generation_; }

  template <class F>
  void forEachClient(F&& f) {
    clients_.forEach(f);
    waiting_.forEach(f);
    loginWaiting_.forEach(f);
  }
  template <class F>
  void forEachServer(F&& f) {
    active_.forEach(f);
    idle_.forEach(f);
    pending_.forEach(f);
  }
  int poolSize() const { return poolSize_; }
  int minPoolSize() const { return minPoolSize_; }
  int reservePool() const { return reservePool_; }
  const std::string& host() const { return host_; }
  int port() const { return port_; }

  // Named prepared statements of this pool's clients, shared when identical.
  StatementRegistry statements;
  // Transaction/statement mode with max_prepared_statements > 0: statement names are mapped.
  bool mapsStatements() const;

  PoolStats stats;
  PoolStats averages;  // per second over the last stats_period
  PoolStats lastPeriodTotals;
  void rollStatsPeriod(double seconds);
  bool hasDemand() const { return !waiting_.empty() || !loginWaiting_.empty(); }

 private:
  void launchIfNeeded(int64_t nowMs);
  int serverLimit(int64_t nowMs);
  bool mayOpenServer(int64_t nowMs);
  // Opens a server if the shared counts stay within `limit` and the database and user limits.
  void openServer(int limit);
  bool reserveServer(int limit);
  // Idle servers to the clients that waited longest, here or on other workers. `oncePerWorker`:
  // at most one server to each other worker (it asks again while it still has waiters).
  void dispatchIdle(bool oncePerWorker);
  void handOff(ServerSession& server, int toWorker);
  // The waiting list changed: publish when its oldest client began waiting.
  void publishWaiters();
  // Clients wait here while another worker has idle servers: ask it for one.
  void askOtherWorkers();
  void resolve();
  void link(client::ClientSession& client, ServerSession& server);
  void connectFailed(const Error& error, std::string_view serverError);
  void failWaiters(const Error& error, std::string_view serverError);

  net::Worker& worker_;
  PoolManager& manager_;
  SharedPool& shared_;
  SharedCounter* dbServers_ = nullptr;
  SharedCounter* userServers_ = nullptr;
  int dbLimit_ = 0;
  int userLimit_ = 0;
  std::string database_;
  std::string user_;

  // Settings from the config snapshot.
  config::PoolMode mode_ = config::PoolMode::Session;
  int poolSize_ = 20;
  int minPoolSize_ = 0;
  int reservePool_ = 0;
  int64_t reserveTimeoutMs_ = 5000;
  uint64_t fifoSlackUs_ = 0;
  std::string host_;
  int port_ = 5432;
  std::string dbKey_;  // database name used for max_db_connections accounting
  ServerLogin login_;
  std::vector<std::pair<std::string, std::string>> startupParams_;
  std::string connectQuery_;

  // Where the server is: resolved once and cached (DNS only off the loop's critical path).
  std::optional<net::Endpoint> endpoint_;
  int64_t endpointResolvedMs_ = 0;
  bool resolving_ = false;
  size_t awaitingResolve_ = 0;
  // Bumped when the connection settings change; servers of an older generation are closed
  // instead of reused.
  uint64_t generation_ = 0;

  ServerList pending_;  // Connecting / Login
  ServerList idle_;
  ServerList active_;   // Setup / Active / Resetting
  ClientList clients_;  // logged in, not waiting: idle or linked (PgBouncer's cl_active)
  ClientList waiting_;
  ClientList loginWaiting_;
  bool paused_ = false;
  size_t serverCount_ = 0;

  bool welcomeKnown_ = false;
  ParamSet welcome_;

  std::optional<auth::Key32> scramClientKey_;
  std::optional<auth::ScramVerifier> scramVerifier_;

  // Connection failures: retry with a short backoff, and tell waiting clients at once when the
  // pool has no server at all (PgBouncer makes them wait up to query_wait_timeout).
  int failures_ = 0;
  int64_t nextAttemptMs_ = 0;
  int64_t backoffCapMs_ = 1000;

  friend class PoolManager;
};

}  // namespace usher::pool
