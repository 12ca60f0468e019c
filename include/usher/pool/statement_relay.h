// StatementRelay: the extended query protocol between a client and the server it is linked to
// in transaction (and statement) pooling, where statement names cannot simply pass through.
//
// A client's statement names are private to it (ClientStatements); on the server each statement
// has usher's name and is prepared once, when first needed there, by usher. So the relay rewrites
// the names in Parse, Bind, Describe and Close, injects the Close+Parse that prepare a statement
// on a server that lacks it, answers a Parse or Close that needs no server work itself, and turns
// an unknown or duplicate name into the error PostgreSQL gives.
//
// Every reply the client is owed is an entry in a queue of pending operations, in the order the
// client sent its messages. Server replies are matched against it: replies to usher's own messages
// are dropped, replies usher owes are written in their turn, and an ErrorResponse makes the server
// skip to the next Sync, as PostgreSQL does; the skipped entries are undone, so what usher records
// is what the server actually did.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <memory>
#include <optional>

#include "usher/base/io_buffer.h"
#include "usher/net/socket.h"
#include "usher/pool/prepared.h"
#include "usher/protocol/framer.h"

namespace usher::pool {

// The linked client as the relay sees it: its buffers and the counters the relay adjusts.
struct RelayClient {
  IoBuffer* in = nullptr;                                   // bytes the client sent
  net::Outflow* toServer = nullptr;                         // the approved part of `in`
  IoBuffer* out = nullptr;                                  // what usher writes to the client
  std::unique_ptr<ClientStatements>* statements = nullptr;  // created on first use
  size_t* discard = nullptr;    // bytes of a dropped message still to arrive
  int* pendingReady = nullptr;  // ReadyForQuery the client still expects
};

// The server connection's side: fixed for the relay's life.
struct RelayServer {
  IoBuffer* in = nullptr;            // bytes the server sent
  net::Outflow* toClient = nullptr;  // the approved part of `in`
  IoBuffer* out = nullptr;           // what usher writes to the server
  StatementRegistry* registry = nullptr;
  uint64_t* serverParses = nullptr;  // SHOW STATS counter
};

enum class OpKind : uint8_t {
  Parse,
  Bind,
  DescribeStatement,
  DescribePortal,
  Execute,
  Close,
  Sync,
  Query,
  FunctionCall,
};

// Where the reply comes from and where it goes.
enum class OpSource : uint8_t {
  Client,       // the client's message (names rewritten): replies go to the client
  Injected,     // usher's own message: a success reply is dropped, an error is the client's
  Synthesized,  // nothing was sent: usher writes ParseComplete/CloseComplete in its turn
  Failing,      // usher's message that fails on purpose, so the server discards to Sync as
                // PostgreSQL would; its error is replaced by the one PostgreSQL gives
};

// What to roll back in the client's names if the server fails or skips the operation.
enum class OpUndo : uint8_t {
  None,
  ForgetNamed,    // a Parse added `name`
  RestoreNamed,   // a Close removed `name` (it was `stmt`)
  ForgetUnnamed,  // a Parse replaced the unnamed statement (generation `gen`)
  RestoreUnnamed  // a Close dropped the unnamed statement (generation `gen`)
};

struct PendingOp {
  OpKind kind = OpKind::Sync;
  OpSource source = OpSource::Client;
  OpUndo undo = OpUndo::None;
  bool preparesOnServer = false;  // a Parse of `stmt` under usher's name
  bool ignored = false;           // a Sync the server ignores (sent during COPY FROM STDIN)
  bool dropsNames = false;        // a Query that may DEALLOCATE / DISCARD the client's names
  bool quiet = false;
  bool serverUnnamed = false;
  uint64_t unnamedOp = 0;  // a client's Parse or Close of its unnamed statement (sequence)
  bool dropsServerStatement =
      false;  // an Execute of DEALLOCATE of usher's own name for stmt  // usher's Parse of a
              // client's unnamed statement (gen)             // Injected before a simple query: an
              // error is not the client's
  char sqlstate[6] = {};  // Failing: the error to give
  uint64_t segment = 0;   // Syncs sent before this operation
  uint64_t gen = 0;       // unnamed statement generation (undo)
  uint64_t id = 0;        // unique per relay
  StmtRef stmt;
  std::string text;  // the client's name (undo), or Failing's message
};

// A FIFO of PendingOp on a vector that is reused: no allocation per message once warm.
class OpQueue {
 public:
  bool empty() const { return count_ == 0; }
  size_t size() const { return count_; }
  PendingOp& front() { return ring_[head_]; }
  PendingOp& at(size_t i) { return ring_[(head_ + i) % ring_.size()]; }
  PendingOp& push();
  void pop();
  PendingOp& back() { return ring_[(head_ + count_ - 1) % ring_.size()]; }
  void popBack();
  void clear() {
    while (!empty()) pop();
  }

 private:
  std::vector<PendingOp> ring_;
  size_t head_ = 0;
  size_t count_ = 0;
};

class StatementRelay {
 public:
  explicit StatementRelay(RelayServer server) : server_(server) {}

  // A client was linked (`maxPrepared`: max_prepared_statements now) / unlinked.
  void attach(const RelayClient& client, int maxPrepared) {
    client_ = client;
    maxPrepared_ = maxPrepared;
  }
  void unlinked();
  bool attached() const { return client_.in != nullptr; }

  // ---- client → server (the client is linked and its server Active) ----
  enum class Step {
    Forward,   // approve the message as it is
    NeedMore,  // the whole message is needed first
    Consumed,  // the relay took care of it (rewritten, answered or discarded)
    Wait,      // it names a statement whose Parse, before an earlier Sync, has no answer yet:
               // whether it exists depends on that answer; process it once the answer is in
  };
  // Called for every client message at a message boundary, before it is approved.
  Step onClientMessage(const protocol::FrameHeader& h);
  // Writes the replies usher owes whose turn has come; true if it wrote any.
  bool emitDue();

  // ---- server → client ----
  enum class Reply { Forward, Drop, Replace };
  // Tags whose whole message the relay must see: the caller waits for them.
  static bool wantsWhole(char tag);
  // One server message (whole if wantsWhole). Replace: the relay wrote what the client gets
  // instead, after moving the approved bytes ahead of it; the caller drops the message.
  Reply onServerMessage(char tag, std::string_view payload);

  // ---- link lifecycle ----
  bool idle() const { return ops_.empty(); }
  // The server's statements are gone (DISCARD ALL / DEALLOCATE ALL ran there).
  void forgetServerStatements();
  size_t preparedCount() const { return onServer_.size(); }
  // The server moves to another worker (idle, nothing pending): the statements it holds, as
  // (id, body), and back in from the list on the new worker's registry.
  std::vector<std::pair<uint64_t, std::string>> exportStatements() const;
  void importStatements(const std::vector<std::pair<uint64_t, std::string>>& list);
  // Moves the server's approved bytes into the client's output, so a reply usher writes or drops
  // keeps its place in the stream.
  void cutServerStream();
  // The client ran SQL-level PREPARE: such statements would outlive the transaction on a shared
  // server, so the server is cleared when released (see ServerSession).
  bool sqlPrepared() const { return sqlPrepared_; }
  void clearSqlPrepared() { sqlPrepared_ = false; }
  // Session state a client left on the server that transaction pooling cannot carry (LISTEN, a
  // session SET of an untracked parameter): the server is closed at release rather than handed
  // to another client. Null when there is none.
  const char* leftState() const { return leftState_; }
  void noteParameterStatus() { parameterSeen_ = true; }

 private:
  struct OnServer {
    StmtRef stmt;
    uint64_t lastUse = 0;
    uint64_t segment = 0;  // when its Parse was sent
    uint64_t serial = 0;   // which Parse of it (PendingOp::gen of that Parse)
    bool confirmed = false;
  };

  ClientStatements& names();
  ClientStatements* namesIfAny() { return client_.statements->get(); }
  IoBuffer& toServer() { return *server_.out; }
  void forgetRequest() {
    if (*client_.pendingReady > 0) --*client_.pendingReady;
  }
  // Moves the client's approved bytes into the server's output so usher's messages can follow
  // them in order.
  void cutClientStream();
  void discardClientMessage(size_t frameSize);
  // Makes `stmt` usable on this server from here on: Close+Parse it unless already there.
  void ensureOnServer(const StmtRef& stmt);
  void sendPrepare(const StmtRef& stmt, OpSource source, std::string_view clientName = {});
  void evictIfFull(const Statement* keep);
  // Sends a message that fails, so the server discards to Sync; the client gets `message`.
  void fail(std::string_view sqlstate, std::string message);
  PendingOp& queue(OpKind kind, OpSource source);
  // While the server skips to Sync, what the client sends meanwhile gets no reply: undone at once.
  void settleSkipped();
  void popFront();  // every removal from the front goes here (it keeps namesInDoubt_)

  Step onParse(const protocol::FrameHeader& h, std::string_view payload);
  Step onBind(const protocol::FrameHeader& h, std::string_view available);
  Step onDescribe(const protocol::FrameHeader& h, std::string_view payload);
  Step onClose(const protocol::FrameHeader& h, std::string_view payload);
  Step onQuery(const protocol::FrameHeader& h, std::string_view payload, bool whole);
  bool unnamedUsable();
  // The name was parsed before an earlier Sync and the server has not said whether it worked.
  bool fateUnknown(std::string_view name);
  void confirmName(const PendingOp& op);
  bool ensureUnnamed();
  // Bind and Describe: the statement `name` refers to, made usable on this server (in `stmt`,
  // and nullopt), or the step already taken: the unnamed statement forwarded, a wait, a failure.
  std::optional<Step> resolveForUse(const protocol::FrameHeader& h, std::string_view name,
                                    OpKind kind, StmtRef& stmt);
  bool unnamedFateUnknown();
  void noteUnnamedOp(PendingOp& op);
  void leaving(const PendingOp& op);  // bookkeeping of an operation leaving the queue
  // DEALLOCATE of a client's name drops a stand-in statement, prepared here for it.
  static std::string standInName(int k);
  void prepareStandIns(int count);

  // A reply completed `op` (success); `Drop` for usher's own.
  Reply succeed();
  Reply failed(std::string_view payload);
  void undo(PendingOp& op, bool failedItself = false);
  void skipToSync();
  void writeSynthesized(const PendingOp& op);

  RelayServer server_;
  RelayClient client_;
  int maxPrepared_ = 200;
  OpQueue ops_;
  std::unordered_map<const Statement*, OnServer> onServer_;
  uint64_t useClock_ = 0;
  uint64_t segment_ = 0;  // Syncs sent on this server
  uint64_t unnamedGen_ = 0;
  uint64_t unnamedSegment_ = 0;    // when the Parse that set unnamedGen_ was sent
  bool unnamedConfirmed_ = false;  // ... and whether the server answered it
  uint64_t lastUnnamedOp_ = 0;     // the client's latest Parse/Close of its unnamed statement
  uint64_t unnamedOpSegment_ = 0;
  bool unnamedOpPending_ = false;  // whose unnamed
                                   // statement the server holds (0: nobody's)
  uint64_t prepareSerial_ = 0;
  uint64_t lastOpId_ = 0;
  int namesInDoubt_ = 0;
  bool deallocDropsServerStatement_ = false;  // such Queries not yet answered
  bool skipping_ = false;                     // the server discards until the next Sync we send
  bool sqlPrepared_ = false;
  bool setSeen_ = false;        // CommandComplete "SET" since the last ReadyForQuery
  bool parameterSeen_ = false;  // ParameterStatus since the last ReadyForQuery
  const char* leftState_ = nullptr;
  std::string deallocName_;     // scratch for parseDeallocate
  std::string deallocPending_;  // the unnamed statement is DEALLOCATE of this client name
};

}  // namespace usher::pool
