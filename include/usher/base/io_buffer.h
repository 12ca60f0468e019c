// IoBuffer: a contiguous byte buffer with read and write cursors, and BufferPool, the per-worker
// free list its storage comes from (so an idle connection owns no buffer at all).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

namespace usher {

//   0 ........ readPos ............ writePos ............ capacity
//   [consumed] [readable: received/queued] [writable: free space]
class IoBuffer {
 public:
  IoBuffer() = default;
  IoBuffer(const IoBuffer&) = delete;
  IoBuffer& operator=(const IoBuffer&) = delete;
  IoBuffer(IoBuffer&&) noexcept = default;
  IoBuffer& operator=(IoBuffer&&) noexcept = default;

  bool hasStorage() const { return data_ != nullptr; }
  size_t capacity() const { return capacity_; }
  size_t readable() const { return writePos_ - readPos_; }
  size_t writable() const { return capacity_ - writePos_; }
  bool empty() const { return readPos_ == writePos_; }

  uint8_t* readPtr() { return data_.get() + readPos_; }
  const uint8_t* readPtr() const { return data_.get() + readPos_; }
  uint8_t* writePtr() { return data_.get() + writePos_; }
  std::string_view view() const { return {reinterpret_cast<const char*>(readPtr()), readable()}; }

  void commit(size_t n) { writePos_ += n; }
  void consume(size_t n) {
    readPos_ += n;
    if (readPos_ == writePos_) readPos_ = writePos_ = 0;
  }
  // Moves unread bytes to the front so the free space is contiguous.
  void compact() {
    if (readPos_ == 0) return;
    std::memmove(data_.get(), data_.get() + readPos_, readable());
    writePos_ -= readPos_;
    readPos_ = 0;
  }
  // Guarantees `n` writable bytes, compacting first and growing only if still needed.
  void ensureWritable(size_t n);
  void append(const void* p, size_t n) {
    ensureWritable(n);
    std::memcpy(writePtr(), p, n);
    commit(n);
  }
  void append(std::string_view s) { append(s.data(), s.size()); }

  // Storage hand-over with a BufferPool.
  void adopt(std::unique_ptr<uint8_t[]> block, size_t capacity) {
    data_ = std::move(block);
    capacity_ = capacity;
    readPos_ = writePos_ = 0;
  }
  std::unique_ptr<uint8_t[]> surrender() {
    capacity_ = readPos_ = writePos_ = 0;
    return std::move(data_);
  }

 private:
  std::unique_ptr<uint8_t[]> data_;
  size_t capacity_ = 0;
  size_t readPos_ = 0;
  size_t writePos_ = 0;
};

// Fixed-size blocks recycled by one worker. Connections take a block when they have bytes to hold
// and give it back when they go idle; a buffer that had to grow beyond the block size is freed
// instead of recycled.
class BufferPool {
 public:
  explicit BufferPool(size_t blockSize, size_t keepAtMost = 1024)
      : blockSize_(blockSize), keepAtMost_(keepAtMost) {}
  size_t blockSize() const { return blockSize_; }

  void attach(IoBuffer& buf) {
    if (buf.hasStorage()) return;
    if (!free_.empty()) {
      buf.adopt(std::move(free_.back()), blockSize_);
      free_.pop_back();
    } else {
      buf.adopt(std::make_unique_for_overwrite<uint8_t[]>(blockSize_), blockSize_);
    }
  }
  // Returns the storage of an empty buffer to the pool.
  void detach(IoBuffer& buf) {
    if (!buf.hasStorage() || !buf.empty()) return;
    size_t cap = buf.capacity();
    auto block = buf.surrender();
    if (cap == blockSize_ && free_.size() < keepAtMost_) free_.push_back(std::move(block));
  }
  size_t freeBlocks() const { return free_.size(); }

 private:
  size_t blockSize_;
  size_t keepAtMost_;
  std::vector<std::unique_ptr<uint8_t[]>> free_;
};

}  // namespace usher
