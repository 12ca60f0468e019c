// Message-building benchmarks: MessageWriter and the write* helpers appending into an IoBuffer,
// as usher builds its own messages (login replies, errors, internal queries, console rows).
#include <benchmark/benchmark.h>

#include <string>

#include "usher/base/io_buffer.h"
#include "usher/protocol/tags.h"
#include "usher/protocol/writer.h"

namespace {

using namespace usher;
using namespace usher::protocol;

// A buffer with storage, emptied after each iteration the way a flushed send queue is.
struct Scratch {
  IoBuffer buf;
  Scratch() { buf.ensureWritable(16384); }
  void flush() {
    benchmark::DoNotOptimize(buf.readPtr());
    buf.consume(buf.readable());
  }
};

void BM_WriteReadyForQuery(benchmark::State& state) {
  Scratch s;
  for (auto _ : state) {
    writeReadyForQuery(s.buf, 'I');
    s.flush();
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_WriteReadyForQuery);

void BM_WriteQuery(benchmark::State& state) {
  Scratch s;
  constexpr std::string_view sql = "SELECT abalance FROM pgbench_accounts WHERE aid = 48213;";
  for (auto _ : state) {
    writeQuery(s.buf, sql);
    s.flush();
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_WriteQuery);

// A console-style DataRow of 8 short text columns (SHOW POOLS builds these).
void BM_WriteDataRow8(benchmark::State& state) {
  Scratch s;
  constexpr std::string_view cols[8] = {"trading_db", "trading_app_user", "3", "0", "17", "0",
                                        "0",          "transaction"};
  for (auto _ : state) {
    MessageWriter w(s.buf);
    w.begin(be::kDataRow).i16(8);
    for (auto c : cols) w.i32(int32_t(c.size())).raw(c);
    w.end();
    s.flush();
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_WriteDataRow8);

void BM_WriteErrorResponse(benchmark::State& state) {
  Scratch s;
  for (auto _ : state) {
    writeErrorResponse(s.buf, "FATAL", "53300", "no more connections allowed (max_client_conn)");
    s.flush();
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_WriteErrorResponse);

// What a client gets after AuthenticationOk: AuthOk, 13 ParameterStatus, BackendKeyData, RFQ.
void BM_WriteLoginWelcome(benchmark::State& state) {
  Scratch s;
  static const std::pair<std::string_view, std::string_view> params[] = {
      {"application_name", "pgbench"},
      {"client_encoding", "UTF8"},
      {"DateStyle", "ISO, MDY"},
      {"default_transaction_read_only", "off"},
      {"in_hot_standby", "off"},
      {"integer_datetimes", "on"},
      {"IntervalStyle", "postgres"},
      {"is_superuser", "off"},
      {"server_encoding", "UTF8"},
      {"server_version", "15.10"},
      {"session_authorization", "trading_app_user"},
      {"standard_conforming_strings", "on"},
      {"TimeZone", "Etc/UTC"}};
  for (auto _ : state) {
    writeAuthRequest(s.buf, AuthCode::Ok);
    for (auto& [k, v] : params) writeParameterStatus(s.buf, k, v);
    writeBackendKeyData(s.buf, 12345, 67890);
    writeReadyForQuery(s.buf, 'I');
    s.flush();
  }
  state.SetItemsProcessed(state.iterations() * 16);
}
BENCHMARK(BM_WriteLoginWelcome);

}  // namespace
