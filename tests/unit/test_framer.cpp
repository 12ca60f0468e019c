// Framer: message boundaries found identically whatever way the stream is split.
#include <doctest/doctest.h>

#include <random>
#include <string>
#include <utility>
#include <vector>

#include "usher/protocol/framer.h"
#include "usher/protocol/tags.h"

using namespace usher::protocol;

namespace {

using Frames = std::vector<std::pair<char, std::string>>;

std::string frame(char tag, std::string_view payload) {
  uint32_t len = uint32_t(payload.size() + 4);
  std::string out(1, tag);
  out.push_back(char(len >> 24));
  out.push_back(char(len >> 16));
  out.push_back(char(len >> 8));
  out.push_back(char(len));
  out.append(payload);
  return out;
}

// DataRow with two columns ("42" and NULL), CommandComplete, ReadyForQuery.
const Frames kExpected = {
    {'D', std::string("\x00\x02\x00\x00\x00\x02"
                      "42\xff\xff\xff\xff",
                      12)},
    {'C', std::string("SELECT 1\0", 9)},
    {'Z', "I"},
};

std::string stream() {
  std::string s;
  for (const auto& [tag, payload] : kExpected) s += frame(tag, payload);
  return s;
}

// Feeds `chunks` one after another into a buffer and extracts every complete frame.
Frames decodeChunks(const std::vector<std::string>& chunks) {
  Frames found;
  std::string buf;
  for (const auto& chunk : chunks) {
    buf += chunk;
    while (true) {
      FrameHeader h;
      Decode d = peekHeader(reinterpret_cast<const uint8_t*>(buf.data()), buf.size(), 1 << 20, h);
      REQUIRE(d != Decode::Malformed);
      if (d == Decode::NeedMore || buf.size() < h.frameSize()) break;
      found.emplace_back(h.tag, buf.substr(5, h.payloadSize()));
      buf.erase(0, h.frameSize());
    }
  }
  CHECK(buf.empty());
  return found;
}

}  // namespace

TEST_SUITE("protocol") {
  TEST_CASE("framer finds the same messages one byte at a time") {
    std::string s = stream();
    std::vector<std::string> chunks;
    for (char c : s) chunks.emplace_back(1, c);
    CHECK(decodeChunks(chunks) == kExpected);
    CHECK(decodeChunks({s}) == kExpected);
  }

  TEST_CASE("framer finds the same messages in seeded random splits") {
    std::string s = stream();
    std::mt19937 rng(20240601);
    for (int round = 0; round < 200; ++round) {
      std::vector<std::string> chunks;
      size_t pos = 0;
      while (pos < s.size()) {
        size_t n = std::uniform_int_distribution<size_t>(1, 9)(rng);
        chunks.push_back(s.substr(pos, n));
        pos += n;
      }
      CHECK(decodeChunks(chunks) == kExpected);
    }
  }

  TEST_CASE("peekHeader: need more, header fields, malformed lengths") {
    FrameHeader h;
    const uint8_t partial[] = {'Z', 0, 0, 0};
    CHECK(peekHeader(partial, sizeof partial, 100, h) == Decode::NeedMore);

    const uint8_t rfq[] = {'Z', 0, 0, 0, 5, 'I'};
    REQUIRE(peekHeader(rfq, 5, 100, h) == Decode::Ready);  // header alone is enough
    CHECK(h.tag == 'Z');
    CHECK(h.length == 5);
    CHECK(h.frameSize() == 6);
    CHECK(h.payloadSize() == 1);

    const uint8_t emptyPayload[] = {'X', 0, 0, 0, 4};
    REQUIRE(peekHeader(emptyPayload, 5, 100, h) == Decode::Ready);
    CHECK(h.payloadSize() == 0);

    const uint8_t tooShort[] = {'Z', 0, 0, 0, 3};
    CHECK(peekHeader(tooShort, 5, 100, h) == Decode::Malformed);
    const uint8_t atMax[] = {'D', 0, 0, 0, 100};
    CHECK(peekHeader(atMax, 5, 100, h) == Decode::Ready);
    const uint8_t overMax[] = {'D', 0, 0, 0, 101};
    CHECK(peekHeader(overMax, 5, 100, h) == Decode::Malformed);
    const uint8_t huge[] = {'D', 0xff, 0xff, 0xff, 0xff};
    CHECK(peekHeader(huge, 5, 1 << 30, h) == Decode::Malformed);
  }

  TEST_CASE("peekStartup: ready only with the whole packet") {
    uint32_t len = 0;
    const uint8_t ssl[] = {0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f};
    for (size_t n = 0; n < sizeof ssl; ++n) {
      CHECK(peekStartup(ssl, n, len) == Decode::NeedMore);
    }
    REQUIRE(peekStartup(ssl, sizeof ssl, len) == Decode::Ready);
    CHECK(len == 8);

    const uint8_t seven[] = {0, 0, 0, 7, 0, 0, 0};
    CHECK(peekStartup(seven, sizeof seven, len) == Decode::Malformed);
    const uint8_t three[] = {0, 0, 0, 3};
    CHECK(peekStartup(three, sizeof three, len) == Decode::Malformed);
    uint8_t big[4] = {0, 0, uint8_t((kMaxStartupPacket + 1) >> 8),
                      uint8_t((kMaxStartupPacket + 1) & 0xff)};
    CHECK(peekStartup(big, sizeof big, len) == Decode::Malformed);
    uint8_t max[4] = {0, 0, uint8_t(kMaxStartupPacket >> 8), uint8_t(kMaxStartupPacket & 0xff)};
    CHECK(peekStartup(max, sizeof max, len) == Decode::NeedMore);
  }
}
