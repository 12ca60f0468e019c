// Framer: message boundaries in a byte stream, read in place from the header bytes.
#include "usher/protocol/framer.h"

#include "usher/base/byte_reader.h"
#include "usher/protocol/tags.h"

namespace usher::protocol {

Decode peekHeader(const uint8_t* data, size_t size, uint32_t maxLength, FrameHeader& out) {
  if (size < 5) return Decode::NeedMore;
  ByteReader r(data, 5);
  char tag = char(r.u8());
  uint32_t length = r.u32();
  // The length counts itself, so anything below 4 can never be a valid frame; above maxLength
  // the peer is either broken or trying to make us buffer without bound.
  if (length < 4 || length > maxLength) return Decode::Malformed;
  out.tag = tag;
  out.length = length;
  return Decode::Ready;
}

Decode peekStartup(const uint8_t* data, size_t size, uint32_t& packetLength) {
  if (size < 4) return Decode::NeedMore;
  ByteReader r(data, 4);
  uint32_t length = r.u32();
  // Every startup-phase packet carries at least a 4-byte code after its length.
  if (length < 8 || length > kMaxStartupPacket) return Decode::Malformed;
  if (size < length) return Decode::NeedMore;
  packetLength = length;
  return Decode::Ready;
}

}  // namespace usher::protocol
