// Framer: finds message boundaries in a byte stream (tag + 4-byte length), without copying.
#pragma once

#include <cstddef>
#include <cstdint>

namespace usher::protocol {

enum class Decode { NeedMore, Ready, Malformed };

struct FrameHeader {
  char tag = 0;
  uint32_t length = 0;  // as on the wire: includes the 4 length bytes, excludes the tag
  size_t frameSize() const { return size_t(length) + 1; }
  size_t payloadSize() const { return size_t(length) - 4; }
};

// Reads the 5-byte header at `data`. Ready means the header is valid (the payload may still be
// incomplete: compare frameSize() with the bytes available). Malformed: length < 4 or > maxLength.
Decode peekHeader(const uint8_t* data, size_t size, uint32_t maxLength, FrameHeader& out);

// The startup-phase packet has no tag: a 4-byte length (including itself) then the payload.
// Ready only when the whole packet is present; Malformed for lengths < 8 or > kMaxStartupPacket.
Decode peekStartup(const uint8_t* data, size_t size, uint32_t& packetLength);

}  // namespace usher::protocol
