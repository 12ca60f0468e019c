// secureRandom: libsodium's CSPRNG read a block at a time.
#include "usher/base/random.h"

#include <pthread.h>
#include <sodium.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

namespace usher {
namespace {

constexpr size_t kBlock = 1024;  // about 40 logins per getrandom()

struct Block {
  uint8_t bytes[kBlock];
  size_t used = kBlock;  // empty until first use
};
thread_local Block block;

void forgetAfterFork() {
  // The child must not hand out the bytes its parent will also use.
  sodium_memzero(block.bytes, kBlock);
  block.used = kBlock;
}

void init() {
  [[maybe_unused]] static const int once = [] {
    if (sodium_init() < 0) std::abort();  // no usable entropy source: nothing is safe
    pthread_atfork(nullptr, nullptr, forgetAfterFork);
    return 0;
  }();
}

}  // namespace

void secureRandom(void* p, size_t n) {
  init();
  auto* out = static_cast<uint8_t*>(p);
  if (n > kBlock / 4) {  // large requests gain nothing from the block
    randombytes_buf(out, n);
    return;
  }
  while (n > 0) {
    if (block.used == kBlock) {
      randombytes_buf(block.bytes, kBlock);
      block.used = 0;
    }
    size_t take = std::min(n, kBlock - block.used);
    std::memcpy(out, block.bytes + block.used, take);
    sodium_memzero(block.bytes + block.used, take);  // handed-out bytes do not linger
    block.used += take;
    out += take;
    n -= take;
  }
}

}  // namespace usher
