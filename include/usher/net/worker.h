// Worker: one event loop and everything attached to it — listeners, client and server sessions,
// pools, the janitor. One worker is a complete pooler; the Engine runs several, one per thread.
#pragma once

#include <uv.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "usher/base/intrusive_list.h"
#include "usher/base/io_buffer.h"
#include "usher/client/client_session.h"
#include "usher/config/config.h"
#include "usher/net/address.h"
#include "usher/net/engine.h"
#include "usher/pool/pool_manager.h"

namespace usher::janitor {
class Janitor;
}
namespace usher::metrics {
class HttpEndpoint;
}

namespace usher::net {

using ClientList = IntrusiveList<client::ClientSession, &client::ClientSession::workerNode>;

// How the process is being stopped (PgBouncer's signal semantics).
enum class Shutdown {
  None,
  WaitForClients,  // SIGTERM: stop accepting; exit when the last client has left
  WaitForServers,  // SIGINT: stop accepting, hand out no server; exit when none is in use
  Now,             // second signal: close everything
};

class Worker {
 public:
  Worker(Engine& engine, int index, config::ConfigPtr config);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Opens the listeners (before dropping privileges or daemonizing). Worker 0 binds every
  // endpoint; the others bind the same TCP ports (SO_REUSEPORT) and share its Unix sockets.
  Result<void> listen(const Worker* first);
  // Runs the loop until shutdown completes.
  void run();

  Engine& engine() { return engine_; }
  int index() const { return index_; }
  // Called from any thread: runs `task` on this worker's loop. False once the worker stopped.
  bool post(Task task);

  uv_loop_t* loop() { return &loop_; }
  int64_t nowMs() { return int64_t(uv_now(&loop_)); }
  BufferPool& buffers() { return buffers_; }
  const config::Config& config() const { return *config_; }
  const config::ConfigPtr& configPtr() const { return config_; }
  pool::PoolManager& pools() { return pools_; }
  uint64_t nextId() { return engine_.nextId(); }

  // Client registry and cancel keys.
  void clientClosed(client::ClientSession& client);
  // A fresh (pid, key) pair for a client's BackendKeyData, unique among live clients.
  std::pair<int32_t, int32_t> issueCancelKey(client::ClientSession& client);
  void forgetCancelKey(int32_t pid);
  // A CancelRequest arrived with (pid, key): forward it to the server that client is using.
  void cancelRequested(int32_t pid, int32_t key);
  ClientList& clients() { return clients_; }

  // Signals and reload. reload() is false (and the running config stays) when loading failed;
  // otherwise every worker switches to the new config.
  bool reload();
  // Switch this worker to a new validated config (Engine::applyConfig calls it on each).
  void applyConfig(config::ConfigPtr next);
  // The signal handlers (worker 0 only), telling every worker.
  void installSignalHandlers();
  void handleSignal(int signum);

  // Console state: PAUSE/SUSPEND (all pools or per database) and DISABLE.
  bool paused() const { return paused_; }
  void setPaused(bool on) { paused_ = on; }
  bool suspended() const { return suspended_; }
  void setSuspended(bool on) { suspended_ = on; }
  void pauseDatabase(const std::string& db, bool on);
  bool databasePaused(std::string_view db) const;
  void disableDatabase(const std::string& db, bool on);
  bool isDisabled(std::string_view db) const;
  // Commands that answer later (PAUSE, SUSPEND, WAIT_CLOSE) wait here; `f(client, db)` returns
  // true when the command completed and can be dropped.
  void parkConsoleCommand(client::ClientSession& client, std::string db);
  void forgetConsoleCommand(client::ClientSession& client);
  template <class F>
  void forEachParkedConsoleCommand(F&& f) {
    for (size_t i = 0; i < parked_.size();) {
      if (f(*parked_[i].first, parked_[i].second))
        parked_.erase(parked_.begin() + long(i));
      else
        ++i;
    }
  }
  // The console's own row in SHOW STATS: each console command is one transaction and query.
  pool::PoolStats consoleStats;
  // A check of parked console commands is under way on every worker (console.cpp).
  bool consoleCheckInFlight = false;

  // A pool released its last active server while paused: parked commands may complete.
  void poolQuiesced(pool::Pool& pool);
  void beginShutdown(Shutdown mode);
  Shutdown shutdownMode() const { return shutdown_; }
  bool pausedForShutdown() const { return shutdown_ == Shutdown::WaitForServers; }
  // Called when the last client or the last active server goes away during shutdown.
  void checkShutdownDone();

  int64_t startTimeUnix() const { return startTimeUnix_; }

 private:
  struct Listener {
    Worker* worker;
    uv_poll_t poll;
    int fd;
    Endpoint endpoint;
  };
  static void onAcceptable(uv_poll_t* handle, int status, int events);
  void accept(Listener& listener);
  void closeListeners();
  static void onSignal(uv_signal_t* handle, int signum);
  static void onMail(uv_async_t* handle);
  void closeMailbox();

  Engine& engine_;
  int index_;
  uv_loop_t loop_{};
  config::ConfigPtr config_;
  BufferPool buffers_;
  pool::PoolManager pools_;
  std::unique_ptr<janitor::Janitor> janitor_;
  std::unique_ptr<metrics::HttpEndpoint> metrics_;
  int64_t startTimeUnix_ = 0;
  std::vector<std::unique_ptr<Listener>> listeners_;
  ClientList clients_;
  std::unordered_map<int32_t, client::ClientSession*> cancelKeys_;
  std::vector<uv_signal_t> signals_;
  bool paused_ = false;
  bool suspended_ = false;
  std::vector<std::string> pausedDatabases_;
  std::vector<std::string> disabledDatabases_;
  std::vector<std::pair<client::ClientSession*, std::string>> parked_;
  Shutdown shutdown_ = Shutdown::None;
  bool stopping_ = false;

  // Tasks posted by other threads (mailMutex_ guards mail_ and mailOpen_).
  std::mutex mailMutex_;
  std::vector<Task> mail_;
  std::vector<Task> mailRunning_;
  bool mailOpen_ = true;
  uv_async_t mailAsync_{};
};

}  // namespace usher::net
