// Worker: the loop, the listeners, accepting clients, cancel keys, reload and shutdown.
#include "usher/net/worker.h"

#include <fcntl.h>
#include <sodium.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstring>

#include "usher/admin/console.h"
#include "usher/base/log.h"
#include "usher/base/random.h"
#include "usher/janitor/janitor.h"
#include "usher/metrics/http_endpoint.h"

namespace usher::net {

Worker::Worker(Engine& engine, int index, config::ConfigPtr config)
    : engine_(engine),
      index_(index),
      config_(std::move(config)),
      buffers_(config_->pktBuf),
      pools_(*this) {
  uv_loop_init(&loop_);
  uv_async_init(&loop_, &mailAsync_, &Worker::onMail);
  mailAsync_.data = this;
  janitor_ = std::make_unique<janitor::Janitor>(*this);
  startTimeUnix_ = int64_t(time(nullptr));
}

Worker::~Worker() {
  closeMailbox();
  // Everything attached was closed by shutdown; run the loop once more to deliver close callbacks.
  uv_run(&loop_, UV_RUN_DEFAULT);
  uv_loop_close(&loop_);
}

// ---- mail from other workers -------------------------------------------------------------------

bool Worker::post(Task task) {
  {
    std::lock_guard lock(mailMutex_);
    if (!mailOpen_) return false;
    mail_.push_back(std::move(task));
    if (mail_.size() > 1) return true;  // the first one already woke the loop
  }
  uv_async_send(&mailAsync_);
  return true;
}

void Worker::onMail(uv_async_t* handle) {
  auto* w = static_cast<Worker*>(handle->data);
  {
    std::lock_guard lock(w->mailMutex_);
    w->mailRunning_.swap(w->mail_);
  }
  for (auto& task : w->mailRunning_) task(*w);
  w->mailRunning_.clear();
}

void Worker::closeMailbox() {
  std::vector<Task> left;
  {
    std::lock_guard lock(mailMutex_);
    if (!mailOpen_) return;
    mailOpen_ = false;
    left.swap(mail_);
  }
  // Tasks still queued run now (a server handed over is closed by its pool, a gather completes).
  for (auto& task : left) task(*this);
  uv_close(reinterpret_cast<uv_handle_t*>(&mailAsync_), nullptr);
}

// ---- listeners ---------------------------------------------------------------------------------

Result<void> Worker::listen(const Worker* first) {
  const auto& cfg = *config_;
  bool reusePort = engine_.size() > 1;
  if (first) {
    // The same TCP ports (the kernel spreads connections over the workers' sockets) and the same
    // Unix sockets (one file, so one socket: each worker polls a duplicate of it).
    for (const auto& other : first->listeners_) {
      int fd = -1;
      if (other->endpoint.isUnix()) {
        fd = ::fcntl(other->fd, F_DUPFD_CLOEXEC, 0);
        if (fd < 0)
          return failPlain("cannot share " + other->endpoint.text + ": " + std::strerror(errno));
      } else {
        auto opened = listenOn(other->endpoint, cfg.listenBacklog, true, cfg.unixSocketMode);
        if (!opened) return std::unexpected(opened.error());
        fd = *opened;
      }
      auto l = std::make_unique<Listener>();
      l->worker = this;
      l->fd = fd;
      l->endpoint = other->endpoint;
      uv_poll_init_socket(&loop_, &l->poll, l->fd);
      l->poll.data = l.get();
      uv_poll_start(&l->poll, UV_READABLE, &Worker::onAcceptable);
      listeners_.push_back(std::move(l));
    }
    return {};
  }
  std::vector<Endpoint> endpoints;
  auto tcp = listenEndpoints(cfg.listenAddrs, cfg.listenPort);
  if (!tcp) return std::unexpected(tcp.error());
  endpoints = std::move(*tcp);
  if (!cfg.unixSocketDir.empty()) {
    auto ep = unixEndpoint(cfg.unixSocketDir, cfg.listenPort);
    if (!ep) return std::unexpected(ep.error());
    endpoints.push_back(*ep);
  }
  if (endpoints.empty())
    return failPlain("nothing to listen on: set listen_addr or unix_socket_dir");
  if (!cfg.metricsListen.empty()) {
    metrics_ = std::make_unique<metrics::HttpEndpoint>(*this);
    if (auto ok = metrics_->listen(cfg.metricsListen); !ok) return ok;
  }
  for (const auto& ep : endpoints) {
    auto fd = listenOn(ep, cfg.listenBacklog, reusePort, cfg.unixSocketMode);
    if (!fd) return std::unexpected(fd.error());
    auto l = std::make_unique<Listener>();
    l->worker = this;
    l->fd = *fd;
    l->endpoint = ep;
    uv_poll_init_socket(&loop_, &l->poll, l->fd);
    l->poll.data = l.get();
    uv_poll_start(&l->poll, UV_READABLE, &Worker::onAcceptable);
    log::net().info("listening on {}{}", ep.text,
                    reusePort ? " (" + std::to_string(engine_.size()) + " workers)" : "");
    listeners_.push_back(std::move(l));
  }
  return {};
}

void Worker::onAcceptable(uv_poll_t* handle, int status, int) {
  auto* l = static_cast<Listener*>(handle->data);
  if (status < 0) return;
  l->worker->accept(*l);
}

void Worker::accept(Listener& listener) {
  // A bounded batch per wakeup keeps one busy listener from starving established connections.
  for (int i = 0; i < 64; ++i) {
    sockaddr_storage peer{};
    socklen_t len = sizeof peer;
    int fd = ::accept4(listener.fd, reinterpret_cast<sockaddr*>(&peer), &len,
                       SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK)
        log::net().warn("accept on {} failed: {}", listener.endpoint.text, std::strerror(errno));
      return;
    }
    tuneStream(fd, listener.endpoint);
    std::string peerName = listener.endpoint.isUnix() ? "unix" : peerText(peer, len);
    // Over max_client_conn the connection is still accepted: the refusal is sent after its
    // startup packet (so SSL negotiation and CancelRequests work), as PgBouncer does.
    bool overLimit =
        engine_.clients.fetch_add(1, std::memory_order_relaxed) >= config_->maxClientConn;
    int peerUid = -1;
    if (listener.endpoint.isUnix()) {
      ucred cred{};
      socklen_t credLen = sizeof cred;
      if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &credLen) == 0) peerUid = int(cred.uid);
    }
    auto* client = new client::ClientSession(*this, nextId(), std::move(peerName));
    clients_.pushBack(*client);
    if (!client->start(fd, overLimit, peerUid)) {
      clients_.remove(*client);
      engine_.clients.fetch_sub(1, std::memory_order_relaxed);
      delete client;
    }
  }
}

void Worker::clientClosed(client::ClientSession& client) {
  clients_.remove(client);
  engine_.clients.fetch_sub(1, std::memory_order_relaxed);
  if (shutdown_ != Shutdown::None) checkShutdownDone();
}

std::pair<int32_t, int32_t> Worker::issueCancelKey(client::ClientSession& client) {
  // The low byte names this worker, so whichever worker accepts the CancelRequest can route it.
  static_assert(Engine::kMaxWorkers == 256);
  int32_t pid;
  do {
    pid = int32_t((secureRandomU32() & 0x7fffff00u) | uint32_t(index_));
  } while (pid == 0 || cancelKeys_.contains(pid));
  int32_t key = int32_t(secureRandomU32());
  cancelKeys_.emplace(pid, &client);
  return {pid, key};
}

void Worker::forgetCancelKey(int32_t pid) {
  cancelKeys_.erase(pid);
}

void Worker::cancelRequested(int32_t pid, int32_t key) {
  int owner = int(uint32_t(pid) & 0xffu);
  if (owner != index_) {
    if (owner < engine_.size())
      engine_.post(owner, [pid, key](Worker& w) { w.cancelRequested(pid, key); });
    else
      log::net().debug("cancel request with an unknown key ignored");
    return;
  }
  auto it = cancelKeys_.find(pid);
  if (it == cancelKeys_.end()) {
    log::net().debug("cancel request with an unknown key ignored");
    return;
  }
  client::ClientSession* c = it->second;
  // Compare without leaking timing (the pid is public, the key is the secret).
  uint32_t a = uint32_t(c->cancelKey()), b = uint32_t(key);
  if (sodium_memcmp(&a, &b, sizeof a) != 0) {
    log::net().warn("C-{}: cancel request with a wrong key ignored", c->id());
    return;
  }
  if (auto* s = c->server()) {
    log::net().info("C-{}: forwarding cancel request to S-{}", c->id(), s->id());
    s->sendCancel();
  }
}

bool Worker::reload() {
  auto fresh = config::loadConfig(config_->path);
  if (!fresh) {
    log::config().error("reload failed, keeping the running configuration: {}",
                        fresh.error().message);
    return false;
  }
  if (auto& next = *fresh; next->workers != config_->workers)
    log::config().warn("workers takes effect at restart (running {})", engine_.size());
  engine_.applyConfig(index_, std::move(*fresh));
  log::config().info("configuration reloaded from {}", config_->path);
  return true;
}

void Worker::applyConfig(config::ConfigPtr next) {
  config_ = std::move(next);
  pools_.reconfigure(*config_);
}

namespace {
bool listed(const std::vector<std::string>& list, std::string_view name) {
  return std::find(list.begin(), list.end(), name) != list.end();
}
void setListed(std::vector<std::string>& list, const std::string& name, bool on) {
  auto it = std::find(list.begin(), list.end(), name);
  if (on && it == list.end()) list.push_back(name);
  if (!on && it != list.end()) list.erase(it);
}
}  // namespace

void Worker::pauseDatabase(const std::string& db, bool on) {
  setListed(pausedDatabases_, db, on);
}
bool Worker::databasePaused(std::string_view db) const {
  return listed(pausedDatabases_, db);
}
void Worker::disableDatabase(const std::string& db, bool on) {
  setListed(disabledDatabases_, db, on);
}
bool Worker::isDisabled(std::string_view db) const {
  return listed(disabledDatabases_, db);
}

void Worker::parkConsoleCommand(client::ClientSession& client, std::string db) {
  parked_.emplace_back(&client, std::move(db));
}

void Worker::forgetConsoleCommand(client::ClientSession& client) {
  std::erase_if(parked_, [&](const auto& p) { return p.first == &client; });
}

void Worker::poolQuiesced(pool::Pool&) {
  if (!parked_.empty()) admin::completePending(*this);
}

void Worker::closeListeners() {
  for (auto& l : listeners_) {
    auto* raw = l.release();
    uv_close(reinterpret_cast<uv_handle_t*>(&raw->poll), [](uv_handle_t* h) {
      auto* listener = static_cast<Listener*>(h->data);
      ::close(listener->fd);
      delete listener;
    });
  }
  listeners_.clear();
}

void Worker::beginShutdown(Shutdown mode) {
  if (shutdown_ != Shutdown::None) mode = Shutdown::Now;  // a second signal: stop now
  shutdown_ = mode;
  closeListeners();
  switch (mode) {
    case Shutdown::WaitForClients:
      log::main().info("shutting down when all clients have disconnected (SIGTERM again: now)");
      break;
    case Shutdown::WaitForServers:
      log::main().info("shutting down when all servers are released (SIGINT again: now)");
      break;
    case Shutdown::Now:
      log::main().info("shutting down now");
      break;
    case Shutdown::None:
      break;
  }
  checkShutdownDone();
}

void Worker::checkShutdownDone() {
  bool done = false;
  switch (shutdown_) {
    case Shutdown::None:
      return;
    case Shutdown::WaitForClients:
      done = clients_.empty();
      break;
    case Shutdown::WaitForServers:
      done = pools_.activeServers() == 0;
      break;
    case Shutdown::Now:
      done = true;
      break;
  }
  if (!done) return;
  // Worker 0 holds the signal handlers: it stops last, so a second signal still reaches usher.
  if (index_ == 0 && engine_.running() > 1) return;
  if (stopping_) return;
  stopping_ = true;
  // Close everything; uv_run returns once the last handle's close callback has run.
  clients_.forEach([](client::ClientSession& c) { c.close("usher shutting down"); });
  if (metrics_) metrics_->close();
  pools_.closeAll("usher shutting down");
  janitor_->stop();
  for (auto& s : signals_) uv_close(reinterpret_cast<uv_handle_t*>(&s), nullptr);
  closeMailbox();
}

void Worker::onSignal(uv_signal_t* handle, int signum) {
  static_cast<Worker*>(handle->data)->handleSignal(signum);
}

void Worker::handleSignal(int signum) {
  switch (signum) {
    case SIGHUP:
      reload();
      break;
    case SIGTERM:
      engine_.broadcast(-1, [](Worker& w) { w.beginShutdown(Shutdown::WaitForClients); });
      break;
    case SIGINT:
      engine_.broadcast(-1, [](Worker& w) { w.beginShutdown(Shutdown::WaitForServers); });
      break;
    case SIGUSR1:  // PgBouncer: PAUSE — new transactions wait, running ones finish
      log::main().info("SIGUSR1: pausing all pools");
      engine_.broadcast(-1, [](Worker& w) {
        w.setPaused(true);
        w.pools().forEach([](pool::Pool& p) { p.pause(); });
      });
      break;
    case SIGUSR2:  // PgBouncer: RESUME
      log::main().info("SIGUSR2: resuming");
      engine_.broadcast(-1, [](Worker& w) {
        w.setPaused(false);
        w.setSuspended(false);
        w.pools().forEach([&w](pool::Pool& p) {
          if (!w.databasePaused(p.database())) p.resume();
        });
      });
      break;
    default:
      break;
  }
}

void Worker::installSignalHandlers() {
  signals_.resize(5);
  int nums[] = {SIGHUP, SIGTERM, SIGINT, SIGUSR1, SIGUSR2};
  for (size_t i = 0; i < signals_.size(); ++i) {
    uv_signal_init(&loop_, &signals_[i]);
    signals_[i].data = this;
    uv_signal_start(&signals_[i], &Worker::onSignal, nums[i]);
  }
  if (int early = takeEarlySignal()) handleSignal(early);
}

void Worker::run() {
  janitor_->start();
  uv_run(&loop_, UV_RUN_DEFAULT);
}

}  // namespace usher::net
