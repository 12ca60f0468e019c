// Shared pool state: atomics only on the paths a transaction takes.
#include "usher/pool/shared_pool.h"

namespace usher::pool {

bool SharedCounter::tryAdd(int limit) {
  int n = value_.load(std::memory_order_relaxed);
  do {
    if (limit > 0 && n >= limit) return false;
  } while (!value_.compare_exchange_weak(n, n + 1, std::memory_order_relaxed));
  return true;
}

SharedPool::SharedPool(std::string database, std::string user, int workers)
    : database_(std::move(database)),
      user_(std::move(user)),
      workers_(workers),
      waiters_(std::make_unique<WaiterSlot[]>(size_t(workers))),
      idle_(std::make_unique<IdleSlot[]>(size_t(workers))) {}

// Sequentially consistent on both sides: a worker that starts waiting publishes, then looks for
// idle servers; a worker whose server goes idle publishes, then looks for waiters. One of the
// two always sees the other, so no client waits while a server idles elsewhere.
void SharedPool::publishOldestWaiter(int worker, uint64_t waitStartUs) {
  auto& slot = waiters_[size_t(worker)].oldest;
  if (slot.load(std::memory_order_relaxed) != waitStartUs) slot.store(waitStartUs);
}

void SharedPool::publishIdle(int worker, int idle) {
  auto& slot = idle_[size_t(worker)].idle;
  int before = slot.load(std::memory_order_relaxed);
  if (idle > before)
    slot.store(idle);
  else if (idle < before)
    slot.store(idle, std::memory_order_relaxed);  // taking a server needs no fence
}

int SharedPool::oldestWaiter(uint64_t* since) const {
  int best = -1;
  uint64_t bestSince = kNobodyWaits;
  for (int w = 0; w < workers_; ++w) {
    uint64_t s = waiters_[size_t(w)].oldest.load();
    if (s < bestSince) {
      bestSince = s;
      best = w;
    }
  }
  if (since) *since = bestSince;
  return best;
}

bool SharedPool::othersWaitLonger(int self, uint64_t than) const {
  for (int w = 0; w < workers_; ++w)
    if (w != self && waiters_[size_t(w)].oldest.load() < than) return true;
  return false;
}

int SharedPool::workerWithIdle(int self) const {
  int best = -1, most = 0;
  for (int w = 0; w < workers_; ++w) {
    if (w == self) continue;
    int n = idle_[size_t(w)].idle.load();
    if (n > most) {
      most = n;
      best = w;
    }
  }
  return best;
}

bool SharedPool::welcome(ParamSet& into) const {
  std::lock_guard lock(welcomeMutex_);
  if (!welcome_) return false;
  into = *welcome_;
  return true;
}

void SharedPool::setWelcome(const ParamSet& params) {
  std::lock_guard lock(welcomeMutex_);
  if (!welcome_) welcome_ = params;
}

SharedPool& SharedPools::pool(const std::string& database, const std::string& user) {
  std::lock_guard lock(mutex_);
  auto& slot = pools_[{database, user}];
  if (!slot) slot = std::make_unique<SharedPool>(database, user, workers_);
  return *slot;
}

namespace {
SharedCounter& counterIn(std::map<std::string, std::unique_ptr<SharedCounter>, std::less<>>& map,
                         const std::string& name) {
  auto& slot = map[name];
  if (!slot) slot = std::make_unique<SharedCounter>();
  return *slot;
}
}  // namespace

SharedCounter& SharedPools::database(const std::string& name) {
  std::lock_guard lock(mutex_);
  return counterIn(databases_, name);
}

SharedCounter& SharedPools::user(const std::string& name) {
  std::lock_guard lock(mutex_);
  return counterIn(users_, name);
}

size_t SharedPools::poolCount() const {
  std::lock_guard lock(mutex_);
  return pools_.size();
}

}  // namespace usher::pool
