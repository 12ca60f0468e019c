// StatementRelay: statement names, usher's own messages and the replies usher owes, between a
// client and its server in transaction pooling. See the header for the model.
#include "usher/pool/statement_relay.h"

#include <algorithm>

#include "usher/base/byte_reader.h"

#include "usher/protocol/error_fields.h"
#include "usher/protocol/tags.h"
#include "usher/protocol/writer.h"

namespace usher::pool {
namespace fe = protocol::fe;
namespace be = protocol::be;
using protocol::FrameHeader;

namespace {

// A statement name no server holds (SQL cannot create it unquoted, usher never does): a Bind of
// it fails with 26000 and changes nothing else.
constexpr std::string_view kMissingStatement = "\x01usher-missing";

void appendU32(IoBuffer& out, uint32_t v) {
  const uint8_t b[4] = {uint8_t(v >> 24), uint8_t(v >> 16), uint8_t(v >> 8), uint8_t(v)};
  out.append(b, 4);
}

bool isRequest(OpKind k) {
  return k == OpKind::Query || k == OpKind::FunctionCall;
}

// Writes the ErrorResponse `payload` to `out` with every `"from"` in its fields read `"to"`.
void writeRenamedError(IoBuffer& out, std::string_view payload, std::string_view from,
                       std::string_view to) {
  std::string quotedFrom = "\"" + std::string(from) + "\"";
  std::string quotedTo = "\"" + std::string(to) + "\"";
  protocol::MessageWriter w(out);
  w.begin(be::kErrorResponse);
  ByteReader r(payload);
  while (r.remaining() > 1) {
    uint8_t code = r.u8();
    std::string field(r.cstr());
    for (size_t at = field.find(quotedFrom); at != std::string::npos;
         at = field.find(quotedFrom, at + quotedTo.size()))
      field.replace(at, quotedFrom.size(), quotedTo);
    w.u8(code).cstr(field);
  }
  w.u8(0).end();
}

// Whether a query may contain DEALLOCATE (ASCII, any case): a cheap filter before parsing.
bool mentions(std::string_view sql, std::string_view word) {
  for (size_t i = 0; i + word.size() <= sql.size(); ++i) {
    if ((sql[i] | 0x20) != word[0]) continue;
    size_t k = 1;
    while (k < word.size() && (sql[i + k] | 0x20) == word[k]) ++k;
    if (k == word.size()) return true;
  }
  return false;
}

// Whether a query may drop prepared statements (DEALLOCATE, DISCARD ALL): a cheap filter.
bool mayDropStatements(std::string_view sql) {
  return mentions(sql, "deallocate") || mentions(sql, "discard");
}

std::string quotedName(std::string_view what, std::string_view name, std::string_view rest) {
  std::string s(what);
  s.append(" \"").append(name).append("\" ").append(rest);
  return s;
}

}  // namespace

// ---- OpQueue -------------------------------------------------------------------------------

PendingOp& OpQueue::push() {
  if (count_ == ring_.size()) {
    std::vector<PendingOp> bigger(std::max<size_t>(8, ring_.size() * 2));
    for (size_t i = 0; i < count_; ++i) bigger[i] = std::move(at(i));
    ring_ = std::move(bigger);
    head_ = 0;
  }
  PendingOp& op = ring_[(head_ + count_) % ring_.size()];
  ++count_;
  op.undo = OpUndo::None;
  op.preparesOnServer = false;
  op.ignored = false;
  op.quiet = false;
  op.serverUnnamed = false;
  op.unnamedOp = 0;
  op.dropsServerStatement = false;
  op.dropsNames = false;
  op.sqlstate[0] = '\0';
  op.segment = op.gen = 0;
  op.stmt.reset();
  op.text.clear();  // keeps its capacity
  return op;
}

void OpQueue::pop() {
  ring_[head_].stmt.reset();
  head_ = (head_ + 1) % ring_.size();
  --count_;
}

void OpQueue::popBack() {
  back().stmt.reset();
  --count_;
}

// ---- shared helpers ------------------------------------------------------------------------

ClientStatements& StatementRelay::names() {
  auto& p = *client_.statements;
  if (!p) p = std::make_unique<ClientStatements>();
  return *p;
}

void StatementRelay::cutClientStream() {
  auto& flow = *client_.toServer;
  if (flow.ready == 0) return;
  auto& in = *client_.in;
  toServer().append(in.readPtr(), flow.ready);
  in.consume(flow.ready);
  flow.ready = 0;
}

void StatementRelay::cutServerStream() {
  auto& flow = *server_.toClient;
  if (flow.ready == 0 || !attached()) return;
  auto& in = *server_.in;
  client_.out->append(in.readPtr(), flow.ready);
  in.consume(flow.ready);
  flow.ready = 0;
}

void StatementRelay::discardClientMessage(size_t frameSize) {
  cutClientStream();
  auto& in = *client_.in;
  size_t now = std::min(frameSize, in.readable());
  in.consume(now);
  *client_.discard = frameSize - now;
}

PendingOp& StatementRelay::queue(OpKind kind, OpSource source) {
  PendingOp& op = ops_.push();
  op.kind = kind;
  op.source = source;
  op.segment = segment_;
  op.id = ++lastOpId_;
  return op;
}

void StatementRelay::settleSkipped() {
  while (skipping_ && !ops_.empty()) {
    PendingOp& op = ops_.back();
    if (isRequest(op.kind)) forgetRequest();
    undo(op);
    leaving(op);
    ops_.popBack();
  }
}

// ---- client → server -----------------------------------------------------------------------

StatementRelay::Step StatementRelay::onClientMessage(const FrameHeader& h) {
  auto& in = *client_.in;
  size_t ready = client_.toServer->ready;
  size_t avail = in.readable() - ready;
  const char* at = reinterpret_cast<const char*>(in.readPtr()) + ready;
  bool whole = avail >= h.frameSize();
  std::string_view payload(at + 5, whole ? h.payloadSize() : avail - 5);
  Step step = Step::Forward;
  switch (h.tag) {
    case fe::kQuery:
      step = onQuery(h, payload, whole);
      break;
    case fe::kParse:
      step = whole ? onParse(h, payload) : Step::NeedMore;
      break;
    case fe::kBind:
      step = onBind(h, payload);
      break;
    case fe::kDescribe:
      step = whole ? onDescribe(h, payload) : Step::NeedMore;
      break;
    case fe::kClose:
      step = whole ? onClose(h, payload) : Step::NeedMore;
      break;
    case fe::kExecute: {
      auto& op = queue(OpKind::Execute, OpSource::Client);
      if (!deallocPending_.empty()) {
        // Like a Close: the name goes now for what follows in this Sync segment, comes back if
        // the server skips or fails the Execute, and is in doubt for later segments until then.
        if (auto* n = namesIfAny()) {
          if (auto it = n->named.find(deallocPending_); it != n->named.end()) {
            op.undo = OpUndo::RestoreNamed;
            op.text = deallocPending_;
            op.dropsServerStatement = std::exchange(deallocDropsServerStatement_, false);
            op.stmt = std::move(it->second);
            n->named.erase(it);
            n->unconfirmed.insert_or_assign(deallocPending_,
                                            ClientStatements::Unanswered{segment_, op.id});
          }
        }
        deallocPending_.clear();
      }
      break;
    }
    case fe::kSync:
      deallocPending_.clear();  // only the PQexecParams form: Parse, Bind, Execute, Sync
      deallocDropsServerStatement_ = false;
      queue(OpKind::Sync, OpSource::Client);
      ++segment_;
      skipping_ = false;  // the server stops discarding at this Sync
      break;
    case fe::kFunctionCall:
      queue(OpKind::FunctionCall, OpSource::Client);
      break;
    default:
      break;  // Flush, CopyData/CopyDone/CopyFail: no reply of their own
  }
  if (step != Step::NeedMore && step != Step::Wait) settleSkipped();
  return step;
}

bool StatementRelay::fateUnknown(std::string_view name) {
  if (namesInDoubt_ > 0) return true;
  auto* n = namesIfAny();
  if (!n || n->unconfirmed.empty()) return false;
  auto it = n->unconfirmed.find(name);
  return it != n->unconfirmed.end() && it->second.segment < segment_;
}

void StatementRelay::confirmName(const PendingOp& op) {
  auto* n = attached() ? namesIfAny() : nullptr;
  if (!n || (op.undo != OpUndo::ForgetNamed && op.undo != OpUndo::RestoreNamed)) return;
  auto it = n->unconfirmed.find(op.text);
  if (it != n->unconfirmed.end() && it->second.op == op.id) n->unconfirmed.erase(it);
}

StatementRelay::Step StatementRelay::onQuery(const FrameHeader& h, std::string_view payload,
                                             bool whole) {
  // A simple query drops the unnamed statement, in PostgreSQL and so here.
  unnamedGen_ = 0;
  auto* n = namesIfAny();
  if (n) n->unnamedGen = 0;  // the confirmed one goes when the server runs it (ReadyForQuery)
  // A query that may DEALLOCATE or DISCARD drops statements on the server (shared ones too) and
  // maybe the client's names: until it has run, what the client pipelines after it that uses a
  // statement waits for its ReadyForQuery. Whether it may is read from the whole text.
  auto queueBarrier = [&]() -> PendingOp& {
    auto& op = queue(OpKind::Query, OpSource::Client);
    op.dropsNames = true;
    ++namesInDoubt_;
    return op;
  };
  if (!whole) {
    if (h.payloadSize() <= 64 * 1024) return Step::NeedMore;
    queueBarrier();  // too large to hold: assume the worst
    return Step::Forward;
  }
  if (!mayDropStatements(payload)) {
    queue(OpKind::Query, OpSource::Client);
    return Step::Forward;
  }
  if (!n || (n->named.empty() && n->unconfirmed.empty())) {
    queueBarrier();
    return Step::Forward;
  }
  // DEALLOCATE of a protocol-level name: the client's name goes (at its CommandComplete), and
  // the server deallocates a stand-in, so the client gets PostgreSQL's command tag and, in a
  // failed transaction, its 25P02 -- while the statement stays for the clients that share it.
  std::string_view sql(payload.data(), payload.empty() ? 0 : payload.size() - 1);
  std::string rewritten;
  int standIns = 0;
  std::string names;  // the client names, NUL-separated, in the order the query drops them
  size_t copied = 0;
  bool wait = false;
  forEachStatement(sql, [&](size_t offset, size_t length) {
    if (!parseDeallocate(sql.substr(offset, length), deallocName_)) return;
    wait = wait || fateUnknown(deallocName_);
    auto it = n->named.find(deallocName_);
    if (it == n->named.end()) return;
    // Named twice: the second, as written, fails as PostgreSQL's would ("does not exist").
    std::string_view dropped(names);
    for (size_t at = 0; at < dropped.size();) {
      size_t end = dropped.find('\0', at);
      if (dropped.substr(at, end - at) == deallocName_) return;
      at = end + 1;
    }
    rewritten.append(sql.substr(copied, offset - copied));
    rewritten.append(" DEALLOCATE ").append(standInName(++standIns));
    copied = offset + length;
    names.append(it->first).push_back('\0');
  });
  if (wait) return Step::Wait;  // whether the name exists depends on a Parse still unanswered
  if (standIns == 0) {
    queueBarrier();
    return Step::Forward;
  }
  rewritten.append(sql.substr(copied));
  discardClientMessage(h.frameSize());
  prepareStandIns(standIns);
  protocol::writeQuery(toServer(), rewritten);
  queueBarrier().text = std::move(names);
  return Step::Consumed;
}

StatementRelay::Step StatementRelay::onParse(const FrameHeader& h, std::string_view payload) {
  ParseMessage m;
  if (!parseParse(payload, m)) return Step::Forward;  // the server reports what is wrong
  auto& n = names();
  if (m.name.empty()) {
    // DEALLOCATE of a client's name through the extended protocol (PQexecParams), first in its
    // Sync segment: it deallocates a stand-in instead, and the client's name goes at Execute.
    std::string_view sql = m.body.substr(0, m.body.find('\0'));
    deallocPending_.clear();
    bool segmentStart = !skipping_ && (ops_.empty() || ops_.back().kind == OpKind::Sync ||
                                       isRequest(ops_.back().kind));
    bool deallocate = !sql.empty() && (sql[0] | 0x20) == 'd' &&
                      parseDeallocate(sql, deallocName_) && n.find(deallocName_);
    if (deallocate && fateUnknown(deallocName_)) return Step::Wait;
    uint64_t gen = server_.registry->nextGeneration();
    if (deallocate) {
      deallocPending_ = deallocName_;
      discardClientMessage(h.frameSize());
      std::string target;
      if (segmentStart) {
        prepareStandIns(1);
        target = standInName(1);
      } else {
        // Mid-segment usher cannot add a Sync of its own: the server deallocates usher's own
        // statement (prepared here first if need be); others prepare it again when they need it.
        StmtRef stmt = *n.find(deallocName_);
        ensureOnServer(stmt);
        target = stmt->serverName();
        deallocDropsServerStatement_ = true;
      }
      n.unnamedBody.assign("DEALLOCATE ").append(target);
      n.unnamedBody.append(m.body.substr(sql.size()));  // its NUL and the parameter types
      protocol::MessageWriter(toServer()).begin(fe::kParse).cstr("").raw(n.unnamedBody).end();
    } else {
      // Forwarded as it is; remembered so a Bind after a Sync can re-parse it on another server.
      n.unnamedBody.assign(m.body);
    }
    n.unnamedGen = unnamedGen_ = gen;
    unnamedSegment_ = segment_;
    unnamedConfirmed_ = false;
    auto& op = queue(OpKind::Parse, OpSource::Client);
    op.undo = OpUndo::ForgetUnnamed;
    op.gen = gen;
    op.text.assign(n.unnamedBody);  // becomes the confirmed one if the server parses it
    noteUnnamedOp(op);
    return deallocPending_.empty() ? Step::Forward : Step::Consumed;
  }
  if (fateUnknown(m.name)) return Step::Wait;
  if (n.find(m.name)) {
    // PostgreSQL parses and analyses the query before it finds the name taken: parse it as the
    // unnamed statement first, so a syntax error or a missing table is reported as it would be.
    discardClientMessage(h.frameSize());
    protocol::MessageWriter(toServer()).begin(fe::kParse).cstr("").raw(m.body).end();
    queue(OpKind::Parse, OpSource::Injected);
    unnamedGen_ = 0;
    fail("42P05", quotedName("prepared statement", m.name, "already exists"));
    return Step::Consumed;
  }
  StmtRef stmt = server_.registry->intern(m.body);
  n.named.emplace(std::string(m.name), stmt);
  auto it = onServer_.find(stmt.get());
  if (it != onServer_.end() && (it->second.confirmed || it->second.segment == segment_)) {
    // Already prepared here. The server still answers this Parse, as the unnamed statement:
    // its reply is then exactly PostgreSQL's in every state (25P02 in a failed transaction,
    // nothing while skipping to Sync, at once after a Flush), and it costs one parse per client
    // and statement, not per execution.
    it->second.lastUse = ++useClock_;
    discardClientMessage(h.frameSize());
    protocol::MessageWriter(toServer()).begin(fe::kParse).cstr("").raw(m.body).end();
    unnamedGen_ = 0;
    auto& op = queue(OpKind::Parse, OpSource::Client);
    op.undo = OpUndo::ForgetNamed;
    op.text.assign(m.name);
    op.stmt = stmt;
    n.unconfirmed.insert_or_assign(std::string(m.name),
                                   ClientStatements::Unanswered{segment_, op.id});
    return Step::Consumed;
  }
  sendPrepare(stmt, OpSource::Client, m.name);
  discardClientMessage(h.frameSize());
  return Step::Consumed;
}

StatementRelay::Step StatementRelay::onBind(const FrameHeader& h, std::string_view available) {
  BindPrefix b;
  if (!parseBindPrefix(available, b)) {
    bool whole = available.size() == h.payloadSize();
    return whole ? Step::Forward : Step::NeedMore;
  }
  if (!b.statement.empty()) {
    deallocPending_.clear();  // the Execute that follows runs another statement
    deallocDropsServerStatement_ = false;
  }
  StmtRef stmt;
  if (auto step = resolveForUse(h, b.statement, OpKind::Bind, stmt)) return *step;
  cutClientStream();
  // The Bind goes out under the server's name: a new header and names from usher, then the rest
  // of the client's message (parameters) forwarded as it arrives, however large.
  auto& out = toServer();
  const std::string& serverName = stmt->serverName();
  out.append(&h.tag, 1);
  appendU32(out, uint32_t(h.length - b.statement.size() + serverName.size()));
  out.append(b.portal.data(), b.portal.size() + 1);  // with its NUL
  out.append(serverName.data(), serverName.size() + 1);
  auto& in = *client_.in;
  in.consume(5 + b.prefixSize);
  size_t rest = h.frameSize() - 5 - b.prefixSize;
  size_t have = std::min(rest, in.readable());
  client_.toServer->ready += have;
  client_.toServer->passthrough = uint32_t(rest - have);
  auto& op = queue(OpKind::Bind, OpSource::Client);
  op.stmt = std::move(stmt);
  op.text.assign(b.statement);  // for errors (reuses the slot's capacity: no allocation)
  return Step::Consumed;
}

std::optional<StatementRelay::Step> StatementRelay::resolveForUse(const FrameHeader& h,
                                                                  std::string_view name,
                                                                  OpKind kind, StmtRef& stmt) {
  if (name.empty()) {
    if (unnamedFateUnknown()) return Step::Wait;  // its Parse, before a Sync, may fail
    if (!ensureUnnamed()) {
      fail("26000", "unnamed prepared statement does not exist");
      discardClientMessage(h.frameSize());
      return Step::Consumed;
    }
    queue(kind, OpSource::Client);
    return Step::Forward;
  }
  if (fateUnknown(name)) return Step::Wait;
  const StmtRef* found = names().find(name);
  if (!found) {
    fail("26000", quotedName("prepared statement", name, "does not exist"));
    discardClientMessage(h.frameSize());
    return Step::Consumed;
  }
  stmt = *found;
  ensureOnServer(stmt);
  return std::nullopt;
}

StatementRelay::Step StatementRelay::onDescribe(const FrameHeader& h, std::string_view payload) {
  TargetMessage t;
  if (!parseTarget(payload, t)) return Step::Forward;
  if (t.kind == 'P') {
    queue(OpKind::DescribePortal, OpSource::Client);
    return Step::Forward;
  }
  StmtRef stmt;
  if (auto step = resolveForUse(h, t.name, OpKind::DescribeStatement, stmt)) return *step;
  discardClientMessage(h.frameSize());
  protocol::MessageWriter(toServer()).begin(fe::kDescribe).u8('S').cstr(stmt->serverName()).end();
  auto& op = queue(OpKind::DescribeStatement, OpSource::Client);
  op.stmt = std::move(stmt);
  op.text.assign(t.name);
  return Step::Consumed;
}

StatementRelay::Step StatementRelay::onClose(const FrameHeader& h, std::string_view payload) {
  TargetMessage t;
  if (!parseTarget(payload, t)) return Step::Forward;
  if (t.kind == 'P') {
    queue(OpKind::Close, OpSource::Client);
    return Step::Forward;
  }
  // Statements stay prepared on the server for whoever uses them next; the client's name goes.
  // Closing a name that does not exist is no error in PostgreSQL either.
  if (!t.name.empty() && fateUnknown(t.name)) return Step::Wait;
  auto& n = names();
  auto& op = queue(OpKind::Close, OpSource::Synthesized);
  if (t.name.empty()) {
    if (n.unnamedGen != 0) {
      op.undo = OpUndo::RestoreUnnamed;
      op.gen = std::exchange(n.unnamedGen, 0);
    }
    noteUnnamedOp(op);
  } else if (auto it = n.named.find(t.name); it != n.named.end()) {
    op.undo = OpUndo::RestoreNamed;
    op.text.assign(t.name);
    op.stmt = std::move(it->second);
    n.named.erase(it);
    // Until its turn comes (or an error skips it), whether the name is gone is not known.
    n.unconfirmed.insert_or_assign(std::string(t.name),
                                   ClientStatements::Unanswered{segment_, op.id});
  }
  discardClientMessage(h.frameSize());
  return Step::Consumed;
}

std::string StatementRelay::standInName(int k) {
  return "usher_dealloc_" + std::to_string(k);
}

void StatementRelay::prepareStandIns(int count) {
  // Prepared in a Sync of usher's own: an error there must not make the server skip the
  // client's query. The replies are usher's; in a failed transaction the Parse fails quietly
  // and the client's DEALLOCATE gets PostgreSQL's 25P02 itself.
  cutClientStream();
  auto& out = toServer();
  for (int k = 1; k <= count; ++k) {
    std::string name = standInName(k);
    protocol::MessageWriter(out).begin(fe::kClose).u8('S').cstr(name).end();
    queue(OpKind::Close, OpSource::Injected).quiet = true;
    protocol::MessageWriter(out).begin(fe::kParse).cstr(name).cstr("SELECT").i16(0).end();
    queue(OpKind::Parse, OpSource::Injected).quiet = true;
  }
  protocol::MessageWriter(out).begin(fe::kSync).end();
  queue(OpKind::Sync, OpSource::Injected);
  ++segment_;
}

bool StatementRelay::unnamedFateUnknown() {
  // The client's last Parse or Close of its unnamed statement went before an earlier Sync and
  // is unanswered: whether it took effect decides what a Bind now refers to.
  return unnamedOpPending_ && unnamedOpSegment_ < segment_;
}

void StatementRelay::noteUnnamedOp(PendingOp& op) {
  op.unnamedOp = ++lastUnnamedOp_;
  unnamedOpPending_ = true;
  unnamedOpSegment_ = segment_;
}

bool StatementRelay::ensureUnnamed() {
  auto* n = namesIfAny();
  if (!n || n->unnamedGen == 0) return false;
  // Usable if the server holds it: its Parse was answered, or is in this Sync segment (if that
  // one fails, what follows is skipped too). Parsing it again is always safe.
  if (unnamedGen_ == n->unnamedGen && (unnamedConfirmed_ || unnamedSegment_ == segment_))
    return true;
  // The client's unnamed statement was parsed on another server (before a Sync that released
  // it): parse it here too, so its Bind never meets another client's unnamed statement.
  cutClientStream();
  protocol::MessageWriter(toServer()).begin(fe::kParse).cstr("").raw(n->unnamedBody).end();
  auto& op = queue(OpKind::Parse, OpSource::Injected);
  op.serverUnnamed = true;  // skipped or failed: the server still holds someone else's
  op.gen = n->unnamedGen;
  unnamedGen_ = n->unnamedGen;
  unnamedSegment_ = segment_;
  unnamedConfirmed_ = false;
  return true;
}

void StatementRelay::ensureOnServer(const StmtRef& stmt) {
  auto it = onServer_.find(stmt.get());
  // A Parse sent earlier in this Sync segment counts: if it fails, the server skips what follows.
  if (it != onServer_.end() && (it->second.confirmed || it->second.segment == segment_)) {
    it->second.lastUse = ++useClock_;
    return;
  }
  sendPrepare(stmt, OpSource::Injected);
}

void StatementRelay::sendPrepare(const StmtRef& stmt, OpSource source,
                                 std::string_view clientName) {
  cutClientStream();
  auto& out = toServer();
  // Close first: a Parse whose fate is not known yet (or a DEALLOCATE usher did not see) may have
  // left the name behind, and a Parse of an existing name fails. Closing a missing name is fine.
  protocol::MessageWriter(out).begin(fe::kClose).u8('S').cstr(stmt->serverName()).end();
  queue(OpKind::Close, OpSource::Injected);
  protocol::MessageWriter(out).begin(fe::kParse).cstr(stmt->serverName()).raw(stmt->body()).end();
  auto& op = queue(OpKind::Parse, source);
  op.preparesOnServer = true;
  op.stmt = stmt;
  op.gen = ++prepareSerial_;  // which Parse of this statement on this server
  if (!clientName.empty()) {  // the client's own Parse: its name exists only if this succeeds
    op.undo = OpUndo::ForgetNamed;
    op.text.assign(clientName);
    names().unconfirmed.insert_or_assign(std::string(clientName),
                                         ClientStatements::Unanswered{segment_, op.id});
  }
  auto& entry = onServer_[stmt.get()];
  entry.stmt = stmt;
  entry.serial = prepareSerial_;
  entry.segment = segment_;
  entry.confirmed = false;
  entry.lastUse = ++useClock_;
  ++*server_.serverParses;
  evictIfFull(stmt.get());
}

void StatementRelay::evictIfFull(const Statement* keep) {
  size_t limit = size_t(std::max(1, maxPrepared_));
  while (onServer_.size() > limit) {
    auto victim = onServer_.end();
    for (auto it = onServer_.begin(); it != onServer_.end(); ++it) {
      if (it->first == keep) continue;
      if (victim == onServer_.end() || it->second.lastUse < victim->second.lastUse) victim = it;
    }
    if (victim == onServer_.end()) return;
    // Messages already sent that use it run first: the server processes them in order.
    protocol::MessageWriter(toServer())
        .begin(fe::kClose)
        .u8('S')
        .cstr(victim->second.stmt->serverName())
        .end();
    queue(OpKind::Close, OpSource::Injected);
    onServer_.erase(victim);
  }
}

void StatementRelay::fail(std::string_view sqlstate, std::string message) {
  cutClientStream();
  protocol::MessageWriter(toServer())
      .begin(fe::kBind)
      .cstr("")
      .cstr(kMissingStatement)
      .i16(0)
      .i16(0)
      .i16(0)
      .end();
  auto& op = queue(OpKind::Bind, OpSource::Failing);
  std::copy_n(sqlstate.data(), std::min<size_t>(5, sqlstate.size()), op.sqlstate);
  op.sqlstate[std::min<size_t>(5, sqlstate.size())] = '\0';
  op.text = std::move(message);
}

bool StatementRelay::emitDue() {
  bool wrote = false;
  if (!attached()) return false;
  while (!ops_.empty() && ops_.front().source == OpSource::Synthesized) {
    if (server_.toClient->passthrough) break;  // in the middle of a message to the client
    writeSynthesized(ops_.front());
    confirmName(ops_.front());
    if (ops_.front().kind == OpKind::Close && ops_.front().unnamedOp != 0) {
      if (auto* n = namesIfAny()) n->confirmedUnnamedGen = 0;  // PostgreSQL dropped it
    }
    popFront();
    wrote = true;
  }
  return wrote;
}

void StatementRelay::writeSynthesized(const PendingOp& op) {
  cutServerStream();
  char tag = op.kind == OpKind::Parse ? be::kParseComplete : be::kCloseComplete;
  protocol::MessageWriter(*client_.out).begin(tag).end();
}

// ---- server → client -----------------------------------------------------------------------

bool StatementRelay::wantsWhole(char tag) {
  switch (tag) {
    case be::kParseComplete:
    case be::kBindComplete:
    case be::kCloseComplete:
    case be::kCommandComplete:
    case be::kEmptyQueryResponse:
    case be::kErrorResponse:
      return true;
    default:
      return false;
  }
}

StatementRelay::Reply StatementRelay::onServerMessage(char tag, std::string_view payload) {
  if (ops_.empty()) return Reply::Forward;  // asynchronous messages
  PendingOp& op = ops_.front();
  switch (tag) {
    case be::kParseComplete:
      return op.kind == OpKind::Parse ? succeed() : Reply::Forward;
    case be::kBindComplete:
      return op.kind == OpKind::Bind ? succeed() : Reply::Forward;
    case be::kCloseComplete:
      return op.kind == OpKind::Close ? succeed() : Reply::Forward;
    case be::kNoData:
    case be::kRowDescription:
      if (op.kind == OpKind::DescribeStatement || op.kind == OpKind::DescribePortal)
        return succeed();
      return Reply::Forward;
    case be::kCommandComplete: {
      std::string_view command(payload.data(), payload.empty() ? 0 : payload.size() - 1);
      if (command == "DEALLOCATE ALL" || command == "DISCARD ALL") {
        // Every statement of the session is gone, the shared ones included -- but not those
        // whose Parse the client pipelined after this and the server has yet to answer.
        for (auto it = onServer_.begin(); it != onServer_.end();)
          it = it->second.confirmed ? onServer_.erase(it) : std::next(it);
        unnamedGen_ = 0;
        if (auto* n = namesIfAny()) {
          for (auto it = n->named.begin(); it != n->named.end();)
            it = n->unconfirmed.contains(it->first) ? std::next(it) : n->named.erase(it);
        }
      } else if (command == "DEALLOCATE" && op.kind == OpKind::Execute && op.dropsServerStatement) {
        onServer_.erase(op.stmt.get());
      } else if (command == "DEALLOCATE" && !op.text.empty() && op.kind == OpKind::Query) {
        // One of the client's names rewritten in this query: gone now (not if the query failed
        // before reaching it).
        size_t end = op.text.find('\0');
        if (auto* n = namesIfAny()) {
          auto it = n->named.find(std::string_view(op.text).substr(0, end));
          if (it != n->named.end()) n->named.erase(it);
        }
        op.text.erase(0, end + 1);
      } else if (command == "PREPARE") {
        sqlPrepared_ = true;
      } else if (command == "LISTEN") {
        leftState_ = "LISTEN";
      } else if (command == "SET") {
        setSeen_ = true;  // tracked parameters announce themselves before ReadyForQuery
      }
      return op.kind == OpKind::Execute ? succeed() : Reply::Forward;
    }
    case be::kEmptyQueryResponse:
      return op.kind == OpKind::Execute ? succeed() : Reply::Forward;
    case be::kPortalSuspended:
      return op.kind == OpKind::Execute ? succeed() : Reply::Forward;
    case be::kCopyInResponse:
      // PostgreSQL ignores Sync while it copies in; libpq pipelines one after the Execute and
      // sends another after CopyDone. Only the later one gets a ReadyForQuery.
      if (op.kind == OpKind::Execute) {
        for (size_t i = 1; i < ops_.size(); ++i) {
          PendingOp& later = ops_.at(i);
          if (later.kind != OpKind::Sync || later.ignored) continue;
          later.ignored = true;
          forgetRequest();
        }
      }
      return Reply::Forward;
    case be::kErrorResponse:
      return failed(payload);
    case be::kReadyForQuery:
      // A SET outside a transaction block that no ParameterStatus followed changed a setting
      // usher does not carry to the client's next server (inside a block it may be SET LOCAL).
      if (setSeen_ && !parameterSeen_ && !payload.empty() && payload[0] == 'I')
        leftState_ = "SET of an untracked parameter";
      setSeen_ = parameterSeen_ = false;
      // Ends a Sync, Query or FunctionCall; what was before it has been answered or skipped.
      while (!ops_.empty()) {
        OpKind k = ops_.front().kind;
        bool ends = (k == OpKind::Sync && !ops_.front().ignored) || isRequest(k);
        bool ours = ops_.front().source == OpSource::Injected;
        if (k == OpKind::Query) {  // it ran: PostgreSQL dropped the unnamed statement
          if (auto* n = attached() ? namesIfAny() : nullptr) n->confirmedUnnamedGen = 0;
        }
        popFront();
        if (ends) return ours ? Reply::Drop : Reply::Forward;
      }
      return Reply::Forward;
    default:
      return Reply::Forward;
  }
}

StatementRelay::Reply StatementRelay::succeed() {
  PendingOp& op = ops_.front();
  if (op.preparesOnServer) {
    auto it = onServer_.find(op.stmt.get());
    if (it != onServer_.end() && it->second.serial == op.gen) it->second.confirmed = true;
    op.stmt->markProvenValid();
  }
  confirmName(op);
  if ((op.undo == OpUndo::ForgetUnnamed || op.serverUnnamed) && unnamedGen_ == op.gen)
    unnamedConfirmed_ = true;
  if (op.undo == OpUndo::ForgetUnnamed) {
    if (auto* n = attached() ? namesIfAny() : nullptr) {
      std::swap(n->confirmedUnnamedBody, op.text);  // op is done with it: no copy
      n->confirmedUnnamedGen = op.gen;
    }
  }
  Reply r = op.source == OpSource::Client ? Reply::Forward : Reply::Drop;
  popFront();
  return r;
}

StatementRelay::Reply StatementRelay::failed(std::string_view payload) {
  PendingOp& op = ops_.front();
  // Errors of simple queries, function calls and a failing commit at Sync end with their
  // ReadyForQuery; nothing is skipped.
  if (isRequest(op.kind) || op.kind == OpKind::Sync) return Reply::Forward;
  auto f = protocol::parseErrorFields(payload);
  Reply r = Reply::Forward;
  auto replaceWith = [&](std::string_view sqlstate, std::string_view message) {
    cutServerStream();
    protocol::writeErrorResponse(*client_.out, "ERROR", sqlstate, message);
    r = Reply::Replace;
  };
  if (op.quiet) {
    r = Reply::Drop;
  } else if (op.source == OpSource::Failing) {
    // In an aborted transaction the server says 25P02 first, as PostgreSQL would to the client.
    if (f.sqlstate == "26000") replaceWith(op.sqlstate, op.text);
  } else if (op.stmt && f.sqlstate == "26000") {
    // The server lost usher's statement (a DEALLOCATE of usher's name): never show that name;
    // prepare it again next time.
    onServer_.erase(op.stmt.get());
    std::string_view name;
    if (!op.text.empty())
      name = op.text;
    else if (auto* n = namesIfAny())
      name = n->nameOf(op.stmt.get());
    replaceWith("26000", quotedName("prepared statement", name, "does not exist"));
  } else if (op.stmt && f.sqlstate == "0A000" &&
             f.message.starts_with("cached plan must not change result type")) {
    // The client sees PostgreSQL's error once; a Parse of the same SQL then gets a fresh plan.
    server_.registry->retire(*op.stmt.get());
    onServer_.erase(op.stmt.get());
  } else if (op.stmt && payload.find(op.stmt->serverName()) != std::string_view::npos) {
    // "bind message supplies 1 parameters, but prepared statement ... requires 2": in the
    // client's words.
    auto* n = namesIfAny();
    std::string_view name = !op.text.empty() ? std::string_view(op.text)
                            : n              ? n->nameOf(op.stmt.get())
                                             : std::string_view{};
    cutServerStream();
    writeRenamedError(*client_.out, payload, op.stmt->serverName(), name);
    r = Reply::Replace;
  }
  // The server now skips to the next Sync: undo what it will not do, newest first.
  size_t skipped = 1;
  while (skipped < ops_.size() &&
         (ops_.at(skipped).kind != OpKind::Sync || ops_.at(skipped).ignored))
    ++skipped;
  for (size_t i = skipped; i-- > 0;) {
    PendingOp& s = ops_.at(i);
    if (isRequest(s.kind)) forgetRequest();
    undo(s, /*failedItself=*/i == 0);
  }
  for (size_t i = 0; i < skipped; ++i) popFront();
  if (ops_.empty()) skipping_ = true;  // the Sync is still to come from the client
  return r;
}

void StatementRelay::undo(PendingOp& op, bool failedItself) {
  if (op.preparesOnServer) {
    auto it = onServer_.find(op.stmt.get());
    if (it != onServer_.end() && !it->second.confirmed && it->second.serial == op.gen)
      onServer_.erase(it);
  }
  if ((op.undo == OpUndo::ForgetUnnamed || op.serverUnnamed) && unnamedGen_ == op.gen)
    unnamedGen_ = 0;
  auto* n = attached() ? namesIfAny() : nullptr;
  if (!n) return;
  switch (op.undo) {
    case OpUndo::None:
      break;
    case OpUndo::ForgetNamed: {
      confirmName(op);  // its fate is known: it failed
      auto it = n->named.find(op.text);
      if (it != n->named.end() && it->second.get() == op.stmt.get()) n->named.erase(it);
      break;
    }
    case OpUndo::RestoreNamed:
      confirmName(op);
      n->named.try_emplace(op.text, op.stmt);
      break;
    case OpUndo::ForgetUnnamed:
      if (failedItself) {
        // PostgreSQL drops the unnamed statement before parsing.
        n->confirmedUnnamedGen = 0;
        if (n->unnamedGen == op.gen) n->unnamedGen = 0;
      } else if (n->unnamedGen == op.gen) {
        // Skipped: the last one the server did parse stays (undone newest first, so several
        // skipped Parses end at it).
        n->unnamedBody.assign(n->confirmedUnnamedBody);
        n->unnamedGen = n->confirmedUnnamedGen;
      }
      break;
    case OpUndo::RestoreUnnamed:
      if (n->unnamedGen == 0) n->unnamedGen = op.gen;
      break;
  }
}

// ---- link lifecycle ------------------------------------------------------------------------

void StatementRelay::popFront() {
  leaving(ops_.front());
  ops_.pop();
}

void StatementRelay::leaving(const PendingOp& op) {
  if (op.dropsNames) --namesInDoubt_;
  if (op.unnamedOp != 0 && op.unnamedOp == lastUnnamedOp_) unnamedOpPending_ = false;
}

void StatementRelay::unlinked() {
  // At a clean release every Parse was answered; after a lost server nothing is pending either.
  if (auto* n = attached() ? namesIfAny() : nullptr) n->unconfirmed.clear();
  ops_.clear();
  skipping_ = false;
  namesInDoubt_ = 0;
  unnamedOpPending_ = false;
  client_ = {};
}

std::vector<std::pair<uint64_t, std::string>> StatementRelay::exportStatements() const {
  std::vector<std::pair<uint64_t, std::string>> list;
  list.reserve(onServer_.size());
  for (const auto& [stmt, entry] : onServer_)
    if (entry.confirmed) list.emplace_back(stmt->id(), std::string(stmt->body()));
  return list;
}

void StatementRelay::importStatements(const std::vector<std::pair<uint64_t, std::string>>& list) {
  for (const auto& [id, body] : list) {
    StmtRef stmt = server_.registry->adopt(id, body);
    auto& entry = onServer_[stmt.get()];
    entry.stmt = std::move(stmt);
    entry.lastUse = ++useClock_;
    entry.confirmed = true;
  }
}

void StatementRelay::forgetServerStatements() {
  onServer_.clear();
  unnamedGen_ = 0;
}

}  // namespace usher::pool
