// PoolManager: one worker's pools by (database, user). The limits that span pools and workers
// (max_db_connections, max_user_connections) are shared counts the pools reserve in.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>

#include "usher/auth/secret.h"
#include "usher/config/config.h"
#include "usher/pool/pool.h"

namespace usher::net {
class Worker;
}

namespace usher::pool {

class PoolManager {
 public:
  explicit PoolManager(net::Worker& worker) : worker_(worker) {}

  // The pool for a client that asked for `database` as `user`; nullptr when the database is not
  // configured. Created on first use.
  Pool* poolFor(const config::Config& config, std::string_view database, std::string_view user);
  // After a reload: refresh every pool's settings; pools whose database vanished drain.
  void reconfigure(const config::Config& config);

  // This worker's part of a shared pool, if a client of it ever came here.
  Pool* find(const SharedPool& shared) const {
    auto it = byShared_.find(&shared);
    return it == byShared_.end() ? nullptr : it->second;
  }

  // SCRAM verifier for a user whose secret is a plaintext password: derived once per password
  // (PBKDF2 is deliberately slow) and kept for the process lifetime of that secret.
  const auth::ScramVerifier& verifierFor(std::string_view user, const auth::Secret& secret);

  void sweep(int64_t nowMs);
  void closeAll(std::string_view reason);
  size_t activeServers() const;
  template <class F>
  void forEach(F&& f) {
    for (auto& [key, pool] : pools_) f(*pool);
  }

 private:
  net::Worker& worker_;
  std::map<std::pair<std::string, std::string>, std::unique_ptr<Pool>, std::less<>> pools_;
  std::unordered_map<const SharedPool*, Pool*> byShared_;
  struct CachedVerifier {
    std::string secretText;
    auth::ScramVerifier verifier;
  };
  std::map<std::string, CachedVerifier, std::less<>> verifiers_;
};

}  // namespace usher::pool
