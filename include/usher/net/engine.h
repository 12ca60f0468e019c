// Engine: the workers of one usher process and what they share. Each worker is a complete pooler
// on its own loop and thread; they meet only through the shared pool state (atomics) and mail:
// a task posted to a worker runs on that worker's thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "usher/base/result.h"
#include "usher/config/config.h"
#include "usher/pool/shared_pool.h"

namespace usher::net {

class Worker;
using Task = std::move_only_function<void(Worker&)>;

// SIGTERM/SIGINT/SIGHUP before the loop's handlers are in place (`docker stop` right after
// start) are remembered and acted on once they are, instead of killing the process.
void catchEarlySignals();
int takeEarlySignal();

class Engine {
 public:
  // Cancel keys carry the index of the worker that issued them in their low bits.
  static constexpr int kMaxWorkers = 256;

  explicit Engine(config::ConfigPtr config);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Every worker's listeners (before dropping privileges or daemonizing).
  Result<void> listen();
  // Workers 1..N-1 on their own threads, worker 0 on this one; returns when all have stopped.
  void run();

  int size() const { return int(workers_.size()); }
  Worker& worker(int index) { return *workers_[size_t(index)]; }
  pool::SharedPools& sharedPools() { return sharedPools_; }
  // Client and server ids, unique in the process (SHOW CLIENTS id, log lines).
  uint64_t nextId() { return lastId_.fetch_add(1, std::memory_order_relaxed) + 1; }
  // Clients connected to any worker (max_client_conn).
  std::atomic<int> clients{0};

  // Runs `task` on worker `index`'s thread. False (the task is dropped) when it has stopped.
  bool post(int index, Task task);
  // Runs `fn` on every worker but `except` (-1: on all).
  void broadcast(int except, const std::function<void(Worker&)>& fn);
  // Runs `collect` on every worker, each on its own thread, then `done` on worker `origin`.
  void gather(int origin, std::function<void(Worker&)> collect, Task done);
  // A new config from RELOAD, SIGHUP or the console's SET: logging, then every worker.
  void applyConfig(int origin, config::ConfigPtr next);
  // A worker's loop ended (called on its thread).
  void workerStopped(int index);
  int running() const { return running_.load(); }

 private:
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<std::thread> threads_;
  pool::SharedPools sharedPools_;
  std::atomic<uint64_t> lastId_{0};
  std::atomic<int> running_{0};
};

}  // namespace usher::net
