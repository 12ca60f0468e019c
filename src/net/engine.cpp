// Engine: starts the workers, carries mail between them, and applies what concerns them all.
#include "usher/net/engine.h"

#include <algorithm>
#include <csignal>

#include "usher/base/log.h"
#include "usher/net/worker.h"

namespace usher::net {

namespace {
volatile std::sig_atomic_t gEarlySignal = 0;
void rememberSignal(int signum) {
  gEarlySignal = signum;
}
}  // namespace

void catchEarlySignals() {
  for (int s : {SIGTERM, SIGINT, SIGHUP}) std::signal(s, rememberSignal);
}

int takeEarlySignal() {
  int s = gEarlySignal;
  gEarlySignal = 0;
  return s;
}

Engine::Engine(config::ConfigPtr config)
    : sharedPools_(std::clamp(config->workers, 1, kMaxWorkers)) {
  int n = std::clamp(config->workers, 1, kMaxWorkers);
  for (int i = 0; i < n; ++i) workers_.push_back(std::make_unique<Worker>(*this, i, config));
}

Engine::~Engine() {
  // Workers are destroyed in reverse order, each after its thread has ended (run() joined them).
  while (!workers_.empty()) workers_.pop_back();
}

Result<void> Engine::listen() {
  for (size_t i = 0; i < workers_.size(); ++i)
    if (auto ok = workers_[i]->listen(i == 0 ? nullptr : workers_[0].get()); !ok) return ok;
  return {};
}

void Engine::run() {
  running_ = size();
  workers_[0]->installSignalHandlers();  // before the other threads exist
  for (size_t i = 1; i < workers_.size(); ++i) {
    threads_.emplace_back([this, i] {
      workers_[i]->run();
      workerStopped(int(i));
    });
  }
  workers_[0]->run();
  for (auto& t : threads_) t.join();
  threads_.clear();
}

void Engine::workerStopped(int index) {
  running_.fetch_sub(1);
  log::main().debug("worker {} stopped", index);
  // Worker 0 waits for the others before it stops (it holds the signal handlers).
  post(0, [](Worker& w) { w.checkShutdownDone(); });
}

bool Engine::post(int index, Task task) {
  if (index < 0 || index >= size()) return false;
  return workers_[size_t(index)]->post(std::move(task));
}

void Engine::broadcast(int except, const std::function<void(Worker&)>& fn) {
  for (int i = 0; i < size(); ++i)
    if (i != except) post(i, [fn](Worker& w) { fn(w); });
}

void Engine::gather(int origin, std::function<void(Worker&)> collect, Task done) {
  struct State {
    std::atomic<int> remaining;
    std::function<void(Worker&)> collect;
    Task done;
    int origin;
  };
  auto state = std::make_shared<State>();
  state->remaining = size();
  state->collect = std::move(collect);
  state->done = std::move(done);
  state->origin = origin;
  auto finishOne = [this](const std::shared_ptr<State>& s) {
    if (s->remaining.fetch_sub(1) != 1) return;
    post(s->origin, [s](Worker& w) { s->done(w); });
  };
  for (int i = 0; i < size(); ++i) {
    bool posted = post(i, [state, finishOne](Worker& w) {
      state->collect(w);
      finishOne(state);
    });
    if (!posted) finishOne(state);  // a stopped worker has nothing to report
  }
}

void Engine::applyConfig(int origin, config::ConfigPtr next) {
  const auto& running = worker(origin).config();
  if (next->listenAddrs != running.listenAddrs || next->listenPort != running.listenPort ||
      next->unixSocketDir != running.unixSocketDir)
    log::config().warn("listen_addr, listen_port and unix_socket_dir take effect at restart");
  log::setup(
      {next->logFile, next->logFormat == config::LogFormat::Json, next->verbose, next->quiet});
  worker(origin).applyConfig(next);
  broadcast(origin, [next](Worker& w) { w.applyConfig(next); });
}

}  // namespace usher::net
