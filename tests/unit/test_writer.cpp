// MessageWriter and the common messages: byte-exact encodings.
#include <doctest/doctest.h>

#include <string>

#include "usher/base/byte_reader.h"
#include "usher/base/io_buffer.h"
#include "usher/protocol/error_fields.h"
#include "usher/protocol/writer.h"

using namespace usher;
using namespace usher::protocol;

namespace {

std::string bytes(const char* s, size_t n) {
  return std::string(s, n);
}

}  // namespace

TEST_SUITE("protocol") {
  TEST_CASE("writer: ReadyForQuery") {
    IoBuffer out;
    writeReadyForQuery(out, 'I');
    CHECK(out.view() == bytes("Z\x00\x00\x00\x05I", 6));
  }

  TEST_CASE("writer: ParameterStatus") {
    IoBuffer out;
    writeParameterStatus(out, "client_encoding", "UTF8");
    CHECK(out.view() == bytes("S\x00\x00\x00\x19"
                              "client_encoding\0UTF8\0",
                              26));
  }

  TEST_CASE("writer: ErrorResponse with and without detail") {
    IoBuffer out;
    writeErrorResponse(out, "FATAL", "28P01", "bad");
    CHECK(out.view() == bytes("E\x00\x00\x00\x1f"
                              "SFATAL\0VFATAL\0C28P01\0Mbad\0\0",
                              32));
    out.consume(out.readable());

    writeErrorResponse(out, "NOTICE", "00000", "m", "d", 'N');
    CHECK(out.view() == bytes("N\x00\x00\x00\x22"
                              "SNOTICE\0VNOTICE\0C00000\0Mm\0Dd\0\0",
                              35));
    ErrorFields f = parseErrorFields(out.view().substr(5));
    CHECK(f.severity == "NOTICE");
    CHECK(f.sqlstate == "00000");
    CHECK(f.message == "m");
    CHECK(f.detail == "d");
  }

  TEST_CASE("error fields prefer the non-localized severity") {
    std::string payload("SFEHLER\0VERROR\0C42601\0Msyntax\0\0", 31);
    ErrorFields f = parseErrorFields(payload);
    CHECK(f.severity == "ERROR");
    CHECK(f.sqlstate == "42601");
    CHECK(f.message == "syntax");
    CHECK(f.detail.empty());
    std::string oldPayload("SFATAL\0C08P01\0\0", 15);  // before 9.6: no 'V'
    ErrorFields old = parseErrorFields(oldPayload);
    CHECK(old.severity == "FATAL");
  }

  TEST_CASE("writer: CancelRequest") {
    IoBuffer out;
    writeCancelRequest(out, 0x01020304, -2);
    CHECK(out.view() ==
          bytes("\x00\x00\x00\x10\x04\xd2\x16\x2e\x01\x02\x03\x04\xff\xff\xff\xfe", 16));
  }

  TEST_CASE("writer: SASLInitialResponse, SASLResponse, password") {
    IoBuffer out;
    writeSaslInitialResponse(out, "SCRAM-SHA-256", "n,,n=,r=abc");
    CHECK(out.view() == bytes("p\x00\x00\x00\x21"
                              "SCRAM-SHA-256\0\x00\x00\x00\x0bn,,n=,r=abc",
                              34));
    out.consume(out.readable());

    writeSaslInitialResponse(out, "X", "");
    CHECK(out.view() == bytes("p\x00\x00\x00\x0aX\0\xff\xff\xff\xff", 11));
    out.consume(out.readable());

    writeSaslResponse(out, "c=biws");
    CHECK(out.view() == bytes("p\x00\x00\x00\x0a"
                              "c=biws",
                              11));
    out.consume(out.readable());

    writePasswordMessage(out, "pw");
    CHECK(out.view() == bytes("p\x00\x00\x00\x07pw\0", 8));
  }

  TEST_CASE("writer: other common messages") {
    IoBuffer out;
    writeAuthRequest(out, AuthCode::Md5Password, bytes("\x01\x02\x03\x04", 4));
    writeBackendKeyData(out, 7, 9);
    writeQuery(out, "SELECT 1");
    writeTerminate(out);
    writeNegotiateProtocolVersion(out, 0, {"_pq_.a"});
    CHECK(out.view() == bytes("R\x00\x00\x00\x0c\x00\x00\x00\x05\x01\x02\x03\x04"
                              "K\x00\x00\x00\x0c\x00\x00\x00\x07\x00\x00\x00\x09"
                              "Q\x00\x00\x00\x0dSELECT 1\0"
                              "X\x00\x00\x00\x04"
                              "v\x00\x00\x00\x13\x00\x00\x00\x00\x00\x00\x00\x01_pq_.a\0",
                              13 + 13 + 14 + 5 + 20));
  }

  TEST_CASE("writer: a message written across compaction and growth") {
    BufferPool pool(16);
    IoBuffer out;
    pool.attach(out);
    out.append("0123456789");
    out.consume(8);  // unread "89" at offset 8: the next writes compact, then grow
    std::string big(100, 'x');
    MessageWriter w(out);
    w.begin('Q').cstr("ab");
    w.raw(big).i16(0x0102).end();
    CHECK(out.capacity() > 16);
    std::string expected =
        "89Q" + bytes("\x00\x00\x00\x6d", 4) + bytes("ab\0", 3) + big + bytes("\x01\x02", 2);
    CHECK(out.view() == expected);
    ByteReader r(out.view().substr(3, 4));
    CHECK(r.u32() == 4 + 3 + 100 + 2);
  }

  TEST_CASE("writer: several messages back to back") {
    IoBuffer out;
    writeReadyForQuery(out, 'T');
    writeReadyForQuery(out, 'E');
    CHECK(out.view() == bytes("Z\x00\x00\x00\x05TZ\x00\x00\x00\x05"
                              "E",
                              12));
  }
}
