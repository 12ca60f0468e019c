// PoolManager: finds or creates the Pool for a (database, user) pair and enforces the limits that
// span pools (max_db_connections, max_user_connections).
#pragma once

#include <map>
#include <memory>
#include <string>
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

  bool mayOpen(const Pool& pool) const;
  void serverOpened(const Pool& pool);
  void serverGone(const Pool& pool);

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
  std::map<std::string, int, std::less<>> serversPerDb_;
  std::map<std::string, int, std::less<>> serversPerUser_;
  std::map<std::string, int, std::less<>> dbLimit_;
  std::map<std::string, int, std::less<>> userLimit_;
  struct CachedVerifier {
    std::string secretText;
    auth::ScramVerifier verifier;
  };
  std::map<std::string, CachedVerifier, std::less<>> verifiers_;
};

}  // namespace usher::pool
