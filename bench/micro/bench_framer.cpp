// Framing benchmarks: the scan ServerSession::processActive does over a server's read buffer —
// peekHeader per message, a look inside only ReadyForQuery/ParameterStatus, forward the rest.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <string>

#include "usher/base/io_buffer.h"
#include "usher/protocol/framer.h"
#include "usher/protocol/tags.h"
#include "usher/protocol/writer.h"

namespace {

using namespace usher;
using namespace usher::protocol;

constexpr uint32_t kMaxMessage = 1u << 30;

// RowDescription for `columns` int4/text columns, as PostgreSQL sends it.
void writeRowDescription(IoBuffer& out, int columns) {
  MessageWriter w(out);
  w.begin(be::kRowDescription).i16(int16_t(columns));
  for (int c = 0; c < columns; ++c) {
    std::string name = "col" + std::to_string(c);
    w.cstr(name)
        .i32(16384)
        .i16(int16_t(c + 1))
        .i32(c == 0 ? 23 : 25)
        .i16(c == 0 ? 4 : -1)
        .i32(-1)
        .i16(0);
  }
  w.end();
}

// DataRow: an int in text form, then text columns of `width` bytes.
void writeDataRow(IoBuffer& out, int row, int columns, int width) {
  MessageWriter w(out);
  w.begin(be::kDataRow).i16(int16_t(columns));
  std::string id = std::to_string(row);
  w.i32(int32_t(id.size())).raw(id);
  std::string text(size_t(width), 'x');
  for (int c = 1; c < columns; ++c) w.i32(int32_t(text.size())).raw(text);
  w.end();
}

void writeCommandComplete(IoBuffer& out, std::string_view tag) {
  MessageWriter(out).begin(be::kCommandComplete).cstr(tag).end();
}

// One result: RowDescription, `rows` DataRows, CommandComplete, ReadyForQuery.
std::string resultStream(int rows, int columns, int width) {
  IoBuffer buf;
  buf.ensureWritable(1024);
  writeRowDescription(buf, columns);
  for (int r = 0; r < rows; ++r) writeDataRow(buf, r, columns, width);
  writeCommandComplete(buf, "SELECT " + std::to_string(rows));
  writeReadyForQuery(buf, 'I');
  return std::string(buf.view());
}

// The scan itself; returns the number of messages so the work cannot be optimised away.
size_t scan(const uint8_t* data, size_t size, char& txStatus) {
  size_t at = 0;
  size_t messages = 0;
  while (size - at >= 5) {
    FrameHeader h;
    if (peekHeader(data + at, size - at, kMaxMessage, h) != Decode::Ready) break;
    if (h.tag == be::kReadyForQuery || h.tag == be::kParameterStatus) {
      if (size - at < h.frameSize()) break;
      if (h.tag == be::kReadyForQuery) txStatus = h.payloadSize() ? char(data[at + 5]) : 'I';
    }
    at += h.frameSize();
    ++messages;
  }
  return messages;
}

void runScan(benchmark::State& state, const std::string& stream) {
  const auto* data = reinterpret_cast<const uint8_t*>(stream.data());
  size_t messages = 0;
  char tx = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(data);
    messages += scan(data, stream.size(), tx);
    benchmark::DoNotOptimize(tx);
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(stream.size()));
  state.counters["msgs/s"] = benchmark::Counter(double(messages), benchmark::Counter::kIsRate);
  state.counters["bytes/result"] = double(stream.size());
}

// The answer to one pgbench -S transaction: T, one D, C "SELECT 1", Z.
void BM_FramePgbenchSelect(benchmark::State& state) {
  runScan(state, resultStream(1, 1, 0));
}
BENCHMARK(BM_FramePgbenchSelect);

// A result burst of N rows of 4 columns (an int and three 20-byte texts).
void BM_FrameResultBurst(benchmark::State& state) {
  runScan(state, resultStream(int(state.range(0)), 4, 20));
}
BENCHMARK(BM_FrameResultBurst)->Arg(10)->Arg(100)->Arg(1000);

// The same burst arriving in 16 KiB reads (usher's default pkt_buf): the scan stops at each
// message cut by a read boundary and resumes from it on the next read.
void BM_FrameResultBurstChunked(benchmark::State& state) {
  std::string stream = resultStream(1000, 4, 20);
  const auto* data = reinterpret_cast<const uint8_t*>(stream.data());
  constexpr size_t kRead = 16384;
  size_t messages = 0;
  char tx = 0;
  for (auto _ : state) {
    size_t at = 0;
    size_t passthrough = 0;  // bytes of a message already approved but not yet received
    for (size_t end = std::min(kRead, stream.size());; end = std::min(end + kRead, stream.size())) {
      size_t skip = std::min(passthrough, end - at);
      at += skip;
      passthrough -= skip;
      while (end - at >= 5) {
        FrameHeader h;
        if (peekHeader(data + at, end - at, kMaxMessage, h) != Decode::Ready) break;
        ++messages;
        if (h.frameSize() > end - at) {
          if (h.tag == be::kReadyForQuery) {
            --messages;
            break;
          }
          passthrough = h.frameSize() - (end - at);
          at = end;
          break;
        }
        if (h.tag == be::kReadyForQuery) tx = char(data[at + 5]);
        at += h.frameSize();
      }
      if (end == stream.size()) break;
    }
    benchmark::DoNotOptimize(tx);
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(stream.size()));
  state.counters["msgs/s"] = benchmark::Counter(double(messages), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_FrameResultBurstChunked);

}  // namespace
