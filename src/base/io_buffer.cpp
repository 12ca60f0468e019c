// IoBuffer growth (the only part that is not inline).
#include "usher/base/io_buffer.h"

#include <algorithm>

namespace usher {

void IoBuffer::ensureWritable(size_t n) {
  if (writable() >= n) return;
  compact();
  if (writable() >= n) return;
  // Grow to fit: used for oversized pooler-built messages and startup packets, never per
  // forwarded message (forwarding streams large messages through the fixed block).
  size_t newCap = std::max(capacity_ * 2, writePos_ + n);
  auto bigger = std::make_unique_for_overwrite<uint8_t[]>(newCap);
  if (writePos_) std::memcpy(bigger.get(), data_.get(), writePos_);
  data_ = std::move(bigger);
  capacity_ = newCap;
}

}  // namespace usher
