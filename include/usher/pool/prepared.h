// Prepared statements under transaction pooling: the statements a pool's clients prepared
// (shared when identical), and the names each client gave them.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>

namespace usher::pool {

class StatementRegistry;

// What the workers' registries of one pool share: one id per body (the server-side name
// usher_s<id> then means the same statement on every worker, so a server handed from one worker
// to another keeps its statements usable) and which bodies a server has accepted (so every
// worker may answer a lone Parse of them without a server). Taken once per new body and worker.
class SharedStatements {
 public:
  // The current id of `body`, given one if it has none.
  uint64_t idFor(std::string_view body);
  // Its plan went stale: the next idFor() gives a fresh id.
  void retire(std::string_view body, uint64_t id);
  bool isCurrent(std::string_view body, uint64_t id) const;
  bool proven(std::string_view body) const;
  void prove(std::string_view body);
  // Bumped by every retire(): a registry that sees it change looks for its own stale statements.
  uint64_t retirements() const { return retirements_.load(std::memory_order_acquire); }

 private:
  static constexpr size_t kMaxRemembered = 10000;  // bounded; forgotten bodies get new ids
  mutable std::mutex mutex_;
  std::atomic<uint64_t> retirements_{0};
  uint64_t lastId_ = 0;
  std::unordered_map<std::string, uint64_t> ids_;
  std::unordered_set<std::string> proven_;
};

// One statement as PostgreSQL parses it: a Parse message's payload after the name (the query,
// then the parameter type OIDs). Clients that prepare the same body share one Statement, which
// servers know under usher's own name.
class Statement {
 public:
  Statement(StatementRegistry& registry, uint64_t id, std::string_view body);
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  std::string_view body() const { return body_; }
  const std::string& serverName() const { return serverName_; }
  uint64_t id() const { return id_; }
  // A server accepted it once: the SQL parses (usher may then answer a lone Parse + Sync).
  bool provenValid() const { return provenValid_; }
  void markProvenValid();

 private:
  friend class StmtRef;
  friend class StatementRegistry;

  // What the workers' registries of one pool share: where statement ids come from (a server-side
  // name then means one body in the whole process, so a server handed from one worker to another
  // never holds two statements under one name) and which bodies a server has accepted (so every
  // worker may answer a lone Parse of them without a server).
  struct SharedStatements {
    std::atomic<uint64_t> ids{0};
    bool proven(std::string_view body) const {
      std::lock_guard lock(mutex);
      return provenBodies.contains(std::string(body));
    }
    void prove(std::string_view body) {
      std::lock_guard lock(mutex);
      if (provenBodies.size() >= kMaxRemembered) provenBodies.clear();  // bounded; relearnt
      provenBodies.emplace(body);
    }
    static constexpr size_t kMaxRemembered = 10000;

   private:
    mutable std::mutex mutex;
    std::unordered_set<std::string> provenBodies;
  };
  StatementRegistry* registry_;
  uint64_t id_;
  std::string body_;
  std::string serverName_;
  uint32_t refs_ = 0;
  bool retired_ = false;  // no longer found by body (its plan went stale); lives on for holders
  bool provenValid_ = false;
};

// Counted reference to a Statement; the last one frees it. Single-threaded (one worker).
class StmtRef {
 public:
  StmtRef() = default;
  explicit StmtRef(Statement* s) : s_(s) {
    if (s_) ++s_->refs_;
  }
  StmtRef(const StmtRef& o) : StmtRef(o.s_) {}
  StmtRef(StmtRef&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
  StmtRef& operator=(StmtRef o) noexcept {
    std::swap(s_, o.s_);
    return *this;
  }
  ~StmtRef() { reset(); }
  void reset();
  Statement* get() const { return s_; }
  Statement* operator->() const { return s_; }
  explicit operator bool() const { return s_ != nullptr; }

 private:
  Statement* s_ = nullptr;
};

// A pool's statements by body. Bodies are looked up by view: no allocation to find one.
class StatementRegistry {
 public:
  // `shared`: what this pool's registries on other workers share; null: nothing (tests).
  explicit StatementRegistry(SharedStatements* shared = nullptr) : shared_(shared) {}
  StatementRegistry(const StatementRegistry&) = delete;
  StatementRegistry& operator=(const StatementRegistry&) = delete;
  ~StatementRegistry();

  StmtRef intern(std::string_view body);
  // A statement a server handed over from another worker holds as `usher_s<id>`: this registry's
  // statement when it is the same one, otherwise one kept only for that server (not found by
  // body, so clients here never bind it; the server's LRU closes it in time).
  StmtRef adopt(uint64_t id, std::string_view body);
  // The statement with this body if a server has already accepted it, else null.
  StmtRef findProvenValid(std::string_view body);
  // The server reported the statement's cached plan stale: the next Parse of the same body gets a
  // fresh statement (and a fresh server-side name), as a client re-preparing expects.
  void retire(Statement& s);
  size_t size() const { return byBody_.size(); }
  // Marks which unnamed statement a server holds: unique among the pool's servers and clients.
  uint64_t nextGeneration() { return ++lastGeneration_; }

 private:
  friend class StmtRef;
  void destroy(Statement* s);

  std::unordered_map<std::string_view, Statement*> byBody_;
  friend class Statement;
  // Another worker's server reported a plan stale: retire the same statements here.
  void syncRetirements();
  SharedStatements* shared_;
  uint64_t seenRetirements_ = 0;
  uint64_t nextId_ = 0;
  uint64_t lastGeneration_ = 0;
};

struct NameHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

// The statements one client prepared, by the names it chose. The map is what the client may use
// now, counting messages already sent: replies the server has not given yet can still undo an
// entry (see StatementRelay).
struct ClientStatements {
  std::unordered_map<std::string, StmtRef, NameHash, std::equal_to<>> named;
  // The client's unnamed statement: its body, and the generation that marks it on a server
  // (0 = the client has none).
  std::string unnamedBody;
  uint64_t unnamedGen = 0;
  // The last one the server parsed (what a Parse skipped after an error leaves in place).
  std::string confirmedUnnamedBody;
  uint64_t confirmedUnnamedGen = 0;
  // Names whose Parse the server has not answered yet, with the Sync segment it was sent in.
  struct Unanswered {
    uint64_t segment;  // the Sync segment it was sent in
    uint64_t op;       // which operation (a Close and a Parse of one name may both be pending)
  };
  std::unordered_map<std::string, Unanswered, NameHash, std::equal_to<>> unconfirmed;

  const StmtRef* find(std::string_view name) const {
    auto it = named.find(name);
    return it == named.end() ? nullptr : &it->second;
  }
  // The name a client uses for `s` (for error messages); empty if none.
  std::string_view nameOf(const Statement* s) const;
};

// Parsed views of the extended-protocol messages whose names usher maps. All point into the
// message payload. Each parse returns false for a malformed payload.
struct ParseMessage {
  std::string_view name;
  std::string_view body;  // query and parameter types: the Statement key
};
bool parseParse(std::string_view payload, ParseMessage& out);

// Bind: only the two leading names; `prefixSize` is their size in the payload.
struct BindPrefix {
  std::string_view portal;
  std::string_view statement;
  size_t prefixSize = 0;
};
// False if the names are not complete in `available` bytes of the payload.
bool parseBindPrefix(std::string_view available, BindPrefix& out);

// Describe and Close: a kind ('S' statement, 'P' portal) and a name.
struct TargetMessage {
  char kind = 0;
  std::string_view name;
};
bool parseTarget(std::string_view payload, TargetMessage& out);

// A simple Query that is exactly `DEALLOCATE [PREPARE] name` (one statement): the name as
// PostgreSQL resolves it (unquoted names fold to lower case). False for anything else, including
// DEALLOCATE ALL, which the server runs and usher follows from its CommandComplete.
bool parseDeallocate(std::string_view sql, std::string& name);

// Splits a simple Query's text into its statements at top-level semicolons (not inside quotes,
// dollar quotes or comments) and calls f(offset, length) for each, semicolon excluded.
template <class F>
void forEachStatement(std::string_view sql, F&& f);
size_t statementEnd(std::string_view sql, size_t from);  // offset of the ';' ending it, or size

template <class F>
void forEachStatement(std::string_view sql, F&& f) {
  for (size_t at = 0; at < sql.size();) {
    size_t end = statementEnd(sql, at);
    f(at, end - at);
    at = end + 1;
  }
}

}  // namespace usher::pool
