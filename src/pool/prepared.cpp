// Statements shared by a pool's clients, and the parsing of the messages that name them.
#include "usher/pool/prepared.h"

#include <cctype>
#include <vector>

#include "usher/base/byte_reader.h"

namespace usher::pool {

Statement::Statement(StatementRegistry& registry, uint64_t id, std::string_view body)
    : registry_(&registry), id_(id), body_(body), serverName_("usher_s" + std::to_string(id)) {}

void StmtRef::reset() {
  if (!s_) return;
  Statement* s = std::exchange(s_, nullptr);
  if (--s->refs_ > 0) return;
  if (s->registry_)
    s->registry_->destroy(s);
  else
    delete s;  // retired, or its pool is gone
}

StatementRegistry::~StatementRegistry() {
  // Sessions closing at shutdown may still hold some: the last holder frees them.
  for (auto& [body, s] : byBody_) s->registry_ = nullptr;
}

void StatementRegistry::syncRetirements() {
  if (!shared_) return;
  uint64_t now = shared_->retirements();
  if (now == seenRetirements_) return;
  seenRetirements_ = now;
  std::vector<Statement*> stale;
  for (auto& [body, s] : byBody_)
    if (!shared_->isCurrent(body, s->id())) stale.push_back(s);
  for (auto* s : stale) retire(*s);
}

StmtRef StatementRegistry::intern(std::string_view body) {
  syncRetirements();
  auto it = byBody_.find(body);
  if (it != byBody_.end()) return StmtRef(it->second);
  uint64_t id = shared_ ? shared_->idFor(body) : ++nextId_;
  auto* s = new Statement(*this, id, body);
  byBody_.emplace(s->body(), s);
  return StmtRef(s);
}

StmtRef StatementRegistry::adopt(uint64_t id, std::string_view body) {
  syncRetirements();
  auto it = byBody_.find(body);
  if (it != byBody_.end() && it->second->id() == id) return StmtRef(it->second);
  auto* s = new Statement(*this, id, body);
  s->provenValid_ = true;  // a server parsed it
  if (it == byBody_.end() && shared_ && shared_->isCurrent(body, id)) {
    byBody_.emplace(s->body(), s);
  } else {
    s->retired_ = true;
    s->registry_ = nullptr;
  }
  return StmtRef(s);
}

StmtRef StatementRegistry::findProvenValid(std::string_view body) {
  syncRetirements();
  auto it = byBody_.find(body);
  if (it != byBody_.end() && it->second->provenValid()) return StmtRef(it->second);
  // A server of another worker accepted it (once per body and worker: then it is known here).
  if (!shared_ || !shared_->proven(body)) return {};
  StmtRef s = intern(body);
  s->provenValid_ = true;
  return s;
}

void Statement::markProvenValid() {
  if (provenValid_) return;
  provenValid_ = true;
  if (registry_ && registry_->shared_) registry_->shared_->prove(body_);
}

void StatementRegistry::retire(Statement& s) {
  if (s.retired_) return;
  if (shared_) shared_->retire(s.body(), s.id());
  s.retired_ = true;
  s.registry_ = nullptr;
  byBody_.erase(s.body());
}

void StatementRegistry::destroy(Statement* s) {
  byBody_.erase(s->body());
  delete s;
}

uint64_t SharedStatements::idFor(std::string_view body) {
  std::lock_guard lock(mutex_);
  auto it = ids_.find(std::string(body));
  if (it != ids_.end()) return it->second;
  if (ids_.size() >= kMaxRemembered) ids_.clear();
  ids_.emplace(body, ++lastId_);
  return lastId_;
}

void SharedStatements::retire(std::string_view body, uint64_t id) {
  std::lock_guard lock(mutex_);
  auto it = ids_.find(std::string(body));
  if (it != ids_.end() && it->second == id) {
    ids_.erase(it);
    retirements_.fetch_add(1, std::memory_order_release);
  }
}

bool SharedStatements::isCurrent(std::string_view body, uint64_t id) const {
  std::lock_guard lock(mutex_);
  auto it = ids_.find(std::string(body));
  return it != ids_.end() && it->second == id;
}

bool SharedStatements::proven(std::string_view body) const {
  std::lock_guard lock(mutex_);
  return proven_.contains(std::string(body));
}

void SharedStatements::prove(std::string_view body) {
  std::lock_guard lock(mutex_);
  if (proven_.size() >= kMaxRemembered) proven_.clear();
  proven_.emplace(body);
}

std::string_view ClientStatements::nameOf(const Statement* s) const {
  for (const auto& [name, ref] : named)
    if (ref.get() == s) return name;
  return {};
}

bool parseParse(std::string_view payload, ParseMessage& out) {
  ByteReader r(payload);
  out.name = r.cstr();
  if (!r.ok()) return false;
  out.body = r.rest();
  ByteReader b(out.body);
  b.cstr();
  int16_t n = b.i16();
  for (int i = 0; i < n; ++i) b.i32();
  return b.ok() && n >= 0 && b.remaining() == 0;
}

bool parseBindPrefix(std::string_view available, BindPrefix& out) {
  size_t a = available.find('\0');
  if (a == std::string_view::npos) return false;
  size_t b = available.find('\0', a + 1);
  if (b == std::string_view::npos) return false;
  out.portal = available.substr(0, a);
  out.statement = available.substr(a + 1, b - a - 1);
  out.prefixSize = b + 1;
  return true;
}

bool parseTarget(std::string_view payload, TargetMessage& out) {
  if (payload.size() < 2 || payload.back() != '\0') return false;
  out.kind = payload[0];
  out.name = payload.substr(1, payload.size() - 2);
  return (out.kind == 'S' || out.kind == 'P') && out.name.find('\0') == std::string_view::npos;
}

namespace {

bool isSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

// Consumes `word` (ASCII, case-insensitive) followed by a word boundary.
bool takeKeyword(std::string_view& s, std::string_view word) {
  if (s.size() < word.size()) return false;
  for (size_t i = 0; i < word.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(s[i])) != word[i]) return false;
  if (s.size() > word.size()) {
    unsigned char next = static_cast<unsigned char>(s[word.size()]);
    if (std::isalnum(next) || next == '_' || next == '$' || next >= 0x80) return false;
  }
  s.remove_prefix(word.size());
  return true;
}

void skipSpace(std::string_view& s) {
  while (!s.empty() && isSpace(s.front())) s.remove_prefix(1);
}

// An identifier as PostgreSQL reads it: "quoted" (with "" for a quote) or folded to lower case.
bool takeIdentifier(std::string_view& s, std::string& out) {
  out.clear();
  if (s.empty()) return false;
  if (s.front() == '"') {
    size_t i = 1;
    for (;;) {
      if (i >= s.size()) return false;
      if (s[i] == '"') {
        if (i + 1 < s.size() && s[i + 1] == '"') {
          out.push_back('"');
          i += 2;
          continue;
        }
        break;
      }
      out.push_back(s[i++]);
    }
    s.remove_prefix(i + 1);
    return !out.empty();
  }
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    bool ok = std::isalpha(c) || c == '_' || c >= 0x80 || (i > 0 && (std::isdigit(c) || c == '$'));
    if (!ok) break;
    out.push_back(c < 0x80 ? char(std::tolower(c)) : char(c));
    ++i;
  }
  s.remove_prefix(i);
  return i > 0;
}

}  // namespace

size_t statementEnd(std::string_view sql, size_t i) {
  while (i < sql.size()) {
    char c = sql[i];
    if (c == ';') return i;
    if (c == '\'' || c == '"') {  // quoted literal or identifier; a doubled quote stays inside
      for (++i; i < sql.size(); ++i) {
        if (sql[i] != c) continue;
        if (i + 1 < sql.size() && sql[i + 1] == c) {
          ++i;
          continue;
        }
        break;
      }
      ++i;
    } else if (c == '-' && i + 1 < sql.size() && sql[i + 1] == '-') {
      size_t nl = sql.find('\n', i);
      i = nl == std::string_view::npos ? sql.size() : nl + 1;
    } else if (c == '/' && i + 1 < sql.size() && sql[i + 1] == '*') {
      int depth = 1;  // PostgreSQL's block comments nest
      for (i += 2; i < sql.size() && depth > 0; ++i) {
        if (sql.compare(i, 2, "/*") == 0) {
          ++depth;
          ++i;
        } else if (sql.compare(i, 2, "*/") == 0) {
          --depth;
          ++i;
        }
      }
    } else if (c == '$' && (i == 0 || !(std::isalnum(static_cast<unsigned char>(sql[i - 1])) ||
                                        sql[i - 1] == '_'))) {
      // $tag$ ... $tag$ (a tag is empty or an identifier); $1 is a parameter.
      size_t close = i + 1;
      while (close < sql.size() &&
             (std::isalnum(static_cast<unsigned char>(sql[close])) || sql[close] == '_'))
        ++close;
      bool tag = close < sql.size() && sql[close] == '$' &&
                 (close == i + 1 || !std::isdigit(static_cast<unsigned char>(sql[i + 1])));
      if (!tag) {
        i = close;
        continue;
      }
      std::string_view delim = sql.substr(i, close - i + 1);
      size_t endTag = sql.find(delim, close + 1);
      i = endTag == std::string_view::npos ? sql.size() : endTag + delim.size();
    } else {
      ++i;
    }
  }
  return sql.size();
}

bool parseDeallocate(std::string_view sql, std::string& name) {
  skipSpace(sql);
  if (!takeKeyword(sql, "deallocate")) return false;
  skipSpace(sql);
  std::string_view save = sql;
  if (takeKeyword(sql, "prepare")) {
    skipSpace(sql);
    if (sql.empty() || sql.front() == ';') {  // "DEALLOCATE prepare": a statement named prepare
      sql = save;
    }
  }
  std::string_view beforeName = sql;
  if (takeKeyword(beforeName, "all")) return false;
  if (!takeIdentifier(sql, name)) return false;
  skipSpace(sql);
  if (!sql.empty() && sql.front() == ';') sql.remove_prefix(1);
  skipSpace(sql);
  return sql.empty();
}

}  // namespace usher::pool
