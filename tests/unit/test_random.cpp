// secureRandom: bytes come from a per-thread block, and a forked child never repeats its parent.
#include <doctest/doctest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <set>
#include <thread>

#include "usher/base/random.h"

using namespace usher;

TEST_SUITE("base") {
  TEST_CASE("random: successive draws differ, also across the block boundary") {
    std::set<std::array<uint8_t, 18>> seen;
    for (int i = 0; i < 500; ++i) {  // 9 KB: several 1 KiB blocks
      std::array<uint8_t, 18> nonce{};
      secureRandom(nonce.data(), nonce.size());
      CHECK(seen.insert(nonce).second);
    }
    std::array<uint8_t, 4096> big{};  // larger than a block: drawn directly
    secureRandom(big.data(), big.size());
    CHECK(std::count(big.begin(), big.end(), 0) < 100);
  }

  TEST_CASE("random: threads draw different bytes") {
    uint64_t a = 0, b = 0;
    std::thread t1([&] { secureRandom(&a, sizeof a); });
    std::thread t2([&] { secureRandom(&b, sizeof b); });
    t1.join();
    t2.join();
    CHECK(a != b);
  }

  TEST_CASE("random: a forked child does not reuse its parent's block") {
    uint64_t warm = 0;
    secureRandom(&warm, sizeof warm);  // the block is now filled
    int fds[2];
    REQUIRE(pipe(fds) == 0);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      uint64_t v = 0;
      secureRandom(&v, sizeof v);
      (void)!write(fds[1], &v, sizeof v);
      _exit(0);
    }
    uint64_t mine = 0, childs = 0;
    secureRandom(&mine, sizeof mine);
    REQUIRE(read(fds[0], &childs, sizeof childs) == sizeof childs);
    int status = 0;
    waitpid(pid, &status, 0);
    close(fds[0]);
    close(fds[1]);
    CHECK(mine != childs);
  }
}
