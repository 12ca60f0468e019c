// ByteReader: a bounded big-endian reader over a byte view with a sticky overflow flag.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>

namespace usher {

// Reading past the end once sets `overflow` and every later read returns zero/empty, so a parser
// reads all its fields and checks `ok()` once at the end instead of after every field.
class ByteReader {
 public:
  ByteReader(const void* data, size_t size)
      : p_(static_cast<const uint8_t*>(data)), end_(p_ + size) {}
  explicit ByteReader(std::string_view s) : ByteReader(s.data(), s.size()) {}
  explicit ByteReader(std::span<const std::byte> s) : ByteReader(s.data(), s.size()) {}

  bool ok() const { return !overflow_; }
  size_t remaining() const { return overflow_ ? 0 : size_t(end_ - p_); }
  bool atEnd() const { return ok() && p_ == end_; }

  uint8_t u8() {
    if (!need(1)) return 0;
    return *p_++;
  }
  uint16_t u16() {
    if (!need(2)) return 0;
    uint16_t v = uint16_t(p_[0] << 8 | p_[1]);
    p_ += 2;
    return v;
  }
  uint32_t u32() {
    if (!need(4)) return 0;
    uint32_t v = uint32_t(p_[0]) << 24 | uint32_t(p_[1]) << 16 | uint32_t(p_[2]) << 8 | p_[3];
    p_ += 4;
    return v;
  }
  int32_t i32() { return int32_t(u32()); }
  int16_t i16() { return int16_t(u16()); }

  // A NUL-terminated string; the view excludes the terminator. Missing terminator = overflow.
  std::string_view cstr() {
    if (overflow_) return {};
    const void* nul = std::memchr(p_, 0, size_t(end_ - p_));
    if (!nul) {
      overflow_ = true;
      return {};
    }
    auto* z = static_cast<const uint8_t*>(nul);
    std::string_view v(reinterpret_cast<const char*>(p_), size_t(z - p_));
    p_ = z + 1;
    return v;
  }
  std::string_view bytes(size_t n) {
    if (!need(n)) return {};
    std::string_view v(reinterpret_cast<const char*>(p_), n);
    p_ += n;
    return v;
  }
  std::string_view rest() { return bytes(remaining()); }

 private:
  bool need(size_t n) {
    if (overflow_ || size_t(end_ - p_) < n) {
      overflow_ = true;
      return false;
    }
    return true;
  }
  const uint8_t* p_;
  const uint8_t* end_;
  bool overflow_ = false;
};

}  // namespace usher
