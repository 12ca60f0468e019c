// PoolManager: pools by (database, user) and the limits across them.
#include "usher/pool/pool_manager.h"

#include "usher/auth/scram.h"
#include "usher/base/log.h"
#include "usher/net/worker.h"

namespace usher::pool {

Pool* PoolManager::poolFor(const config::Config& config, std::string_view database,
                           std::string_view user) {
  const config::DatabaseConfig* db = config.findDatabase(database);
  if (!db) return nullptr;
  const config::UserConfig* userCfg = config.findUser(user);
  std::string poolUser = db->user.empty() ? std::string(user) : db->user;
  auto key = std::make_pair(std::string(database), poolUser);
  auto it = pools_.find(key);
  if (it == pools_.end()) {
    auto& shared = worker_.engine().sharedPools().pool(key.first, key.second);
    auto pool = std::make_unique<Pool>(worker_, *this, shared, key.first, key.second);
    pool->configure(config, *db, userCfg);
    if (worker_.paused() || worker_.databasePaused(key.first)) pool->pause();
    byShared_[&shared] = pool.get();
    it = pools_.emplace(key, std::move(pool)).first;
    log::pool().debug("new pool {}/{}", key.first, key.second);
  }
  return it->second.get();
}

void PoolManager::reconfigure(const config::Config& config) {
  for (auto& [key, pool] : pools_) {
    const config::DatabaseConfig* db = config.findDatabase(key.first);
    if (!db) {
      // Removed from the config: no new clients reach it (startup checks the config); its
      // servers close as they become idle.
      pool->closeAll("database removed from configuration");
      continue;
    }
    pool->configure(config, *db, config.findUser(key.second));
  }
  verifiers_.clear();
}

const auth::ScramVerifier& PoolManager::verifierFor(std::string_view user,
                                                    const auth::Secret& secret) {
  auto it = verifiers_.find(user);
  if (it != verifiers_.end() && it->second.secretText == secret.text()) return it->second.verifier;
  CachedVerifier cached{secret.text(), auth::makeVerifier(secret.text())};
  auto& slot = verifiers_[std::string(user)];
  slot = std::move(cached);
  return slot.verifier;
}

void PoolManager::sweep(int64_t nowMs) {
  for (auto& [key, pool] : pools_) pool->sweep(nowMs);
}

void PoolManager::closeAll(std::string_view reason) {
  for (auto& [key, pool] : pools_) pool->closeAll(reason);
}

size_t PoolManager::activeServers() const {
  size_t n = 0;
  for (const auto& [key, pool] : pools_) n += pool->activeCount();
  return n;
}

}  // namespace usher::pool
