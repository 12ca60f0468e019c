// Pool: hands idle servers to waiting clients first in, first out; opens servers within the
// limits; retries failed connections with a short backoff; enforces the pool timeouts.
#include "usher/pool/pool.h"

#include <uv.h>

#include <algorithm>

#include "usher/base/clock.h"
#include "usher/base/log.h"
#include "usher/net/worker.h"
#include "usher/pool/pool_manager.h"
#include "usher/protocol/params.h"

namespace usher::pool {
namespace {
constexpr int64_t kFirstRetryMs = 100;
constexpr int64_t kDnsTtlMs = 15000;  // PgBouncer's dns_max_ttl default
const char* kDefaultSocketDir = "/var/run/postgresql";

bool isNumericHost(const std::string& host) {
  return net::numericEndpoint(host, 1).has_value();
}
}  // namespace

bool isTrackedParam(std::string_view name, const std::vector<std::string>& trackExtra) {
  if (protocol::isDefaultTrackedParam(name)) return true;  // allocation-free: once per link
  for (const auto& extra : trackExtra)
    if (ParamSet::sameName(extra, name)) return true;
  return false;
}

Pool::Pool(net::Worker& worker, PoolManager& manager, SharedPool& shared, std::string database,
           std::string user)
    : statements(&shared.statements),
      worker_(worker),
      manager_(manager),
      shared_(shared),
      database_(std::move(database)),
      user_(std::move(user)) {}

Pool::~Pool() = default;

void Pool::configure(const config::Config& config, const config::DatabaseConfig& db,
                     const config::UserConfig* user) {
  mode_ = config.poolModeFor(db, user);
  poolSize_ = config.poolSizeFor(db, user);
  minPoolSize_ = db.minPoolSize.value_or(config.minPoolSize);
  reservePool_ = db.reservePool.value_or(config.reservePoolSize);
  reserveTimeoutMs_ = config.reservePoolTimeout;
  backoffCapMs_ = std::max<int64_t>(kFirstRetryMs, config.serverLoginRetry);
  dbKey_ = db.name;
  // worker_fifo_slack: strict order hands over about half the servers released in a saturated
  // pool (each hand-over is two epoll_ctl and a wake-up); with some slack, balanced queues keep
  // their servers.
  fifoSlackUs_ = uint64_t(config.workerFifoSlack) * 1000;
  dbLimit_ = db.maxDbConnections.value_or(config.maxDbConnections);
  userLimit_ =
      user && user->maxUserConnections ? *user->maxUserConnections : config.maxUserConnections;
  if (!dbServers_) {
    auto& shared = worker_.engine().sharedPools();
    dbServers_ = &shared.database(dbKey_);
    userServers_ = &shared.user(user_);
  }

  std::string host = db.host;
  bool moved = host != host_ || db.port != port_;
  host_ = host;
  port_ = db.port;

  ServerLogin login;
  login.user = db.user.empty() ? user_ : db.user;
  login.database = db.dbname.empty() ? database_ : db.dbname;
  if (!db.user.empty()) {
    login.secret = db.password;
  } else if (const auth::Secret* s = config.findSecret(user_)) {
    login.secret = *s;
  }
  bool loginChanged = login.user != login_.user || login.database != login_.database ||
                      login.secret.text() != login_.secret.text();
  login_ = std::move(login);
  startupParams_ = db.serverParams;
  connectQuery_ = db.connectQuery;

  if (moved || loginChanged) {
    // New connection settings: idle servers go now, busy ones when released (serverIdle()).
    endpoint_.reset();
    failures_ = 0;
    nextAttemptMs_ = 0;
    idle_.forEach([](ServerSession& s) { s.close("database configuration changed"); });
    generation_++;
  }
}

// ---- clients -----------------------------------------------------------------------------------

void Pool::clientLoggedIn(client::ClientSession& client) {
  ++stats.logins;
  if (!welcomeKnown_) welcomeArrived();  // another worker's server may have logged in meanwhile
  if (welcomeKnown_) {
    clients_.pushBack(client);  // before finishLogin(): it may go straight on to acquire()
    client.finishLogin();
    return;
  }
  loginWaiting_.pushBack(client);
  launchIfNeeded(worker_.nowMs());
}

void Pool::acquire(client::ClientSession& client) {
  if (!paused_ && !worker_.pausedForShutdown() && waiting_.empty() && !idle_.empty() &&
      !shared_.othersWaitLonger(worker_.index(), client.waitStartUs() - fifoSlackUs_)) {
    ServerSession* s = idle_.back();  // most recently used: warm caches, fewer servers in use
    link(client, *s);
    return;
  }
  clients_.remove(client);
  waiting_.pushBack(client);
  publishWaiters();
  if (paused_ || worker_.pausedForShutdown()) return;
  dispatchIdle(false);  // our idle servers, if any, go to whoever waited longest
  if (waiting_.contains(client)) {
    askOtherWorkers();
    launchIfNeeded(worker_.nowMs());
  }
}

void Pool::publishWaiters() {
  const client::ClientSession* oldest = waiting_.front();
  shared_.publishOldestWaiter(worker_.index(), oldest ? oldest->waitStartUs() : kNobodyWaits);
}

void Pool::askOtherWorkers() {
  if (waiting_.empty()) return;
  int other = shared_.workerWithIdle(worker_.index());
  if (other < 0) return;
  SharedPool* key = &shared_;
  worker_.engine().post(other, [key](net::Worker& w) {
    if (Pool* p = w.pools().find(*key)) p->serveOtherWorkers();
  });
}

void Pool::serveOtherWorkers() {
  dispatchIdle(true);
}

void Pool::dispatchIdle(bool oncePerWorker) {
  uint64_t servedWorkers = 0;  // bit per worker (first 64), for oncePerWorker
  while (!paused_ && !worker_.pausedForShutdown() && !idle_.empty()) {
    uint64_t since = 0;
    int to = shared_.oldestWaiter(&since);
    if (to < 0) return;
    const client::ClientSession* local = waiting_.front();
    if (to != worker_.index() && local && local->waitStartUs() <= since + fifoSlackUs_)
      to = worker_.index();  // within the slack: ours first, no hand-over
    if (to == worker_.index()) {
      if (waiting_.empty()) return;  // our slot is being rewritten; nothing to do here
      link(*waiting_.front(), *idle_.back());
      continue;
    }
    if (oncePerWorker && to < 64) {
      if (servedWorkers & (uint64_t(1) << to)) return;
      servedWorkers |= uint64_t(1) << to;
    }
    handOff(*idle_.back(), to);
  }
}

void Pool::handOff(ServerSession& server, int toWorker) {
  // A server with bytes of its own still buffered stays (rare: a notice while idle).
  if (!server.readyToMove()) {
    server.close("cannot hand over a server with unread input");
    return;
  }
  server.handOff(toWorker);
}

void Pool::serverLeft(ServerSession&) {
  if (serverCount_ > 0) --serverCount_;
}

void Pool::serverArrived(ServerSession& server) {
  ++serverCount_;
  server.generation = generation_;
  serverStateChanged(server);
  if (!waiting_.empty() || shared_.oldestWaiter() >= 0) dispatchIdle(false);
  askOtherWorkers();  // still waiting here: the next one, if another worker has it idle
}

void Pool::link(client::ClientSession& client, ServerSession& server) {
  if (waiting_.contains(client)) {
    waiting_.remove(client);
    stats.waitTimeUs += monotonicMicros() - client.waitStartUs();
    publishWaiters();
  }
  if (!clients_.contains(client)) clients_.pushBack(client);
  ++stats.serverAssignments;
  client.linked(server);
  server.link(client);
}

void Pool::forgetClient(client::ClientSession& client) {
  clients_.remove(client);
  loginWaiting_.remove(client);
  if (waiting_.contains(client)) {
    waiting_.remove(client);
    publishWaiters();
  }
}

void Pool::rememberScramKeys(const auth::Key32& clientKey, const auth::ScramVerifier& verifier) {
  if (login_.secret.kind() != auth::SecretKind::Scram) return;
  if (login_.secret.scram().storedKey != verifier.storedKey) return;
  scramClientKey_ = clientKey;
}

std::optional<auth::ScramClient> Pool::scramForLogin() const {
  if (login_.secret.kind() != auth::SecretKind::Scram || !scramClientKey_) return std::nullopt;
  return auth::ScramClient::withKeys(*scramClientKey_, login_.secret.scram().serverKey);
}

// ---- servers -----------------------------------------------------------------------------------

void Pool::serverStateChanged(ServerSession& server) {
  pending_.remove(server);
  idle_.remove(server);
  active_.remove(server);
  switch (server.state()) {
    case ServerState::Connecting:
    case ServerState::Login:
      pending_.pushBack(server);
      break;
    case ServerState::Idle:
      idle_.pushBack(server);
      break;
    case ServerState::Setup:
    case ServerState::Active:
    case ServerState::Resetting:
      active_.pushBack(server);
      break;
    case ServerState::Closed:
      break;
  }
  shared_.publishIdle(worker_.index(), int(idle_.size()));
}

void Pool::serverLoggedIn(ServerSession& server) {
  failures_ = 0;
  nextAttemptMs_ = 0;
  server.generation = generation_;
  if (!welcomeKnown_) {
    shared_.setWelcome(server.params());
    // Clients of this pool on other workers may be waiting for these parameters too.
    SharedPool* key = &shared_;
    worker_.engine().broadcast(worker_.index(), [key](net::Worker& w) {
      if (Pool* p = w.pools().find(*key)) p->welcomeArrived();
    });
    welcomeArrived();
  }
}

void Pool::welcomeArrived() {
  if (!welcomeKnown_ && !shared_.welcome(welcome_)) return;
  welcomeKnown_ = true;
  // Everyone who logged in while we learned the server's parameters is welcomed now.
  while (auto* c = loginWaiting_.popFront()) {
    clients_.pushBack(*c);
    c->finishLogin();
  }
}

void Pool::serverIdle(ServerSession& server) {
  int64_t now = worker_.nowMs();
  const auto& cfg = worker_.config();
  if (server.generation != generation_) {
    server.close("database configuration changed");
    return;
  }
  if (cfg.serverLifetime > 0 && now - server.createdAtMs() >= cfg.serverLifetime &&
      waiting_.empty()) {
    server.close("server lifetime over");
    return;
  }
  if (worker_.shutdownMode() == net::Shutdown::WaitForServers) {
    worker_.checkShutdownDone();
    return;
  }
  if (paused_) {
    worker_.poolQuiesced(*this);
    return;
  }
  // The client that waited longest gets it, on this worker or another (published idle first,
  // then looked for waiters: see SharedPool).
  dispatchIdle(false);
}

void Pool::serverClosed(ServerSession& server) {
  pending_.remove(server);
  idle_.remove(server);
  active_.remove(server);
  if (serverCount_ > 0) --serverCount_;
  slots().release();
  if (worker_.shutdownMode() != net::Shutdown::None) worker_.checkShutdownDone();
  // A place in the pool is free: clients waiting on another worker may open a server there.
  int other = shared_.oldestWaiter();
  if (other >= 0 && other != worker_.index()) {
    SharedPool* key = &shared_;
    worker_.engine().post(other, [key](net::Worker& w) {
      if (Pool* p = w.pools().find(*key)) p->launchIfNeeded(w.nowMs());
    });
  }
  // Someone may still be waiting: a replacement may be opened (within the backoff).
  if (hasDemand() && worker_.shutdownMode() == net::Shutdown::None) launchIfNeeded(worker_.nowMs());
}

void Pool::serverLoginFailed(ServerSession&, const Error& error, std::string_view serverError) {
  connectFailed(error, serverError);
}

void Pool::connectFailed(const Error& error, std::string_view serverError) {
  ++failures_;
  int64_t backoff = std::min(backoffCapMs_, kFirstRetryMs << std::min(failures_ - 1, 10));
  nextAttemptMs_ = worker_.nowMs() + backoff;
  // With no server at all there is nobody to serve the queue: tell the waiting clients now
  // instead of letting them sit until query_wait_timeout.
  if (shared_.servers.value() == 0) failWaiters(error, serverError);
}

void Pool::failWaiters(const Error& error, std::string_view serverError) {
  auto failOne = [&](client::ClientSession& c) {
    if (!serverError.empty())
      c.failWithServerError(serverError);
    else
      c.fail(error.sqlstate.empty() ? "08006" : error.sqlstate,
             "pgbouncer cannot connect to server", error.message);
  };
  loginWaiting_.forEach(failOne);
  waiting_.forEach(failOne);
}

int Pool::serverLimit(int64_t nowMs) {
  int limit = poolSize_;
  if (reservePool_ > 0) {
    const client::ClientSession* oldest = waiting_.front();
    if (oldest && nowMs - oldest->stateSinceMs() >= reserveTimeoutMs_) limit += reservePool_;
  }
  return limit;
}

bool Pool::mayOpenServer(int64_t nowMs) {
  if (nowMs < nextAttemptMs_ || paused_) return false;
  if (worker_.shutdownMode() != net::Shutdown::None) return false;
  if (shared_.servers.value() >= serverLimit(nowMs)) return false;
  auto within = [](const SharedCounter* c, int limit) { return limit <= 0 || c->value() < limit; };
  return within(dbServers_, dbLimit_) && within(userServers_, userLimit_);
}

// Exact across workers: the place is taken atomically in every count, or in none.
bool Pool::reserveServer(int limit) {
  if (!shared_.servers.tryAdd(limit)) return false;
  if (!dbServers_->tryAdd(dbLimit_)) {
    shared_.servers.sub();
    return false;
  }
  if (!userServers_->tryAdd(userLimit_)) {
    dbServers_->sub();
    shared_.servers.sub();
    return false;
  }
  return true;
}

void Pool::Slots::release() const {
  pool->sub();
  database->sub();
  user->sub();
}

void Pool::launchIfNeeded(int64_t nowMs) {
  size_t demand = waiting_.size() + (loginWaiting_.empty() ? 0 : 1);
  size_t underway = pending_.size() + awaitingResolve_;
  // Servers idle on another worker come here when asked (askOtherWorkers): cheaper than opening.
  if (!waiting_.empty() && shared_.workerWithIdle(worker_.index()) >= 0) return;
  while (demand > underway && mayOpenServer(nowMs)) {
    openServer(serverLimit(nowMs));
    ++underway;
  }
}

void Pool::openServer(int limit) {
  int64_t now = worker_.nowMs();
  bool needDns = !host_.empty() && host_[0] != '/' && !isNumericHost(host_);
  if (!endpoint_ || (needDns && now - endpointResolvedMs_ > kDnsTtlMs)) {
    if (!needDns) {
      auto ep = host_.empty() || host_[0] == '/'
                    ? net::unixEndpoint(host_.empty() ? kDefaultSocketDir : host_, port_)
                    : net::numericEndpoint(host_, port_);
      if (!ep) {
        connectFailed(Error{"08006", ep.error().message}, {});
        return;
      }
      endpoint_ = *ep;
      endpointResolvedMs_ = now;
    } else {
      resolve();
      return;
    }
  }
  if (!reserveServer(limit)) return;  // another worker took the last place meanwhile
  auto fd = net::connectStart(*endpoint_);
  if (!fd) {
    slots().release();
    connectFailed(
        Error{"08006", "connect to " + endpoint_->text + " failed: " + fd.error().message}, {});
    return;
  }
  auto* server = new ServerSession(worker_, *this, worker_.nextId());
  ++serverCount_;
  if (!server->start(*fd, *endpoint_)) {
    --serverCount_;
    slots().release();
    pending_.remove(*server);
    delete server;
    connectFailed(Error{"08006", "cannot poll the server socket"}, {});
  }
}

// Host names are resolved with uv_getaddrinfo on libuv's thread pool, never on the loop.
void Pool::resolve() {
  if (resolving_) return;
  resolving_ = true;
  ++awaitingResolve_;
  struct Request {
    uv_getaddrinfo_t req;
    Pool* pool;
  };
  auto* r = new Request{{}, this};
  r->req.data = r;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  std::string port = std::to_string(port_);
  int rc = uv_getaddrinfo(
      worker_.loop(), &r->req,
      [](uv_getaddrinfo_t* req, int status, addrinfo* res) {
        auto* r = static_cast<Request*>(req->data);
        Pool* pool = r->pool;
        pool->resolving_ = false;
        --pool->awaitingResolve_;
        if (status != 0 || !res) {
          pool->connectFailed(Error{"08006", "could not resolve host \"" + pool->host_ +
                                                 "\": " + uv_strerror(status)},
                              {});
        } else {
          net::Endpoint ep;
          std::memcpy(&ep.addr, res->ai_addr, res->ai_addrlen);
          ep.length = res->ai_addrlen;
          char text[INET6_ADDRSTRLEN] = {};
          uv_ip_name(res->ai_addr, text, sizeof text);
          ep.text = std::string(text) + ":" + std::to_string(pool->port_);
          pool->endpoint_ = ep;
          pool->endpointResolvedMs_ = pool->worker_.nowMs();
          pool->launchIfNeeded(pool->worker_.nowMs());
        }
        if (res) uv_freeaddrinfo(res);
        delete r;
      },
      host_.c_str(), port.c_str(), &hints);
  if (rc != 0) {
    resolving_ = false;
    --awaitingResolve_;
    delete r;
    connectFailed(Error{"08006", "could not resolve host \"" + host_ + "\": " + uv_strerror(rc)},
                  {});
  }
}

// ---- janitor -----------------------------------------------------------------------------------

void Pool::sweep(int64_t nowMs) {
  const auto& cfg = worker_.config();
  if (cfg.queryWaitTimeout > 0) {
    waiting_.forEach([&](client::ClientSession& c) {
      if (nowMs - c.stateSinceMs() >= cfg.queryWaitTimeout) c.fail("08P01", "query_wait_timeout");
    });
  }
  if (cfg.serverConnectTimeout > 0) {
    pending_.forEach([&](ServerSession& s) {
      if (nowMs - s.stateSinceMs() >= cfg.serverConnectTimeout)
        s.abortLogin(Error{
            "08006", "server_connect_timeout: no answer from " + s.endpoint().text + " in time"});
    });
  }
  idle_.forEach([&](ServerSession& s) {
    if (cfg.serverLifetime > 0 && nowMs - s.createdAtMs() >= cfg.serverLifetime) {
      s.close("server lifetime over");
    } else if (cfg.serverIdleTimeout > 0 && nowMs - s.lastUsedMs() >= cfg.serverIdleTimeout &&
               shared_.servers.value() > minPoolSize_) {
      s.close("server idle timeout");
    }
  });
  // Safety net for the hand-over between workers (a wake-up lost to a worker that was stopping).
  dispatchIdle(true);
  askOtherWorkers();
  launchIfNeeded(nowMs);
  // min_pool_size: only when usher can log in by itself (a password, not a verifier awaiting a
  // client's SCRAM keys) and the server is not failing. The count is shared: with several
  // workers the place is reserved against min_pool_size itself, so they never overshoot it.
  if (minPoolSize_ > 0 && failures_ == 0) {
    bool canLogin = login_.secret.kind() != auth::SecretKind::Scram || scramClientKey_;
    while (canLogin && shared_.servers.value() < minPoolSize_ && mayOpenServer(nowMs)) {
      size_t before = serverCount_;
      openServer(minPoolSize_);
      if (serverCount_ == before) break;
    }
  }
}

void Pool::resume() {
  paused_ = false;
  dispatchIdle(false);
  askOtherWorkers();
  launchIfNeeded(worker_.nowMs());
}

void Pool::reconnect() {
  ++generation_;
  idle_.forEach([](ServerSession& s) { s.close("RECONNECT"); });
}

void Pool::kill(std::string_view reason) {
  forEachClient([&](client::ClientSession& c) { c.fail("08P01", reason); });
  closeAll(reason);
}

size_t Pool::resettingCount() {
  size_t n = 0;
  active_.forEach([&](ServerSession& s) { n += s.state() == ServerState::Resetting; });
  return n;
}

bool Pool::mapsStatements() const {
  return mode_ != config::PoolMode::Session && worker_.config().maxPreparedStatements > 0;
}

uint64_t Pool::maxWaitUs(uint64_t nowUs) {
  const client::ClientSession* oldest = waiting_.front();
  return oldest ? nowUs - oldest->waitStartUs() : 0;
}

namespace {
// The plain counters of PoolStats, so sums and differences list them once.
constexpr uint64_t PoolStats::*kCounters[] = {
    &PoolStats::xactCount,     &PoolStats::queryCount,
    &PoolStats::bytesReceived, &PoolStats::bytesSent,
    &PoolStats::xactTimeUs,    &PoolStats::queryTimeUs,
    &PoolStats::waitTimeUs,    &PoolStats::serverAssignments,
    &PoolStats::clientParses,  &PoolStats::serverParses,
    &PoolStats::binds,         &PoolStats::logins};
}  // namespace

PoolStats& PoolStats::operator+=(const PoolStats& o) {
  for (auto m : kCounters) this->*m += o.*m;
  xactTimes += o.xactTimes;
  queryTimes += o.queryTimes;
  return *this;
}

PoolStats PoolStats::minus(const PoolStats& o) const {
  PoolStats d = *this;
  for (auto m : kCounters) d.*m -= o.*m;
  return d;
}

// PgBouncer's averages: per-second rates of the counts and bytes, and mean times per transaction
// and per query, over the last stats_period.
void Pool::rollStatsPeriod(double seconds) {
  PoolStats d = stats.minus(lastPeriodTotals);
  lastPeriodTotals = stats;
  PoolStats a;
  auto rate = [&](uint64_t v) { return uint64_t(double(v) / seconds); };
  a.xactCount = rate(d.xactCount);
  a.queryCount = rate(d.queryCount);
  a.bytesReceived = rate(d.bytesReceived);
  a.bytesSent = rate(d.bytesSent);
  a.xactTimeUs = d.xactCount ? d.xactTimeUs / d.xactCount : 0;
  a.queryTimeUs = d.queryCount ? d.queryTimeUs / d.queryCount : 0;
  a.waitTimeUs = d.serverAssignments ? d.waitTimeUs / d.serverAssignments : 0;
  a.serverAssignments = rate(d.serverAssignments);
  a.clientParses = rate(d.clientParses);
  a.serverParses = rate(d.serverParses);
  a.binds = rate(d.binds);
  a.logins = rate(d.logins);
  averages = a;
}

void Pool::closeAll(std::string_view reason) {
  for (auto* list : {&pending_, &idle_, &active_})
    list->forEach([&](ServerSession& s) { s.close(reason); });
}

}  // namespace usher::pool
