// The admin console: PgBouncer's SHOW and control commands. With several workers a SHOW is
// answered by every worker from its own pools and sessions and the parts are merged; a control
// command is applied by every worker.
#include "usher/admin/console.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <charconv>
#include <chrono>
#include <functional>
#include <map>
#include <span>
#include <vector>

#include "usher/admin/merge.h"
#include "usher/admin/result_set.h"
#include "usher/base/clock.h"
#include "usher/base/log.h"
#include "usher/client/client_session.h"
#include "usher/net/address.h"
#include "usher/net/worker.h"
#include "usher/pool/pool.h"
#include "usher/pool/server_session.h"
#include "usher/protocol/writer.h"
#include "usher_version.h"

namespace usher::admin {
namespace {

using client::ClientSession;
using Row = std::vector<std::optional<std::string>>;

// Commands that answer later; stored in ClientSession::adminPending().
enum Pending : uint8_t { kNone = 0, kPause = 1, kSuspend = 2, kWaitClose = 3, kGather = 4 };

// Console errors are ERROR (the session goes on), SQLSTATE 08P01, PgBouncer's texts.
void error(IoBuffer& out, std::string_view message) {
  protocol::writeErrorResponse(out, "ERROR", "08P01", message);
}

void done(IoBuffer& out, std::string_view tag) {
  protocol::MessageWriter(out).begin(protocol::be::kCommandComplete).cstr(tag).end();
}

std::string upper(std::string_view s) {
  std::string u(s);
  for (auto& c : u) c = char(std::toupper(static_cast<unsigned char>(c)));
  return u;
}

std::vector<std::string> words(std::string_view sql) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < sql.size()) {
    while (i < sql.size() && std::isspace(static_cast<unsigned char>(sql[i]))) ++i;
    size_t j = i;
    while (j < sql.size() && !std::isspace(static_cast<unsigned char>(sql[j]))) ++j;
    if (j > i) out.emplace_back(sql.substr(i, j - i));
    i = j;
  }
  return out;
}

const char* poolModeText(config::PoolMode m) {
  return config::toString(m);
}

// Wall-clock time of a monotonic-ms instant, for connect_time/request_time columns.
std::string wallTime(net::Worker& w, int64_t monoMs) {
  auto now = std::chrono::system_clock::now().time_since_epoch();
  int64_t nowWall = std::chrono::duration_cast<std::chrono::seconds>(now).count();
  return timestamp(nowWall - (w.nowMs() - monoMs) / 1000);
}

std::string hexPtr(const void* p) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%p", p);
  return buf;
}

// ---- SHOW POOLS / STATS / TOTALS ----------------------------------------------------------------

size_t consoleClients(net::Worker& w) {
  size_t n = 0;
  w.clients().forEach([&](ClientSession& c) {
    n += c.isAdmin() && c.state() != client::ClientState::Closing &&
         c.state() != client::ClientState::Startup && c.state() != client::ClientState::Auth;
  });
  return n;
}

void showPools(net::Worker& w, IoBuffer& out) {
  ResultSet rs(out, {{"database", oid::kText},
                     {"user", oid::kText},
                     {"cl_active", oid::kInt4},
                     {"cl_waiting", oid::kInt4},
                     {"cl_active_cancel_req", oid::kInt4},
                     {"cl_waiting_cancel_req", oid::kInt4},
                     {"sv_active", oid::kInt4},
                     {"sv_active_cancel", oid::kInt4},
                     {"sv_being_canceled", oid::kInt4},
                     {"sv_idle", oid::kInt4},
                     {"sv_used", oid::kInt4},
                     {"sv_tested", oid::kInt4},
                     {"sv_login", oid::kInt4},
                     {"maxwait", oid::kInt4},
                     {"maxwait_us", oid::kInt4},
                     {"pool_mode", oid::kText},
                     {"load_balance_hosts", oid::kText}});
  uint64_t nowUs = monotonicMicros();
  // The console's own pool, as PgBouncer lists it (statement mode, no servers).
  rs.row(Row{"pgbouncer", "pgbouncer", num(consoleClients(w)), "0", "0", "0", "0", "0", "0", "0",
             "0", "0", "0", "0", "0", "statement", std::nullopt});
  w.pools().forEach([&](pool::Pool& p) {
    uint64_t wait = p.maxWaitUs(nowUs);
    rs.row(Row{p.database(), p.user(), num(p.activeClientCount()), num(p.waitingCount()), "0", "0",
               num(p.activeCount() - p.resettingCount()), "0", "0", num(p.idleCount()), "0",
               num(p.resettingCount()), num(p.loginCount()), num(wait / 1000000),
               num(wait % 1000000), poolModeText(p.mode()), std::nullopt});
  });
  rs.finish();
}

// Per database, as PgBouncer aggregates SHOW STATS.
std::map<std::string, std::pair<pool::PoolStats, pool::PoolStats>> statsByDatabase(net::Worker& w) {
  std::map<std::string, std::pair<pool::PoolStats, pool::PoolStats>> out;
  out["pgbouncer"].first = w.consoleStats;
  w.pools().forEach([&](pool::Pool& p) {
    auto& [totals, averages] = out[p.database()];
    totals += p.stats;
    averages += p.averages;
  });
  return out;
}

std::vector<uint64_t> statValues(const pool::PoolStats& s) {
  // server_parse_count: Parse messages usher sent to servers for clients' named statements.
  return {s.serverAssignments, s.xactCount,    s.queryCount,  s.bytesReceived,
          s.bytesSent,         s.xactTimeUs,   s.queryTimeUs, s.waitTimeUs,
          s.clientParses,      s.serverParses, s.binds};
}

enum class StatsView { All, Totals, Averages };

void showStats(net::Worker& w, IoBuffer& out, StatsView view) {
  // Column names exactly as PgBouncer 1.25 sends them (inconsistent prefixes included).
  static constexpr std::string_view kAll[] = {"total_server_assignment_count",
                                              "total_xact_count",
                                              "total_query_count",
                                              "total_received",
                                              "total_sent",
                                              "total_xact_time",
                                              "total_query_time",
                                              "total_wait_time",
                                              "total_client_parse_count",
                                              "total_server_parse_count",
                                              "total_bind_count",
                                              "avg_server_assignment_count",
                                              "avg_xact_count",
                                              "avg_query_count",
                                              "avg_recv",
                                              "avg_sent",
                                              "avg_xact_time",
                                              "avg_query_time",
                                              "avg_wait_time",
                                              "avg_client_parse_count",
                                              "avg_server_parse_count",
                                              "avg_bind_count"};
  static constexpr std::string_view kTotals[] = {"server_assignment_count",
                                                 "xact_count",
                                                 "query_count",
                                                 "bytes_received",
                                                 "bytes_sent",
                                                 "xact_time",
                                                 "query_time",
                                                 "wait_time",
                                                 "client_parse_count",
                                                 "server_parse_count",
                                                 "bind_count"};
  static constexpr std::string_view kAverages[] = {"server_assignment_count",
                                                   "xact_count",
                                                   "query_count",
                                                   "bytes_received",
                                                   "bytes_sent",
                                                   "xact_time",
                                                   "query_time",
                                                   "wait_time",
                                                   "avg_client_parse_count",
                                                   "avg_server_parse_count",
                                                   "avg_bind_count"};
  std::vector<Column> cols{{"database", oid::kText}};
  std::span<const std::string_view> names = kAll;
  if (view == StatsView::Totals) names = kTotals;
  if (view == StatsView::Averages) names = kAverages;
  for (auto n : names) cols.push_back({n, oid::kNumeric});
  ResultSet rs(out, cols);
  for (const auto& [db, pair] : statsByDatabase(w)) {
    Row row{db};
    if (view != StatsView::Averages)
      for (auto v : statValues(pair.first)) row.push_back(num(v));
    if (view != StatsView::Totals)
      for (auto v : statValues(pair.second)) row.push_back(num(v));
    rs.row(row);
  }
  rs.finish();
}

void showTotals(net::Worker& w, IoBuffer& out) {
  pool::PoolStats t, a;
  w.pools().forEach([&](pool::Pool& p) {
    t += p.stats;
    a += p.averages;
  });
  static constexpr std::string_view kNames[] = {"server_assignment_count",
                                                "xact_count",
                                                "query_count",
                                                "client_bytes",
                                                "server_bytes",
                                                "xact_time",
                                                "query_time",
                                                "wait_time",
                                                "ps_client_parse_count",
                                                "ps_server_parse_count",
                                                "ps_bind_count"};
  ResultSet rs(out, {{"name", oid::kText}, {"value", oid::kNumeric}});
  auto tv = statValues(t), av = statValues(a);
  for (size_t i = 0; i < std::size(kNames); ++i)
    rs.row(Row{"total_" + std::string(kNames[i]), num(tv[i])});
  for (size_t i = 0; i < std::size(kNames); ++i)
    rs.row(Row{"avg_" + std::string(kNames[i]), num(av[i])});
  rs.finish();
}

// ---- SHOW CLIENTS / SERVERS / SOCKETS -----------------------------------------------------------

std::vector<Column> sessionColumns(bool sockets) {
  std::vector<Column> cols{{"type", oid::kText},
                           {"user", oid::kText},
                           {"database", oid::kText},
                           {"replication", oid::kText},
                           {"state", oid::kText},
                           {"addr", oid::kText},
                           {"port", oid::kInt4},
                           {"local_addr", oid::kText},
                           {"local_port", oid::kInt4},
                           {"connect_time", oid::kText},
                           {"request_time", oid::kText},
                           {"wait", oid::kInt4},
                           {"wait_us", oid::kInt4},
                           {"close_needed", oid::kInt4},
                           {"ptr", oid::kText},
                           {"link", oid::kText},
                           {"remote_pid", oid::kInt4},
                           {"tls", oid::kText},
                           {"application_name", oid::kText},
                           {"prepared_statements", oid::kInt4},
                           {"id", oid::kInt4}};
  if (sockets) {
    // SHOW SOCKETS: the 21 session columns, then PgBouncer's 7 buffer columns.
    for (auto n : {"recv_pos", "pkt_pos", "pkt_remain", "send_pos", "send_remain", "pkt_avail",
                   "send_avail"})
      cols.push_back({n, oid::kInt4});
  }
  return cols;
}

std::pair<std::string, std::string> splitAddr(const std::string& text) {
  if (text == "unix") return {"unix", "0"};
  auto colon = text.rfind(':');
  if (colon == std::string::npos) return {text, "0"};
  std::string host = text.substr(0, colon);
  if (host.size() > 1 && host.front() == '[') host = host.substr(1, host.size() - 2);
  return {host, text.substr(colon + 1)};
}

const char* clientStateText(const ClientSession& c) {
  switch (c.state()) {
    case client::ClientState::Waiting:
    case client::ClientState::LoginWait:
      return "waiting";
    case client::ClientState::Startup:
    case client::ClientState::Auth:
      return "login";
    case client::ClientState::Closing:
      return "justfree";
    default:
      return "active";
  }
}

const char* serverStateText(const pool::ServerSession& s) {
  switch (s.state()) {
    case pool::ServerState::Connecting:
    case pool::ServerState::Login:
      return "login";
    case pool::ServerState::Idle:
      return "idle";
    case pool::ServerState::Resetting:
      return "tested";
    default:
      return "active";
  }
}

// The local end of a socket ("127.0.0.1", 6432), for the local_addr/local_port columns.
std::pair<std::optional<std::string>, std::string> localAddr(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (fd < 0 || getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0)
    return {std::nullopt, "0"};
  if (ss.ss_family == AF_UNIX) return {"unix", "0"};
  auto [a, p] = splitAddr(net::peerText(ss, len));
  return {a, p};
}

// Buffer columns of SHOW SOCKETS: bytes held for reading and for sending.
void socketColumns(Row& row, net::Socket& sock) {
  row.push_back(num(sock.in.readable()));   // recv_pos
  row.push_back("0");                       // pkt_pos
  row.push_back("0");                       // pkt_remain
  row.push_back(num(sock.out.readable()));  // send_pos
  row.push_back("0");                       // send_remain
  row.push_back(num(sock.in.readable()));   // pkt_avail
  row.push_back(num(sock.out.readable()));  // send_avail
}

void clientRow(net::Worker& w, ResultSet& rs, ClientSession& c, bool sockets, uint64_t nowUs) {
  auto [addr, port] = splitAddr(c.peer());
  auto [laddr, lport] = localAddr(c.socket().fd());
  uint64_t wait = c.state() == client::ClientState::Waiting ? nowUs - c.waitStartUs() : 0;
  const std::string* app = c.params().find("application_name");
  Row row{"C",
          c.user(),
          c.database(),
          "none",
          clientStateText(c),
          addr,
          port,
          laddr,
          lport,
          wallTime(w, c.connectedAtMs()),
          wallTime(w, c.stateSinceMs()),
          num(wait / 1000000),
          num(wait % 1000000),
          "0",
          hexPtr(&c),
          c.server() ? hexPtr(c.server()) : "",
          "0",
          "",
          app ? *app : "",
          num(c.statementsIfAny() ? c.statementsIfAny()->named.size() : 0),
          num(c.id())};
  if (sockets) socketColumns(row, c.socket());
  rs.row(row);
}

void serverRow(net::Worker& w, ResultSet& rs, pool::Pool& p, pool::ServerSession& s, bool sockets) {
  auto [addr, port] = splitAddr(s.endpoint().text);
  auto [laddr, lport] = localAddr(const_cast<pool::ServerSession&>(s).socket().fd());
  const std::string* app = s.params().find("application_name");
  Row row{"S",
          p.login().user,
          p.database(),
          "none",
          serverStateText(s),
          addr,
          port,
          laddr,
          lport,
          wallTime(w, s.createdAtMs()),
          wallTime(w, s.lastUsedMs()),
          "0",
          "0",
          p.needsClose(s) || s.relay().leftState() ? "1" : "0",
          hexPtr(&s),
          s.client() ? hexPtr(s.client()) : "",
          num(int64_t(s.backendPid())),
          "",
          app ? *app : "",
          num(s.relay().preparedCount()),
          num(s.id())};
  if (sockets) socketColumns(row, const_cast<pool::ServerSession&>(s).socket());
  rs.row(row);
}

void showClients(net::Worker& w, IoBuffer& out) {
  ResultSet rs(out, sessionColumns(false));
  uint64_t nowUs = monotonicMicros();
  w.clients().forEach([&](ClientSession& c) {
    if (c.state() != client::ClientState::Closing) clientRow(w, rs, c, false, nowUs);
  });
  rs.finish();
}

void showServers(net::Worker& w, IoBuffer& out) {
  ResultSet rs(out, sessionColumns(false));
  w.pools().forEach([&](pool::Pool& p) {
    p.forEachServer([&](pool::ServerSession& s) { serverRow(w, rs, p, s, false); });
  });
  rs.finish();
}

void showSockets(net::Worker& w, IoBuffer& out, bool activeOnly) {
  ResultSet rs(out, sessionColumns(true));
  uint64_t nowUs = monotonicMicros();
  w.clients().forEach([&](ClientSession& c) {
    if (c.state() == client::ClientState::Closing) return;
    if (activeOnly && c.state() != client::ClientState::Linked) return;
    clientRow(w, rs, c, true, nowUs);
  });
  w.pools().forEach([&](pool::Pool& p) {
    p.forEachServer([&](pool::ServerSession& s) {
      if (activeOnly && s.state() != pool::ServerState::Active) return;
      serverRow(w, rs, p, s, true);
    });
  });
  rs.finish();
}

// ---- SHOW DATABASES / USERS / CONFIG / LISTS / MEM / STATE / VERSION / DNS ----------------------

void showDatabases(net::Worker& w, IoBuffer& out) {
  const auto& cfg = w.config();
  ResultSet rs(out, {{"name", oid::kText},
                     {"host", oid::kText},
                     {"port", oid::kInt4},
                     {"database", oid::kText},
                     {"force_user", oid::kText},
                     {"pool_size", oid::kInt4},
                     {"min_pool_size", oid::kInt4},
                     {"reserve_pool_size", oid::kInt4},
                     {"server_lifetime", oid::kInt4},
                     {"pool_mode", oid::kText},
                     {"load_balance_hosts", oid::kText},
                     {"max_connections", oid::kInt4},
                     {"current_connections", oid::kInt4},
                     {"max_client_connections", oid::kInt4},
                     {"current_client_connections", oid::kInt4},
                     {"paused", oid::kInt4},
                     {"disabled", oid::kInt4}});
  rs.row(Row{"pgbouncer", std::nullopt, num(cfg.listenPort), "pgbouncer", "pgbouncer", "2", "0",
             "0", num(cfg.serverLifetime / 1000), "statement", std::nullopt, "0", "0", "0",
             num(consoleClients(w)), "0", "0"});
  for (const auto& db : cfg.databases) {
    size_t servers = 0, clients = 0;
    bool paused = false;
    w.pools().forEach([&](pool::Pool& p) {
      if (p.database() != db.name) return;
      servers += p.serverCount();
      clients += p.clientCount();
      paused |= p.paused();
    });
    auto opt = [](const std::optional<int>& v, int dflt) { return num(v.value_or(dflt)); };
    rs.row(
        Row{db.name, db.host.empty() ? std::nullopt : std::optional<std::string>(db.host),
            num(db.port), db.dbname.empty() ? db.name : db.dbname,
            db.user.empty() ? std::nullopt : std::optional<std::string>(db.user),
            opt(db.poolSize, cfg.defaultPoolSize), opt(db.minPoolSize, cfg.minPoolSize),
            opt(db.reservePool, cfg.reservePoolSize), num(cfg.serverLifetime / 1000),
            db.poolMode ? std::optional<std::string>(config::toString(*db.poolMode)) : std::nullopt,
            std::nullopt, opt(db.maxDbConnections, cfg.maxDbConnections), num(servers), "0",
            num(clients), paused || w.paused() ? "1" : "0", w.isDisabled(db.name) ? "1" : "0"});
  }
  rs.finish();
}

void showUsers(net::Worker& w, IoBuffer& out) {
  const auto& cfg = w.config();
  ResultSet rs(out, {{"name", oid::kText},
                     {"pool_size", oid::kText},
                     {"reserve_pool_size", oid::kText},
                     {"pool_mode", oid::kText},
                     {"max_user_connections", oid::kInt4},
                     {"current_connections", oid::kInt4},
                     {"max_user_client_connections", oid::kInt4},
                     {"current_client_connections", oid::kInt4}});
  std::map<std::string, std::pair<size_t, size_t>> counts;  // servers, clients
  w.pools().forEach([&](pool::Pool& p) {
    counts[p.login().user].first += p.serverCount();
    counts[p.user()].second += p.clientCount();
  });
  std::map<std::string, const config::UserConfig*> users;
  for (const auto& u : cfg.users) users[u.name] = &u;
  for (const auto& [name, secret] : cfg.secrets) users.emplace(name, nullptr);
  for (const auto& [name, u] : users) {
    // PgBouncer prints user overrides as "%9d", or '' when not set.
    auto opt = [](std::optional<int> v) -> std::string {
      if (!v) return "";
      char buf[16];
      std::snprintf(buf, sizeof buf, "%9d", *v);
      return buf;
    };
    auto& c = counts[name];
    rs.row(Row{name, u ? opt(u->poolSize) : "", "",
               u && u->poolMode ? std::optional<std::string>(config::toString(*u->poolMode))
                                : std::nullopt,
               num(u && u->maxUserConnections ? *u->maxUserConnections : cfg.maxUserConnections),
               num(c.first), "0", num(c.second)});
  }
  rs.finish();
}

void showConfig(net::Worker& w, IoBuffer& out) {
  ResultSet rs(out, {{"key", oid::kText},
                     {"value", oid::kText},
                     {"default", oid::kText},
                     {"changeable", oid::kText}});
  for (const auto& s : config::describeSettings(w.config()))
    rs.row(Row{s.key, s.value, s.defaultValue, s.changeable ? "yes" : "no"});
  rs.finish();
}

void showLists(net::Worker& w, IoBuffer& out) {
  size_t pools = 0, usedServers = 0, freeServers = 0, login = 0, used = 0;
  w.pools().forEach([&](pool::Pool& p) {
    ++pools;
    usedServers += p.activeCount() + p.loginCount();
    freeServers += p.idleCount();
  });
  w.clients().forEach([&](ClientSession& c) {
    if (c.state() == client::ClientState::Startup || c.state() == client::ClientState::Auth)
      ++login;
    else
      ++used;
  });
  size_t users = w.config().users.size();
  for (const auto& [name, s] : w.config().secrets)
    if (!w.config().findUser(name)) ++users;
  ResultSet rs(out, {{"list", oid::kText}, {"items", oid::kInt4}});
  if (w.engine().size() > 1) pools = w.engine().sharedPools().poolCount();
  const std::pair<const char*, size_t> items[] = {{"databases", w.config().databases.size()},
                                                  {"users", users},
                                                  {"peers", 0},
                                                  {"pools", pools},
                                                  {"peer_pools", 0},
                                                  {"free_clients", 0},
                                                  {"used_clients", used},
                                                  {"login_clients", login},
                                                  {"free_servers", freeServers},
                                                  {"used_servers", usedServers},
                                                  {"dns_names", 0},
                                                  {"dns_zones", 0},
                                                  {"dns_queries", 0},
                                                  {"dns_pending", 0}};
  for (const auto& [name, n] : items) rs.row(Row{name, num(n)});
  rs.finish();
}

void showMem(net::Worker& w, IoBuffer& out) {
  ResultSet rs(out, {{"name", oid::kText},
                     {"size", oid::kInt4},
                     {"used", oid::kInt4},
                     {"free", oid::kInt4},
                     {"memtotal", oid::kInt4}});
  size_t clients = w.clients().size(), servers = 0, pools = 0;
  w.pools().forEach([&](pool::Pool& p) {
    servers += p.serverCount();
    ++pools;
  });
  size_t block = w.buffers().blockSize(), freeBlocks = w.buffers().freeBlocks();
  auto row = [&](const char* name, size_t size, size_t usedN, size_t freeN) {
    rs.row(Row{name, num(size), num(usedN), num(freeN), num(size * (usedN + freeN))});
  };
  row("client_session", sizeof(ClientSession), clients, 0);
  row("server_session", sizeof(pool::ServerSession), servers, 0);
  row("pool", sizeof(pool::Pool), pools, 0);
  row("iobuf", block, 0, freeBlocks);
  rs.finish();
}

void showState(net::Worker& w, IoBuffer& out) {
  ResultSet rs(out, {{"key", oid::kText}, {"value", oid::kText}});
  rs.row(Row{"active", w.paused() || w.suspended() ? "no" : "yes"});
  rs.row(Row{"paused", w.paused() ? "yes" : "no"});
  rs.row(Row{"suspended", w.suspended() ? "yes" : "no"});
  rs.finish();
}

void showVersion(IoBuffer& out) {
  ResultSet rs(out, {{"version", oid::kText}});
  // Exporters parse "PgBouncer x.y.z" to pick the columns they expect: we answer as the
  // PgBouncer version whose console usher matches.
  rs.row(Row{"PgBouncer 1.25.0 compatible (usher " USHER_VERSION ")"});
  rs.finish();
}

void showDns(IoBuffer& out, bool zones) {
  ResultSet rs(out,
               zones ? std::vector<Column>{{"zonename", oid::kText},
                                           {"serial", oid::kInt8},
                                           {"count", oid::kInt4}}
                     : std::vector<Column>{
                           {"hostname", oid::kText}, {"ttl", oid::kInt8}, {"addrs", oid::kText}});
  rs.finish();
}

constexpr std::string_view kHelp[] = {
    "\tSHOW HELP|CONFIG|DATABASES|POOLS|CLIENTS|SERVERS|USERS|VERSION",
    "\tSHOW PEERS|PEER_POOLS",
    "\tSHOW FDS|SOCKETS|ACTIVE_SOCKETS|LISTS|MEM|STATE",
    "\tSHOW DNS_HOSTS|DNS_ZONES",
    "\tSHOW STATS|STATS_TOTALS|STATS_AVERAGES|TOTALS",
    "\tSET key = arg",
    "\tRELOAD",
    "\tPAUSE [<db>]",
    "\tRESUME [<db>]",
    "\tDISABLE <db>",
    "\tENABLE <db>",
    "\tRECONNECT [<db>]",
    "\tKILL [<db>]",
    "\tKILL_CLIENT <client_id>",
    "\tSUSPEND",
    "\tSHUTDOWN",
    "\tSHUTDOWN WAIT_FOR_SERVERS|WAIT_FOR_CLIENTS",
    "\tWAIT_CLOSE [<db>]"};

void showHelp(IoBuffer& out) {
  std::string text;
  for (auto line : kHelp) text.append("\n").append(line);
  // NOTICE "Console usage" with the command list in DETAIL, as PgBouncer sends it.
  protocol::MessageWriter w(out);
  w.begin(protocol::be::kNoticeResponse).u8('S').cstr("NOTICE").u8('C').cstr("00000");
  w.u8('M').cstr("Console usage").u8('D').cstr(text).u8(0).end();
  done(out, "SHOW");
}

void showPeers(IoBuffer& out, bool pools) {
  if (pools) {
    ResultSet rs(out, {{"peer_id", oid::kInt4},
                       {"cl_active_cancel_req", oid::kInt4},
                       {"cl_waiting_cancel_req", oid::kInt4},
                       {"sv_active_cancel", oid::kInt4},
                       {"sv_login", oid::kInt4}});
    rs.finish();
  } else {
    ResultSet rs(out, {{"peer_id", oid::kInt4},
                       {"host", oid::kText},
                       {"port", oid::kInt4},
                       {"pool_size", oid::kInt4}});
    rs.finish();
  }
}

// Settings drivers SET or SHOW on connect; PgBouncer answers them with fixed values.
constexpr std::pair<std::string_view, std::string_view> kFakeParams[] = {
    {"CLIENT_ENCODING", "UTF-8"},
    {"DEFAULT_TRANSACTION_ISOLATION", "read committed"},
    {"STANDARD_CONFORMING_STRINGS", "on"},
    {"DATESTYLE", "ISO"},
    {"TIMEZONE", "GMT"},
    {"EXTRA_FLOAT_DIGITS", "2"}};

const std::string_view* fakeParam(const std::string& upperName) {
  for (const auto& [name, value] : kFakeParams)
    if (name == upperName) return &value;
  return nullptr;
}

bool show(net::Worker& w, IoBuffer& out, const std::string& what) {
  if (const auto* value = fakeParam(what)) {
    std::string name = what;
    for (auto& ch : name) ch = char(std::tolower(static_cast<unsigned char>(ch)));
    ResultSet rs(out, {{name, oid::kText}});
    rs.row(Row{std::string(*value)});
    rs.finish();
    return true;
  }
  if (what == "POOLS")
    showPools(w, out);
  else if (what == "STATS")
    showStats(w, out, StatsView::All);
  else if (what == "STATS_TOTALS")
    showStats(w, out, StatsView::Totals);
  else if (what == "STATS_AVERAGES")
    showStats(w, out, StatsView::Averages);
  else if (what == "TOTALS")
    showTotals(w, out);
  else if (what == "CLIENTS")
    showClients(w, out);
  else if (what == "SERVERS")
    showServers(w, out);
  else if (what == "SOCKETS")
    showSockets(w, out, false);
  else if (what == "ACTIVE_SOCKETS")
    showSockets(w, out, true);
  else if (what == "DATABASES")
    showDatabases(w, out);
  else if (what == "USERS")
    showUsers(w, out);
  else if (what == "CONFIG")
    showConfig(w, out);
  else if (what == "LISTS")
    showLists(w, out);
  else if (what == "MEM")
    showMem(w, out);
  else if (what == "VERSION")
    showVersion(out);
  else if (what == "STATE")
    showState(w, out);
  else if (what == "DNS_HOSTS")
    showDns(out, false);
  else if (what == "DNS_ZONES")
    showDns(out, true);
  else if (what == "HELP")
    showHelp(out);
  else if (what == "PEERS")
    showPeers(out, false);
  else if (what == "PEER_POOLS")
    showPeers(out, true);
  else
    return false;
  return true;
}

// ---- control commands
// -----------------------------------------------------------------------------

// Pools of `db` (all pools when empty). False when the database is unknown.
template <class F>
bool forPools(net::Worker& w, const std::string& db, F&& f) {
  if (!db.empty() && !w.config().findDatabase(db)) return false;
  w.pools().forEach([&](pool::Pool& p) {
    if (db.empty() || p.database() == db) f(p);
  });
  return true;
}

bool quiesced(net::Worker& w, const std::string& db) {
  bool busy = false;
  forPools(w, db, [&](pool::Pool& p) { busy |= p.activeCount() > 0; });
  return !busy;
}

bool closesDone(net::Worker& w, const std::string& db) {
  bool pending = false;
  forPools(w, db, [&](pool::Pool& p) {
    p.forEachServer([&](pool::ServerSession& s) { pending |= p.needsClose(s); });
  });
  return !pending;
}

// Applies `f` on this worker now and on every other worker soon (in order with its other mail).
void everywhere(net::Worker& w, const std::function<void(net::Worker&)>& f) {
  f(w);
  w.engine().broadcast(w.index(), f);
}

ClientSession* findClient(net::Worker& w, uint64_t id) {
  ClientSession* found = nullptr;
  w.clients().forEach([&](ClientSession& x) {
    if (x.id() == id && x.state() != client::ClientState::Closing) found = &x;
  });
  return found;
}

// The console client `id` gets its answer (written by `write`) and goes on with its next command.
void answerLater(net::Worker& w, uint64_t id, const std::function<void(IoBuffer&)>& write) {
  ClientSession* c = findClient(w, id);
  if (!c || c->adminPending() != kGather) return;  // it left meanwhile
  write(c->socket().out);
  protocol::writeReadyForQuery(c->socket().out, 'I');
  c->setAdminPending(kNone);
  c->flushOwnOutput();
  c->processPending();
}

// SHOW answered by every worker, merged here. The client reads nothing more until it is done.
void gatherShow(net::Worker& w, ClientSession& c, const std::string& what) {
  auto parts = std::make_shared<std::vector<std::string>>(size_t(w.engine().size()));
  c.setAdminPending(kGather);
  w.engine().gather(
      w.index(),
      [parts, what](net::Worker& x) {
        IoBuffer part;
        show(x, part, what);
        (*parts)[size_t(x.index())] = std::string(part.view());
      },
      [parts, what, id = c.id()](net::Worker& origin) {
        answerLater(origin, id,
                    [&](IoBuffer& out) { mergeResults(*parts, mergeRuleFor(what), out); });
      });
}

}  // namespace

bool isConsoleDatabase(std::string_view database) {
  return database == "pgbouncer" || database == "usher";
}

void writeWelcome(IoBuffer& out) {
  // What PgBouncer's console announces; psql needs server_version and client_encoding.
  protocol::writeParameterStatus(out, "server_version", "1.25.0/usher " USHER_VERSION);
  protocol::writeParameterStatus(out, "server_encoding", "UTF8");
  protocol::writeParameterStatus(out, "client_encoding", "UTF8");
  protocol::writeParameterStatus(out, "DateStyle", "ISO");
  protocol::writeParameterStatus(out, "TimeZone", "GMT");
  protocol::writeParameterStatus(out, "standard_conforming_strings", "on");
  protocol::writeParameterStatus(out, "is_superuser", "on");
}

void handleQuery(net::Worker& w, ClientSession& c, std::string_view sql) {
  IoBuffer& out = c.socket().out;
  // Trailing semicolons and blanks are not part of the command.
  while (!sql.empty() &&
         (sql.back() == ';' || std::isspace(static_cast<unsigned char>(sql.back()))))
    sql.remove_suffix(1);
  auto argv = words(sql);
  auto finish = [&] { protocol::writeReadyForQuery(out, 'I'); };
  if (argv.empty()) {
    protocol::MessageWriter(out).begin(protocol::be::kEmptyQueryResponse).end();
    finish();
    return;
  }
  std::string verb = upper(argv[0]);
  const auto& cfg = w.config();
  bool isAdmin = cfg.isAdminUser(c.user()) || c.user() == "pgbouncer";
  log::admin().info("C-{}: {} console command: {}", c.id(), c.user(), sql);
  ++w.consoleStats.xactCount;
  ++w.consoleStats.queryCount;
  auto invalid = [&] {
    error(out, "invalid command '" + std::string(sql) + "', use SHOW HELP;");
    finish();
  };
  // PgBouncer's limits: a command word of 15 characters, an argument of 63.
  if (verb.size() > 15 || (argv.size() >= 2 && argv[1].size() > 63 && verb != "SET")) {
    error(out, "bad arguments");
    finish();
    return;
  }

  if (verb == "SHOW" || verb == "SELECT") {
    std::string what = argv.size() == 2 ? upper(argv[1]) : "";
    if (argv.size() == 2 && w.engine().size() > 1 && spansWorkers(what))
      return gatherShow(w, c, what);
    if (argv.size() != 2 || !show(w, out, what)) return invalid();
    finish();
    return;
  }
  if (verb == "SET" && argv.size() >= 2 && fakeParam(upper(argv[1]))) {
    protocol::writeErrorResponse(out, "NOTICE", "00000", "SET ignored", {},
                                 protocol::be::kNoticeResponse);
    done(out, "SET");
    finish();
    return;
  }
  if (!isAdmin) {
    error(out, "admin access needed");
    finish();
    return;
  }
  std::string arg = argv.size() >= 2 ? argv[1] : "";
  if (arg.size() >= 2 && arg.front() == '"' && arg.back() == '"')
    arg = arg.substr(1, arg.size() - 2);
  auto fail = [&](const std::string& message) {
    error(out, message);
    finish();
  };
  // Database argument checks shared by the per-database commands.
  auto checkDb = [&](const char* what) -> bool {
    if (arg.empty()) return true;
    if (isConsoleDatabase(arg)) {
      fail(std::string("cannot ") + what + " admin db: " + arg);
      return false;
    }
    if (!cfg.findDatabase(arg) || arg == "*") {
      fail("no such database: " + arg);
      return false;
    }
    return true;
  };

  if (verb == "RELOAD") {
    if (argv.size() != 1) return invalid();
    if (!w.reload()) {
      protocol::writeErrorResponse(out, "ERROR", "F0000",
                                   "RELOAD failed, see logs for additional details");
    } else {
      done(out, "RELOAD");
    }
    finish();
  } else if (verb == "PAUSE") {
    if (argv.size() > 2) return invalid();
    if (w.paused() || w.suspended()) return fail("already suspended/paused");
    if (!checkDb("pause")) return;
    everywhere(w, [arg](net::Worker& x) {
      forPools(x, arg, [](pool::Pool& p) { p.pause(); });
      if (arg.empty())
        x.setPaused(true);
      else
        x.pauseDatabase(arg, true);
    });
    c.setAdminPending(kPause);
    w.parkConsoleCommand(c, arg);
    completePending(w);
  } else if (verb == "SUSPEND") {
    if (argv.size() != 1) return invalid();
    if (w.suspended() || w.paused()) return fail("already suspended/paused");
    bool anyPaused = false;
    for (const auto& db : cfg.databases) anyPaused |= w.databasePaused(db.name);
    if (anyPaused) return fail("cannot suspend with paused databases");
    everywhere(w, [](net::Worker& x) {
      forPools(x, "", [](pool::Pool& p) { p.pause(); });
      x.setSuspended(true);
    });
    c.setAdminPending(kSuspend);
    w.parkConsoleCommand(c, "");
    completePending(w);
  } else if (verb == "RESUME") {
    if (argv.size() > 2) return invalid();
    if (w.shutdownMode() != net::Shutdown::None) return fail("pooler is shutting down");
    if (!checkDb("resume")) return;
    if (arg.empty()) {
      if (!w.paused() && !w.suspended()) return fail("pooler is not paused/suspended");
    } else {
      if (!w.databasePaused(arg)) return fail("database " + arg + " is not paused");
    }
    everywhere(w, [arg](net::Worker& x) {
      if (arg.empty()) {
        x.setPaused(false);
        x.setSuspended(false);
      } else {
        x.pauseDatabase(arg, false);
      }
      forPools(x, arg, [&](pool::Pool& p) {
        if (!x.paused() && !x.suspended() && !x.databasePaused(p.database())) p.resume();
      });
    });
    done(out, "RESUME");
    finish();
  } else if (verb == "DISABLE" || verb == "ENABLE") {
    if (argv.size() > 2) return invalid();
    if (arg.empty()) return fail("a database is required");
    std::string what = verb == "DISABLE" ? "disable" : "enable";
    if (!checkDb(what.c_str())) return;
    bool disable = verb == "DISABLE";
    everywhere(w, [arg, disable](net::Worker& x) { x.disableDatabase(arg, disable); });
    done(out, verb);
    finish();
  } else if (verb == "RECONNECT") {
    if (argv.size() > 2) return invalid();
    if (!checkDb("reconnect")) return;
    everywhere(w,
               [arg](net::Worker& x) { forPools(x, arg, [](pool::Pool& p) { p.reconnect(); }); });
    done(out, "RECONNECT");
    finish();
  } else if (verb == "KILL") {
    if (argv.size() > 2) return invalid();
    if (w.paused() || w.suspended()) return fail("already suspended/paused");
    if (!checkDb("kill")) return;
    // As PgBouncer: the killed database stays paused until RESUME.
    everywhere(w, [arg](net::Worker& x) {
      if (arg.empty())
        x.setPaused(true);
      else
        x.pauseDatabase(arg, true);
      forPools(x, arg, [](pool::Pool& p) {
        p.pause();
        p.kill("database removed");
      });
    });
    done(out, "KILL");
    finish();
  } else if (verb == "KILL_CLIENT") {
    if (argv.size() != 2) return invalid();
    uint64_t id = 0;
    auto [ptr, ec] = std::from_chars(arg.data(), arg.data() + arg.size(), id);
    if (ec != std::errc() || ptr != arg.data() + arg.size())
      return fail("invalid client pointer supplied");
    // The client may be on any worker: each looks among its own.
    auto killed = std::make_shared<std::atomic<int>>(0);
    c.setAdminPending(kGather);
    w.engine().gather(
        w.index(),
        [id, killed](net::Worker& x) {
          if (ClientSession* target = findClient(x, id)) {
            target->fail("08P01", "client killed by admin command (KILL_CLIENT)");
            ++*killed;
          }
        },
        [killed, consoleId = c.id()](net::Worker& origin) {
          answerLater(origin, consoleId, [&](IoBuffer& o) {
            if (*killed == 0)
              error(o, "client not found");
            else
              done(o, "KILL_CLIENT");
          });
        });
  } else if (verb == "WAIT_CLOSE") {
    if (argv.size() > 2) return invalid();
    if (!checkDb("wait in")) return;
    c.setAdminPending(kWaitClose);
    w.parkConsoleCommand(c, arg);
    completePending(w);
  } else if (verb == "SET") {
    // SET key = value | SET key TO value; the value may be 'quoted' ('' escapes a quote).
    std::string rest(sql.substr(3));
    std::string key, value;
    auto eq = rest.find('=');
    if (eq != std::string::npos) {
      key = rest.substr(0, eq);
      value = rest.substr(eq + 1);
    } else if (argv.size() >= 4 && upper(argv[2]) == "TO") {
      auto to = rest.find(argv[2]);
      key = rest.substr(0, to);
      value = rest.substr(to + 2);
    } else {
      return invalid();
    }
    auto trim = [](std::string& t) {
      while (!t.empty() && std::isspace(static_cast<unsigned char>(t.back()))) t.pop_back();
      size_t i = 0;
      while (i < t.size() && std::isspace(static_cast<unsigned char>(t[i]))) ++i;
      t.erase(0, i);
    };
    trim(key);
    trim(value);
    if (value.size() >= 2 && value.front() == '\'' && value.back() == '\'') {
      std::string unq;
      for (size_t i = 1; i + 1 < value.size(); ++i) {
        unq.push_back(value[i]);
        if (value[i] == '\'' && value[i + 1] == '\'') ++i;
      }
      value = unq;
    }
    if (key.empty() || value.size() > 255) return fail("bad arguments");
    for (auto& ch : key) ch = char(std::tolower(static_cast<unsigned char>(ch)));
    auto next = config::withSetting(cfg, key, value);
    if (!next) {
      log::admin().warn("SET {} failed: {}", key, next.error().message);
      return fail("SET failed");
    }
    w.engine().applyConfig(w.index(), *next);
    done(out, "SET " + key + "=" + value);
    finish();
  } else if (verb == "SHUTDOWN") {
    if (argv.size() > 2) return invalid();
    std::string mode = upper(arg);
    if (mode == "WAIT_FOR_SERVERS" || mode == "WAIT_FOR_CLIENTS") {
      done(out, "SHUTDOWN");
      finish();
      c.flushOwnOutput();
      auto how = mode == "WAIT_FOR_SERVERS" ? net::Shutdown::WaitForServers
                                            : net::Shutdown::WaitForClients;
      everywhere(w, [how](net::Worker& x) { x.beginShutdown(how); });
    } else if (mode.empty()) {
      // No answer: the connection stays open until the process exits, as in PgBouncer.
      c.flushOwnOutput();
      everywhere(w, [](net::Worker& x) { x.beginShutdown(net::Shutdown::Now); });
    } else {
      invalid();
    }
  } else {
    invalid();
  }
}

namespace {

const char* pendingTag(uint8_t kind) {
  switch (kind) {
    case kPause:
      return "PAUSE";
    case kSuspend:
      return "SUSPEND";
    case kWaitClose:
      return "WAIT_CLOSE";
    default:
      return nullptr;
  }
}

// Whether a parked command's condition holds on this worker.
bool conditionHolds(net::Worker& w, uint8_t kind, const std::string& db) {
  if (kind == kWaitClose) return closesDone(w, db);
  return quiesced(w, kind == kSuspend ? "" : db);
}

void answerParked(ClientSession& c, const char* tag) {
  done(c.socket().out, tag);
  protocol::writeReadyForQuery(c.socket().out, 'I');
  c.setAdminPending(kNone);
  c.flushOwnOutput();
  c.processPending();  // the console client may have sent its next command meanwhile
}

// Several workers: each checks the parked commands' conditions on its own pools; the commands
// whose condition holds everywhere are answered. One check at a time per worker.
void completePendingEverywhere(net::Worker& w) {
  if (w.consoleCheckInFlight) return;
  struct Check {
    uint64_t client;
    uint8_t kind;
    std::string db;
  };
  auto checks = std::make_shared<std::vector<Check>>();
  w.forEachParkedConsoleCommand([&](ClientSession& c, const std::string& db) {
    checks->push_back({c.id(), c.adminPending(), db});
    return false;
  });
  if (checks->empty()) return;
  auto failing = std::make_shared<std::vector<std::atomic<int>>>(checks->size());
  w.consoleCheckInFlight = true;
  w.engine().gather(
      w.index(),
      [checks, failing](net::Worker& x) {
        for (size_t i = 0; i < checks->size(); ++i)
          if (!conditionHolds(x, (*checks)[i].kind, (*checks)[i].db)) ++(*failing)[i];
      },
      [checks, failing](net::Worker& origin) {
        origin.consoleCheckInFlight = false;
        origin.forEachParkedConsoleCommand([&](ClientSession& c, const std::string& db) {
          for (size_t i = 0; i < checks->size(); ++i) {
            const Check& k = (*checks)[i];
            if (k.client != c.id() || k.kind != c.adminPending() || k.db != db) continue;
            if ((*failing)[i] != 0) return false;
            const char* tag = pendingTag(c.adminPending());
            if (tag) answerParked(c, tag);
            return true;
          }
          return false;
        });
      });
}

}  // namespace

void completePending(net::Worker& w) {
  if (w.engine().size() > 1) return completePendingEverywhere(w);
  w.forEachParkedConsoleCommand([&](ClientSession& c, const std::string& db) {
    const char* tag = pendingTag(c.adminPending());
    if (!tag) return true;
    if (!conditionHolds(w, c.adminPending(), db)) return false;
    answerParked(c, tag);
    return true;
  });
}

}  // namespace usher::admin
