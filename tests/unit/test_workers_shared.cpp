// What workers share: the limit counters (exact under concurrent reservations), the waiter and
// idle slots that route servers, and the merge of console answers gathered from every worker.
#include <doctest/doctest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "usher/admin/merge.h"
#include "usher/admin/result_set.h"
#include "usher/pool/prepared.h"
#include "usher/pool/shared_pool.h"

using namespace usher;
using namespace usher::pool;

namespace {

// One worker's answer to a SHOW, as the console writes it.
std::string answer(std::initializer_list<admin::Column> columns,
                   std::vector<std::vector<std::optional<std::string>>> rows) {
  IoBuffer out;
  admin::ResultSet rs(out, columns);
  for (const auto& r : rows) rs.row(r);
  rs.finish();
  return std::string(out.view());
}

// The merged answer's rows, decoded back.
std::vector<std::vector<std::string>> rowsOf(const IoBuffer& out) {
  std::vector<std::vector<std::string>> rows;
  std::string_view v = out.view();
  while (v.size() >= 5) {
    char tag = v[0];
    uint32_t len = (uint32_t(uint8_t(v[1])) << 24) | (uint32_t(uint8_t(v[2])) << 16) |
                   (uint32_t(uint8_t(v[3])) << 8) | uint32_t(uint8_t(v[4]));
    std::string_view payload = v.substr(5, len - 4);
    if (tag == 'D') {
      std::vector<std::string> row;
      size_t n = (size_t(uint8_t(payload[0])) << 8) | uint8_t(payload[1]);
      size_t at = 2;
      for (size_t i = 0; i < n; ++i) {
        int32_t size = int32_t(
            (uint32_t(uint8_t(payload[at])) << 24) | (uint32_t(uint8_t(payload[at + 1])) << 16) |
            (uint32_t(uint8_t(payload[at + 2])) << 8) | uint32_t(uint8_t(payload[at + 3])));
        at += 4;
        row.push_back(size < 0 ? "NULL" : std::string(payload.substr(at, size_t(size))));
        if (size > 0) at += size_t(size);
      }
      rows.push_back(row);
    }
    v.remove_prefix(1 + len);
  }
  return rows;
}

}  // namespace

TEST_SUITE("pool") {
  TEST_CASE("shared counter: concurrent reservations never pass the limit") {
    SharedCounter counter;
    std::atomic<int> granted{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
      threads.emplace_back([&] {
        for (int i = 0; i < 10000; ++i)
          if (counter.tryAdd(20)) {
            ++granted;
            CHECK(counter.value() <= 20);
            if (i % 3 == 0) {
              counter.sub();
              --granted;
            }
          }
      });
    for (auto& t : threads) t.join();
    CHECK(counter.value() == granted.load());
    CHECK(counter.value() <= 20);
    CHECK(counter.tryAdd(0));  // 0: unlimited
  }

  TEST_CASE("shared pool: the longest waiter wins, idle servers are found elsewhere") {
    SharedPool p("db", "user", 3);
    CHECK(p.oldestWaiter() == -1);
    p.publishOldestWaiter(2, 500);
    p.publishOldestWaiter(1, 300);
    uint64_t since = 0;
    CHECK(p.oldestWaiter(&since) == 1);
    CHECK(since == 300);
    CHECK(p.othersWaitLonger(0, 400));
    CHECK_FALSE(p.othersWaitLonger(1, 400));  // its own waiter does not count
    p.publishOldestWaiter(1, kNobodyWaits);
    CHECK(p.oldestWaiter() == 2);

    CHECK(p.workerWithIdle(0) == -1);
    p.publishIdle(0, 5);
    CHECK(p.workerWithIdle(0) == -1);  // its own idle servers do not count
    CHECK(p.workerWithIdle(1) == 0);
    p.publishIdle(2, 7);
    CHECK(p.workerWithIdle(1) == 2);  // the one with most
  }

  TEST_CASE("statement registry: one id per body on every worker; adopting a moved server's") {
    SharedStatements shared;
    StatementRegistry a(&shared), b(&shared);
    StmtRef sa = a.intern("select 1");
    StmtRef sb = b.intern("select 1");
    CHECK(sa->id() == sb->id());  // the same server-side name on every worker
    CHECK(b.adopt(sa->id(), "select 1").get() == sb.get());
    // A body b does not know yet is adopted under its name and found from then on.
    StmtRef two = a.intern("select 2");
    StmtRef other = b.adopt(two->id(), "select 2");
    CHECK(b.intern("select 2").get() == other.get());
    CHECK(b.findProvenValid("select 2"));
    // A stale plan retires the name everywhere: a server still holding it brings a statement
    // kept for that server only, and a new Parse gets a fresh name.
    uint64_t staleId = sa->id();
    a.retire(*sa.get());
    StmtRef fresh = a.intern("select 1");
    CHECK(fresh->id() != staleId);
    StmtRef carried = a.adopt(staleId, "select 1");
    CHECK(carried.get() != fresh.get());
    CHECK(a.intern("select 1").get() == fresh.get());
    StmtRef gone = a.intern("select 9");
    uint64_t goneId = gone->id();
    a.retire(*gone.get());
    gone.reset();
    StatementRegistry c(&shared);
    StmtRef shadow = c.adopt(goneId, "select 9");
    CHECK(c.intern("select 9").get() != shadow.get());
    // What a server accepted on one worker, every worker knows.
    CHECK_FALSE(b.findProvenValid("select 3"));
    a.intern("select 3")->markProvenValid();
    StmtRef known = b.findProvenValid("select 3");
    REQUIRE(known);
    CHECK(known->provenValid());
  }
}

TEST_SUITE("protocol") {
  using admin::oid::kInt4;
  using admin::oid::kNumeric;
  using admin::oid::kText;

  TEST_CASE("console merge: SHOW POOLS sums per pool and keeps the longest wait") {
    auto w0 = answer({{"database", kText},
                      {"user", kText},
                      {"cl_active", kInt4},
                      {"maxwait", kInt4},
                      {"maxwait_us", kInt4},
                      {"pool_mode", kText}},
                     {{"pgbouncer", "pgbouncer", "1", "0", "0", "statement"},
                      {"db", "u", "3", "2", "100", "transaction"}});
    auto w1 = answer({{"database", kText},
                      {"user", kText},
                      {"cl_active", kInt4},
                      {"maxwait", kInt4},
                      {"maxwait_us", kInt4},
                      {"pool_mode", kText}},
                     {{"pgbouncer", "pgbouncer", "0", "0", "0", "statement"},
                      {"db", "u", "4", "1", "900000", "transaction"},
                      {"db2", "u", "1", "0", "0", "session"}});
    IoBuffer out;
    admin::mergeResults({w0, w1}, admin::mergeRuleFor("POOLS"), out);
    auto rows = rowsOf(out);
    REQUIRE(rows.size() == 3);
    CHECK(rows[0] ==
          std::vector<std::string>{"pgbouncer", "pgbouncer", "1", "0", "0", "statement"});
    CHECK(rows[1] == std::vector<std::string>{"db", "u", "7", "2", "100", "transaction"});
    CHECK(rows[2] == std::vector<std::string>{"db2", "u", "1", "0", "0", "session"});
  }

  TEST_CASE("console merge: SHOW STATS weighs mean times by their counts") {
    auto cols = {admin::Column{"database", kText}, admin::Column{"total_xact_count", kNumeric},
                 admin::Column{"avg_xact_count", kNumeric},
                 admin::Column{"avg_xact_time", kNumeric}};
    auto w0 = answer(cols, {{"db", "10", "3", "100"}});
    auto w1 = answer(cols, {{"db", "20", "1", "500"}});
    IoBuffer out;
    admin::mergeResults({w0, w1, ""}, admin::mergeRuleFor("STATS"), out);
    auto rows = rowsOf(out);
    REQUIRE(rows.size() == 1);
    CHECK(rows[0] == std::vector<std::string>{"db", "30", "4", "200"});  // (3·100 + 1·500) / 4
  }

  TEST_CASE("console merge: sessions are listed from every worker; settings are not summed") {
    auto c0 = answer({{"type", kText}, {"id", kInt4}}, {{"C", "1"}, {"C", "3"}});
    auto c1 = answer({{"type", kText}, {"id", kInt4}}, {{"C", "2"}});
    IoBuffer out;
    admin::mergeResults({c0, c1}, admin::mergeRuleFor("CLIENTS"), out);
    CHECK(rowsOf(out).size() == 3);

    auto d = {admin::Column{"name", kText}, admin::Column{"pool_size", kInt4},
              admin::Column{"current_connections", kInt4}, admin::Column{"paused", kInt4}};
    IoBuffer merged;
    admin::mergeResults({answer(d, {{"db", "20", "2", "0"}}), answer(d, {{"db", "20", "3", "1"}})},
                        admin::mergeRuleFor("DATABASES"), merged);
    CHECK(rowsOf(merged)[0] == std::vector<std::string>{"db", "20", "5", "1"});

    auto l = {admin::Column{"list", kText}, admin::Column{"items", kInt4}};
    IoBuffer lists;
    admin::mergeResults({answer(l, {{"databases", "4"}, {"used_clients", "5"}}),
                         answer(l, {{"databases", "4"}, {"used_clients", "6"}})},
                        admin::mergeRuleFor("LISTS"), lists);
    auto rows = rowsOf(lists);
    CHECK(rows[0] == std::vector<std::string>{"databases", "4"});
    CHECK(rows[1] == std::vector<std::string>{"used_clients", "11"});
  }
}
