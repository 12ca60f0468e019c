// IoBuffer and BufferPool: cursors, compaction, growth, recycling.
#include <doctest/doctest.h>

#include "usher/base/byte_reader.h"
#include "usher/base/io_buffer.h"

using namespace usher;

TEST_SUITE("base") {
  TEST_CASE("IoBuffer keeps bytes in order across consume, compact and growth") {
    BufferPool pool(8);
    IoBuffer buf;
    CHECK_FALSE(buf.hasStorage());
    pool.attach(buf);
    REQUIRE(buf.capacity() == 8);
    buf.append("abcdef");
    buf.consume(4);
    CHECK(buf.view() == "ef");
    buf.append("ghijkl");  // needs compaction: 2 unread + 6 new = 8
    CHECK(buf.capacity() == 8);
    CHECK(buf.view() == "efghijkl");
    buf.append("mn");  // must grow
    CHECK(buf.capacity() >= 10);
    CHECK(buf.view() == "efghijklmn");
    buf.consume(buf.readable());
    CHECK(buf.empty());
    pool.detach(buf);  // grown blocks are freed, not recycled
    CHECK_FALSE(buf.hasStorage());
    CHECK(pool.freeBlocks() == 0);
  }

  TEST_CASE("BufferPool recycles only empty, standard-size blocks") {
    BufferPool pool(16);
    IoBuffer a;
    pool.attach(a);
    a.append("x");
    pool.detach(a);  // not empty: kept
    CHECK(a.hasStorage());
    a.consume(1);
    pool.detach(a);
    CHECK_FALSE(a.hasStorage());
    CHECK(pool.freeBlocks() == 1);
    IoBuffer b;
    pool.attach(b);
    CHECK(pool.freeBlocks() == 0);
    CHECK(b.capacity() == 16);
  }

  TEST_CASE("ByteReader overflow is sticky") {
    const uint8_t data[] = {0, 0, 0, 5, 'h', 'i', 0, 7};
    ByteReader r(data, sizeof data);
    CHECK(r.u32() == 5);
    CHECK(r.cstr() == "hi");
    CHECK(r.u8() == 7);
    CHECK(r.atEnd());
    CHECK(r.u16() == 0);
    CHECK_FALSE(r.ok());
    CHECK(r.u8() == 0);  // still failed
    CHECK_FALSE(r.ok());
  }

  TEST_CASE("ByteReader cstr without terminator fails") {
    const char data[] = {'a', 'b'};
    ByteReader r(data, 2);
    CHECK(r.cstr().empty());
    CHECK_FALSE(r.ok());
  }
}

#include "usher/base/intrusive_list.h"

namespace {
struct Item {
  int value;
  usher::ListNode node;
};
using ItemList = usher::IntrusiveList<Item, &Item::node>;
}  // namespace

TEST_SUITE("base") {
  TEST_CASE("IntrusiveList moves items between lists and keeps sizes exact") {
    ItemList a, b;
    Item x{1, {}}, y{2, {}}, z{3, {}};
    a.pushBack(x);
    a.pushBack(y);
    b.pushBack(z);
    b.remove(x);  // not on b: no effect on either list
    CHECK(a.size() == 2);
    CHECK(b.size() == 1);
    a.remove(x);
    b.pushFront(x);
    CHECK(a.size() == 1);
    CHECK(b.size() == 2);
    CHECK(b.front()->value == 1);
    CHECK(b.contains(x));
    CHECK_FALSE(a.contains(x));
    int sum = 0;
    b.forEach([&](Item& i) {
      sum += i.value;
      b.remove(i);  // removal of the current item during iteration is allowed
    });
    CHECK(sum == 4);
    CHECK(b.empty());
    CHECK(a.popFront()->value == 2);
    CHECK(a.empty());
  }
}
