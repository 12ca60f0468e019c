// Cryptographically secure random bytes, drawn from libsodium in blocks: a login needs a SCRAM
// nonce and a cancel key (26 bytes), and asking the kernel for each costs a getrandom() syscall.
#pragma once

#include <cstddef>
#include <cstdint>

namespace usher {

// Fills `p` with `n` random bytes. Thread-safe (each thread has its own block); a forked child
// never reuses its parent's block.
void secureRandom(void* p, size_t n);

inline uint32_t secureRandomU32() {
  uint32_t v;
  secureRandom(&v, sizeof v);
  return v;
}

}  // namespace usher
