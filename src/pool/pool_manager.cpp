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
    auto pool = std::make_unique<Pool>(worker_, *this, key.first, key.second);
    pool->configure(config, *db, userCfg);
    if (worker_.paused() || worker_.databasePaused(key.first)) pool->pause();
    it = pools_.emplace(key, std::move(pool)).first;
    log::pool().debug("new pool {}/{}", key.first, key.second);
  }
  dbLimit_[db->name] = db->maxDbConnections.value_or(config.maxDbConnections);
  int userLimit = config.maxUserConnections;
  if (userCfg && userCfg->maxUserConnections) userLimit = *userCfg->maxUserConnections;
  userLimit_[poolUser] = userLimit;
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
    dbLimit_[db->name] = db->maxDbConnections.value_or(config.maxDbConnections);
  }
  verifiers_.clear();
}

bool PoolManager::mayOpen(const Pool& pool) const {
  auto limitOk = [](const auto& counts, const auto& limits, const std::string& key) {
    auto l = limits.find(key);
    if (l == limits.end() || l->second <= 0) return true;
    auto c = counts.find(key);
    return c == counts.end() || c->second < l->second;
  };
  return limitOk(serversPerDb_, dbLimit_, pool.dbKey_) &&
         limitOk(serversPerUser_, userLimit_, pool.login().user);
}

void PoolManager::serverOpened(const Pool& pool) {
  ++serversPerDb_[pool.dbKey_];
  ++serversPerUser_[pool.login().user];
}

void PoolManager::serverGone(const Pool& pool) {
  if (auto it = serversPerDb_.find(pool.dbKey_); it != serversPerDb_.end() && it->second > 0)
    --it->second;
  if (auto it = serversPerUser_.find(pool.login().user);
      it != serversPerUser_.end() && it->second > 0)
    --it->second;
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
