// What the workers' copies of one pool share: the server count the limits apply to, which worker
// holds idle servers and whose waiting client came first. Lock-free: each worker writes only its
// own slots; the others read them when they need to decide where a server goes.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "usher/pool/param_set.h"
#include "usher/pool/prepared.h"

namespace usher::pool {

inline constexpr uint64_t kNobodyWaits = UINT64_MAX;

// A count of servers shared by workers; tryAdd() never lets it pass the limit.
class SharedCounter {
 public:
  // limit <= 0: unlimited.
  bool tryAdd(int limit);
  void sub() { value_.fetch_sub(1, std::memory_order_relaxed); }
  int value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<int> value_{0};
};

class SharedPool {
 public:
  SharedPool(std::string database, std::string user, int workers);

  const std::string& database() const { return database_; }
  const std::string& user() const { return user_; }

  SharedCounter servers;  // open or opening, on every worker: pool_size applies to it
  SharedStatements statements;

  // Written by the owning worker: when its oldest waiting client began waiting (monotonic µs,
  // kNobodyWaits when none waits), and how many idle servers it holds. Each on its own cache
  // line: the idle count changes every transaction, the waiter slot only while clients wait.
  void publishOldestWaiter(int worker, uint64_t waitStartUs);
  void publishIdle(int worker, int idle);
  // The worker whose waiting client has waited longest (-1: nobody waits).
  int oldestWaiter(uint64_t* since = nullptr) const;
  // A worker other than `self` holding an idle server (-1: none).
  int workerWithIdle(int self) const;
  bool othersWaitLonger(int self, uint64_t than) const;

  // The parameters PostgreSQL announced at the pool's first login, for every worker's clients
  // (a worker may have clients before it has a server of its own). False: not known yet.
  bool welcome(ParamSet& into) const;
  void setWelcome(const ParamSet& params);

 private:
  struct alignas(64) WaiterSlot {
    std::atomic<uint64_t> oldest{kNobodyWaits};
  };
  struct alignas(64) IdleSlot {
    std::atomic<int> idle{0};
  };
  std::string database_;
  std::string user_;
  int workers_;
  std::unique_ptr<WaiterSlot[]> waiters_;
  std::unique_ptr<IdleSlot[]> idle_;
  mutable std::mutex welcomeMutex_;
  std::optional<ParamSet> welcome_;
};

// Process-wide: one SharedPool per (database, user), and server counts per database and per user
// for max_db_connections and max_user_connections. Entries live as long as the process, so
// workers keep plain pointers to them. The mutex is taken only when a worker creates a pool.
class SharedPools {
 public:
  explicit SharedPools(int workers) : workers_(workers) {}
  SharedPool& pool(const std::string& database, const std::string& user);
  SharedCounter& database(const std::string& name);
  SharedCounter& user(const std::string& name);
  size_t poolCount() const;

 private:
  mutable std::mutex mutex_;
  int workers_;
  std::map<std::pair<std::string, std::string>, std::unique_ptr<SharedPool>> pools_;
  std::map<std::string, std::unique_ptr<SharedCounter>, std::less<>> databases_;
  std::map<std::string, std::unique_ptr<SharedCounter>, std::less<>> users_;
};

}  // namespace usher::pool
