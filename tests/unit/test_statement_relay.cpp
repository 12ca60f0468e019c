// StatementRelay: the message orderings of transaction pooling with prepared statements, driven
// through real buffers as ClientSession and ServerSession drive them, without sockets.
#include <doctest/doctest.h>

#include <memory>
#include <string>
#include <vector>

#include "usher/base/byte_reader.h"
#include "usher/base/io_buffer.h"
#include "usher/pool/prepared.h"
#include "usher/pool/statement_relay.h"
#include "usher/protocol/error_fields.h"
#include "usher/protocol/framer.h"
#include "usher/protocol/writer.h"

using namespace usher;
using namespace usher::pool;
using protocol::MessageWriter;

namespace {

struct Msg {
  char tag;
  std::string payload;
};

std::vector<Msg> split(std::string_view bytes) {
  std::vector<Msg> out;
  while (bytes.size() >= 5) {
    ByteReader r(bytes.substr(1, 4));
    uint32_t len = r.u32();
    out.push_back({bytes[0], std::string(bytes.substr(5, len - 4))});
    bytes.remove_prefix(1 + len);
  }
  return out;
}

std::string tags(const std::vector<Msg>& msgs) {
  std::string s;
  for (const auto& m : msgs) s.push_back(m.tag);
  return s;
}

// Frontend messages.
std::string parse(std::string_view name, std::string_view sql) {
  IoBuffer b;
  MessageWriter(b).begin('P').cstr(name).cstr(sql).i16(0).end();
  return std::string(b.view());
}
std::string bind(std::string_view stmt, std::string_view param = {}) {
  IoBuffer b;
  MessageWriter w(b);
  w.begin('B').cstr("").cstr(stmt).i16(0);
  if (param.empty()) {
    w.i16(0);
  } else {
    w.i16(1).i32(int32_t(param.size())).raw(param);
  }
  w.i16(0).end();
  return std::string(b.view());
}
std::string simple(char tag, std::string_view body = {}) {
  IoBuffer b;
  MessageWriter(b).begin(tag).raw(body).end();
  return std::string(b.view());
}
std::string describeStmt(std::string_view name) {
  IoBuffer b;
  MessageWriter(b).begin('D').u8('S').cstr(name).end();
  return std::string(b.view());
}
std::string closeStmt(std::string_view name) {
  IoBuffer b;
  MessageWriter(b).begin('C').u8('S').cstr(name).end();
  return std::string(b.view());
}
std::string query(std::string_view sql) {
  IoBuffer b;
  protocol::writeQuery(b, sql);
  return std::string(b.view());
}
const std::string kExecute = [] {
  IoBuffer b;
  MessageWriter(b).begin('E').cstr("").i32(0).end();
  return std::string(b.view());
}();
const std::string kSync = simple('S');
const std::string kFlush = simple('H');

// Backend messages.
std::string reply(char tag, std::string_view body = {}) {
  return simple(tag, body);
}
std::string error(std::string_view sqlstate, std::string_view message) {
  IoBuffer b;
  protocol::writeErrorResponse(b, "ERROR", sqlstate, message);
  return std::string(b.view());
}
std::string ready(char status = 'I') {
  return reply('Z', std::string(1, status));
}

// One pool's registry, shared by the links made from it (clients of one pool).
struct Pool {
  StatementRegistry registry;
  uint64_t serverParses = 0;
};

// One server connection with its relay, and the client linked to it, moving bytes as the
// sessions do: approve, cut, and flush (usher's own output first, then the approved bytes).
struct Server {
  explicit Server(Pool& pool, int maxPrepared = 200)
      : relay({&in, &toClient, &out, &pool.registry, &pool.serverParses}),
        maxPrepared(maxPrepared) {}
  IoBuffer in, out;
  net::Outflow toClient;
  StatementRelay relay;
  int maxPrepared;
};

struct Client {
  IoBuffer in, out;
  net::Outflow toServer;
  std::unique_ptr<ClientStatements> names;
  size_t discard = 0;
  int pendingReady = 0;
  bool blocked = false;
  Server* server = nullptr;

  void link(Server& s) {
    server = &s;
    s.relay.attach({&in, &toServer, &out, &names, &discard, &pendingReady}, s.maxPrepared);
  }
  void unlink() {
    server->relay.unlinked();
    server = nullptr;
  }

  // The client sends `bytes`; returns what the server receives.
  std::vector<Msg> send(const std::string& bytes) {
    in.append(bytes);
    for (;;) {
      if (discard) {
        size_t n = std::min(discard, in.readable());
        in.consume(n);
        discard -= n;
        continue;
      }
      size_t avail = in.readable() - toServer.ready;
      if (avail < 5) break;
      protocol::FrameHeader h;
      REQUIRE(protocol::peekHeader(in.readPtr() + toServer.ready, avail, 1 << 20, h) ==
              protocol::Decode::Ready);
      auto step = server->relay.onClientMessage(h);
      REQUIRE(step != StatementRelay::Step::NeedMore);
      blocked = step == StatementRelay::Step::Wait;
      if (blocked) break;  // resumed by receive(), as ServerSession::processActive does
      if (h.tag == 'S' || h.tag == 'Q') ++pendingReady;
      if (step == StatementRelay::Step::Consumed) continue;
      toServer.ready += h.frameSize();
    }
    server->relay.emitDue();
    // Flush: the server's output queue, then the approved client bytes.
    server->out.append(in.readPtr(), toServer.ready);
    in.consume(toServer.ready);
    toServer.ready = 0;
    auto msgs = split(server->out.view());
    server->out.consume(server->out.readable());
    return msgs;
  }

  // The server sends `bytes`; returns what the client receives (including replies usher owes).
  std::vector<Msg> receive(const std::string& bytes) {
    Server& s = *server;
    s.in.append(bytes);
    for (;;) {
      s.relay.emitDue();
      size_t avail = s.in.readable() - s.toClient.ready;
      if (avail < 5) break;
      protocol::FrameHeader h;
      REQUIRE(protocol::peekHeader(s.in.readPtr() + s.toClient.ready, avail, 1 << 20, h) ==
              protocol::Decode::Ready);
      std::string_view payload(reinterpret_cast<const char*>(s.in.readPtr()) + s.toClient.ready + 5,
                               h.payloadSize());
      auto r = s.relay.onServerMessage(h.tag, payload);
      if (r != StatementRelay::Reply::Forward) {
        s.relay.cutServerStream();
        s.in.consume(h.frameSize());
        continue;
      }
      if (h.tag == 'Z') {  // as ClientSession::onReadyForQuery, for what reaches the client
        REQUIRE(pendingReady > 0);
        --pendingReady;
      }
      s.toClient.ready += h.frameSize();
    }
    auto got = drain();
    if (blocked) resumed = send("");
    return got;
  }
  std::vector<Msg> resumed;  // what a resumed send() sent the server

  std::vector<Msg> drain() {
    Server& s = *server;
    out.append(s.in.readPtr(), s.toClient.ready);
    s.in.consume(s.toClient.ready);
    s.toClient.ready = 0;
    auto msgs = split(out.view());
    out.consume(out.readable());
    return msgs;
  }
};

std::string nameIn(const Msg& m) {
  return std::string(m.payload.c_str());  // Parse, first field
}

std::string errorText(const Msg& m) {
  auto f = protocol::parseErrorFields(m.payload);
  return std::string(f.sqlstate) + " " + std::string(f.message);
}

// Prepares `name` as `sql` on the client's server and answers as PostgreSQL would.
void prepareOk(Client& c, std::string_view name, std::string_view sql) {
  auto sent = c.send(parse(name, sql) + kSync);
  std::string replies;
  for (const auto& m : sent) {
    if (m.tag == 'C') replies += reply('3');
    if (m.tag == 'P') replies += reply('1');
    if (m.tag == 'S') replies += ready();
  }
  auto got = c.receive(replies);
  REQUIRE(tags(got) == "1Z");
}

}  // namespace

TEST_SUITE("pool") {
  TEST_CASE("relay: a named Parse is prepared under usher's name, after a Close") {
    Pool pool;
    Server s(pool);
    Client c;
    c.link(s);
    auto sent = c.send(parse("mine", "SELECT 1") + kSync);
    REQUIRE(tags(sent) == "CPS");
    CHECK(sent[0].payload.substr(1, 7) == "usher_s");
    CHECK(nameIn(sent[1]) == sent[0].payload.substr(1, sent[0].payload.size() - 2));
    CHECK(sent[1].payload.find("SELECT 1") != std::string::npos);
    // The Close's reply is usher's; the client sees its ParseComplete and ReadyForQuery.
    CHECK(tags(c.receive(reply('3') + reply('1') + ready())) == "1Z");
    CHECK(pool.serverParses == 1);
    CHECK(s.relay.preparedCount() == 1);
    CHECK(s.relay.idle());
  }

  TEST_CASE("relay: Bind goes out under the server's name with its parameters intact") {
    Pool pool;
    Server s(pool);
    Client c;
    c.link(s);
    prepareOk(c, "q", "SELECT $1::int");
    auto sent = c.send(bind("q", "42") + kExecute + kSync);
    REQUIRE(tags(sent) == "BES");
    ByteReader r(sent[0].payload);
    CHECK(r.cstr() == "");
    CHECK(r.cstr().starts_with("usher_s"));
    CHECK(r.i16() == 0);
    CHECK(r.i16() == 1);
    CHECK(r.i32() == 2);
    CHECK(r.bytes(2) == "42");
    CHECK(tags(c.receive(reply('2') + reply('D', std::string("\0\1\0\0\0\00242", 8)) +
                         reply('C', std::string("SELECT 1\0", 9)) + ready())) == "2DCZ");
  }

  TEST_CASE("relay: names are private; identical SQL is shared and prepared once per server") {
    Pool pool;
    Server s(pool);
    Client a, b;
    a.link(s);
    prepareOk(a, "x", "SELECT 'same'");
    a.unlink();
    b.link(s);
    // Another client, another name, the same SQL: the server parses it as the unnamed statement
    // (so the reply is the server's own), and usher's statement is not prepared again.
    auto sent = b.send(parse("y", "SELECT 'same'") + kSync);
    REQUIRE(tags(sent) == "PS");
    CHECK(nameIn(sent[0]).empty());
    CHECK(tags(b.receive(reply('1') + ready())) == "1Z");
    CHECK(pool.serverParses == 1);
    // b cannot use a's name.
    sent = b.send(bind("x") + kExecute + kSync);
    REQUIRE(tags(sent) == "BES");
    auto got = b.receive(error("26000", "prepared statement \"\x01usher-missing\" does not exist") +
                         ready());
    REQUIRE(tags(got) == "EZ");
    CHECK(errorText(got[0]) == "26000 prepared statement \"x\" does not exist");
  }

  TEST_CASE("relay: a statement is prepared on a server that has not seen it") {
    Pool pool;
    Server s1(pool), s2(pool);
    Client c;
    c.link(s1);
    prepareOk(c, "p", "SELECT 2");
    c.unlink();
    c.link(s2);
    auto sent = c.send(bind("p") + kExecute + kSync);
    REQUIRE(tags(sent) == "CPBES");  // Close + Parse injected before the Bind
    auto got = c.receive(reply('3') + reply('1') + reply('2') + reply('C', "SELECT 1") + ready());
    CHECK(tags(got) == "2CZ");
    CHECK(pool.serverParses == 2);
  }

  TEST_CASE("relay: a duplicate name is 42P05 and the pipeline is discarded to Sync") {
    Pool pool;
    Server s(pool);
    Client c;
    c.link(s);
    prepareOk(c, "d", "SELECT 1");
    auto sent = c.send(parse("d", "SELECT 2") + bind("d") + kExecute + kSync);
    REQUIRE(tags(sent) == "PBBES");  // parsed unnamed, then a failing Bind stands in for it
    // The server fails the stand-in and skips to Sync, as it would have the real Parse.
    auto got = c.receive(reply('1') +
                         error("26000", "prepared statement \"\x01usher-missing\" does not exist") +
                         ready());
    REQUIRE(tags(got) == "EZ");
    CHECK(errorText(got[0]) == "42P05 prepared statement \"d\" already exists");
    CHECK(c.names->named.size() == 1);
  }

  TEST_CASE("relay: an error mid-pipeline leaves no ghost of the Parses it skipped") {
    Pool pool;
    Server s(pool);
    Client c;
    c.link(s);
    prepareOk(c, "a", "SELECT 10 / $1::int");
    auto sent = c.send(bind("a", "0") + kExecute + parse("b", "SELECT 'b'") + kSync);
    REQUIRE(tags(sent) == "BECPS");
    auto got = c.receive(reply('2') + error("22012", "division by zero") + ready());
    CHECK(tags(got) == "2EZ");
    CHECK(c.names->find("b") == nullptr);
    CHECK(s.relay.preparedCount() == 1);  // b never reached the server's table
    CHECK(s.relay.idle());
    CHECK(c.pendingReady == 0);
  }

  TEST_CASE("relay: a Bind waits for the fate of a Parse sent before an earlier Sync") {
    Pool pool;
    Server s(pool);
    Client c;
    c.link(s);
    // One write: an unknown name fails the first segment, so PostgreSQL skips the Parse of s0;
    // the Bind of s0 after the Sync must then fail too, not find a statement usher prepared.
    auto sent =
        c.send(bind("nope") + parse("s0", "SELECT 0") + kSync + bind("s0") + kExecute + kSync);
    CHECK(tags(sent) == "BCPS");  // the Bind of s0 is held back
    CHECK(c.blocked);
    auto got = c.receive(error("26000", "prepared statement \"\x01usher-missing\" does not exist") +
                         ready());
    CHECK(tags(got) == "EZ");
    // Resumed: s0 does not exist, so its Bind fails as in PostgreSQL.
    CHECK(tags(c.resumed) == "BES");
    CHECK(c.resumed[0].payload.find("usher-missing") != std::string::npos);
    got = c.receive(error("26000", "prepared statement \"\x01usher-missing\" does not exist") +
                    ready());
    REQUIRE(tags(got) == "EZ");
    CHECK(errorText(got[0]) == "26000 prepared statement \"s0\" does not exist");
  }

  TEST_CASE("relay: a duplicate Parse reports a parse error first, as PostgreSQL") {
    Pool pool;
    Server s(pool);
    Client c;
    c.link(s);
    prepareOk(c, "d", "SELECT 1");
    auto sent = c.send(parse("d", "SELECT * FROM missing") + kSync);
    REQUIRE(tags(sent) == "PBS");  // parsed as the unnamed statement, then the failing Bind
    CHECK(nameIn(sent[0]).empty());
    auto got = c.receive(error("42P01", "relation \"missing\" does not exist") + ready());
    REQUIRE(tags(got) == "EZ");
    CHECK(errorText(got[0]).starts_with("42P01"));
    sent = c.send(parse("d", "SELECT 2") + kSync);
    got = c.receive(reply('1') +
                    error("26000", "prepared statement \"\x01usher-missing\" does not exist") +
                    ready());
    REQUIRE(tags(got) == "EZ");
    CHECK(errorText(got[0]) == "42P05 prepared statement \"d\" already exists");
  }

  TEST_CASE("relay: a failed Parse leaves nothing, and the name can be parsed again") {
    Pool pool;
    Server s(pool);
    Client c;
    c.link(s);
    c.send(parse("bad", "SELEC 1") + kSync);
    auto got = c.receive(reply('3') + error("42601", "syntax error") + ready());
    CHECK(tags(got) == "EZ");
    CHECK(c.names->find("bad") == nullptr);
    CHECK(s.relay.preparedCount() == 0);
    prepareOk(c, "bad", "SELECT 1");
  }

  TEST_CASE("relay: Close is answered at once after a Flush, and skipped after an error") {
    Pool pool;
    Server s(pool);
    Client c;
    c.link(s);
    prepareOk(c, "k", "SELECT 'k'");
    auto sent = c.send(closeStmt("k") + kFlush);
    CHECK(tags(sent) == "H");       // nothing for the server to do but flush
    CHECK(tags(c.drain()) == "3");  // CloseComplete without waiting for a Sync
    CHECK(c.names->find("k") == nullptr);
    c.send(kSync);
    CHECK(tags(c.receive(ready())) == "Z");

    prepareOk(c, "k", "SELECT 'k'");
    c.send(bind("nope") + closeStmt("k") + kSync);
    auto got = c.receive(error("26000", "prepared statement \"\x01usher-missing\" does not exist") +
                         ready());
    CHECK(tags(got) == "EZ");              // no CloseComplete: PostgreSQL skipped the Close
    CHECK(c.names->find("k") != nullptr);  // and removed nothing
  }

  TEST_CASE("relay: Describe of a statement prepared elsewhere re-prepares first") {
    Pool pool;
    Server s1(pool), s2(pool);
    Client c;
    c.link(s1);
    prepareOk(c, "z", "SELECT 1 AS one");
    c.unlink();
    c.link(s2);
    auto sent = c.send(describeStmt("z") + kSync);
    REQUIRE(tags(sent) == "CPDS");
    CHECK(sent[2].payload.substr(0, 8) == "Susher_s");
    auto got = c.receive(reply('3') + reply('1') + reply('t', std::string("\0\0", 2)) +
                         reply('T', std::string("\0\0", 2)) + ready());
    CHECK(tags(got) == "tTZ");
  }

  TEST_CASE("relay: the unnamed statement follows its client to another server") {
    Pool pool;
    Server s1(pool), s2(pool);
    Client a, b;
    a.link(s1);
    auto sent = a.send(parse("", "SELECT 'a'") + kSync);
    CHECK(tags(sent) == "PS");
    CHECK(tags(a.receive(reply('1') + ready())) == "1Z");
    a.unlink();
    // b uses s1 meanwhile with an unnamed statement of its own.
    b.link(s1);
    b.send(parse("", "SELECT 'b'") + kSync);
    b.receive(reply('1') + ready());
    b.unlink();
    // a binds its unnamed statement on s1 again: it is re-parsed there first.
    a.link(s1);
    sent = a.send(bind("") + kExecute + kSync);
    REQUIRE(tags(sent) == "PBES");
    CHECK(sent[0].payload.find("SELECT 'a'") != std::string::npos);
    CHECK(tags(a.receive(reply('1') + reply('2') + reply('C', "SELECT 1") + ready())) == "2CZ");
    // A simple query drops it, as in PostgreSQL: a Bind now fails cleanly.
    a.send(query("SELECT 1"));
    a.receive(reply('C', "SELECT 1") + ready());
    sent = a.send(bind("") + kSync);
    REQUIRE(tags(sent) == "BS");
    auto got = a.receive(error("26000", "prepared statement \"\x01usher-missing\" does not exist") +
                         ready());
    CHECK(errorText(got[0]) == "26000 unnamed prepared statement does not exist");
  }

  TEST_CASE("relay: the LRU closes the least recently used statement on a full server") {
    Pool pool;
    Server s(pool, 2);
    Client c;
    c.link(s);
    prepareOk(c, "s1", "SELECT 1");
    prepareOk(c, "s2", "SELECT 2");
    c.send(bind("s1") + kSync);  // s1 is now more recent than s2
    c.receive(reply('2') + ready());
    auto sent = c.send(parse("s3", "SELECT 3") + kSync);
    REQUIRE(tags(sent) == "CPCS");  // Close s3, Parse s3, Close of the victim
    std::string victim = sent[2].payload.substr(1, sent[2].payload.size() - 2);
    CHECK(c.names->find("s2")->get()->serverName() == victim);
    CHECK(tags(c.receive(reply('3') + reply('1') + reply('3') + ready())) == "1Z");
    CHECK(s.relay.preparedCount() == 2);
    // s2 still works for the client: prepared again when used.
    sent = c.send(bind("s2") + kSync);
    CHECK(tags(sent).starts_with("CP"));
  }

  TEST_CASE("relay: server names never reach the client in an error") {
    Pool pool;
    Server s(pool);
    Client c;
    c.link(s);
    prepareOk(c, "two", "SELECT $1::int + $2::int");
    std::string server = c.names->find("two")->get()->serverName();
    c.send(bind("two", "1") + kSync);
    auto got =
        c.receive(error("08P01", "bind message supplies 1 parameters, but prepared statement \"" +
                                     server + "\" requires 2") +
                  ready());
    REQUIRE(tags(got) == "EZ");
    CHECK(errorText(got[0]) ==
          "08P01 bind message supplies 1 parameters, but prepared statement \"two\" requires 2");
  }

  TEST_CASE("relay: SQL DEALLOCATE drops the client's name, never the shared statement") {
    Pool pool;
    Server s(pool);
    Client c;
    c.link(s);
    prepareOk(c, "p", "SELECT 1");
    // The server deallocates a stand-in, prepared in a Sync of usher's own (an error there must
    // not make the server skip the simple query, which no Sync of the client's follows).
    auto sent = c.send(query("BEGIN; deallocate prepare P; COMMIT"));
    REQUIRE(tags(sent) == "CPSQ");
    CHECK(sent[3].payload.find("DEALLOCATE usher_dealloc_1") != std::string::npos);
    CHECK(c.names->find("p") != nullptr);  // gone only once the server has run it
    auto got = c.receive(reply('3') + reply('1') + ready() + reply('C', std::string("BEGIN\0", 6)) +
                         reply('C', std::string("DEALLOCATE\0", 11)) +
                         reply('C', std::string("COMMIT\0", 7)) + ready());
    CHECK(tags(got) == "CCCZ");
    CHECK(c.names->find("p") == nullptr);
    CHECK(s.relay.preparedCount() == 1);  // still there for other clients
    CHECK(c.pendingReady == 0);
    // A query that fails before its DEALLOCATE leaves the name, as in PostgreSQL.
    prepareOk(c, "r", "SELECT 3");
    c.send(query("SELECT 1/0; DEALLOCATE r"));
    c.receive(reply('3') + reply('1') + ready() + error("22012", "division by zero") + ready());
    CHECK(c.names->find("r") != nullptr);
    // In a failed transaction the stand-in's Parse fails quietly; the client gets PostgreSQL's
    // error for its DEALLOCATE, once, and keeps the name.
    sent = c.send(query("DEALLOCATE r"));
    REQUIRE(tags(sent) == "CPSQ");
    got = c.receive(reply('3') + error("25P02", "current transaction is aborted") + ready('E') +
                    error("25P02", "current transaction is aborted") + ready('E'));
    CHECK(tags(got) == "EZ");
    CHECK(c.names->find("r") != nullptr);
    CHECK(c.pendingReady == 0);
    CHECK(s.relay.idle());

    c.send(query("DEALLOCATE ALL"));
    c.receive(reply('C', std::string("DEALLOCATE ALL\0", 15)) + ready());
    CHECK(c.names->named.empty());
    CHECK(s.relay.preparedCount() == 0);
  }

  TEST_CASE("relay: a Sync pipelined before COPY data gets no ReadyForQuery of its own") {
    Pool pool;
    Server s(pool);
    Client c;
    c.link(s);
    c.send(parse("", "COPY t FROM STDIN") + bind("") + kExecute + kSync);
    CHECK(c.pendingReady == 1);
    c.receive(reply('1') + reply('2') + reply('G', std::string("\0\0\0", 3)));
    CHECK(c.pendingReady == 0);  // PostgreSQL ignores that Sync while copying in
    c.send(simple('d', "1\n") + simple('c') + kSync);
    CHECK(tags(c.receive(reply('C', "COPY 1") + ready())) == "CZ");
    CHECK(c.pendingReady == 0);
    CHECK(s.relay.idle());
  }

  TEST_CASE("prepared: parsing DEALLOCATE and splitting statements") {
    std::string name;
    CHECK(parseDeallocate("DEALLOCATE foo", name));
    CHECK(name == "foo");
    CHECK(parseDeallocate("  deallocate PREPARE \"MiXed\" ; ", name));
    CHECK(name == "MiXed");
    CHECK(parseDeallocate("DEALLOCATE Foo", name));
    CHECK(name == "foo");
    CHECK(parseDeallocate("DEALLOCATE prepare", name));
    CHECK(name == "prepare");
    CHECK_FALSE(parseDeallocate("DEALLOCATE ALL", name));
    CHECK_FALSE(parseDeallocate("DEALLOCATE foo bar", name));
    CHECK_FALSE(parseDeallocate("SELECT 1", name));

    std::vector<std::string> parts;
    std::string_view sql = "SELECT ';'; /* ; /* nested ; */ */ SELECT $x$;$x$; -- ;\nSELECT \"a;\"";
    forEachStatement(sql,
                     [&](size_t off, size_t len) { parts.emplace_back(sql.substr(off, len)); });
    REQUIRE(parts.size() == 3);
    CHECK(parts[0] == "SELECT ';'");
    CHECK(parts[2] == " -- ;\nSELECT \"a;\"");
  }

  TEST_CASE("prepared: a statement lives while referenced; retired ones are not found again") {
    StatementRegistry reg;
    StmtRef a = reg.intern(std::string_view("SELECT 1\0\0\0", 11));
    StmtRef b = reg.intern(std::string_view("SELECT 1\0\0\0", 11));
    CHECK(a.get() == b.get());
    CHECK(reg.size() == 1);
    reg.retire(*a.get());
    StmtRef c = reg.intern(std::string_view("SELECT 1\0\0\0", 11));
    CHECK(c.get() != a.get());
    CHECK(c->serverName() != a->serverName());
    a.reset();
    b.reset();  // frees the retired one
    c.reset();
    CHECK(reg.size() == 0);
  }
}
