// md5 stored hashes and challenge responses against values computed independently.
#include <doctest/doctest.h>

#include "usher/auth/md5.h"

using namespace usher::auth;

TEST_SUITE("auth") {
  TEST_CASE("md5StoredHash matches pg_authid") {
    // PostgreSQL 15: SET password_encryption='md5'; CREATE ROLE "user" PASSWORD 'secret'.
    CHECK(md5StoredHash("secret", "user") == "md520eb1b22a92b5c573dc1eb4331fc49ee");
    CHECK(md5StoredHash("pencil", "postgres") == "md54c21b325d75177d5e9b9789a50ab0c9c");
    CHECK(md5StoredHash("secret", "other") != md5StoredHash("secret", "user"));
  }

  TEST_CASE("md5Response hashes the stored hex with the salt") {
    // "md5" + md5(hex + salt), computed with Python's hashlib.
    CHECK(md5Response("md520eb1b22a92b5c573dc1eb4331fc49ee", {0x01, 0x02, 0x03, 0x04}) ==
          "md5fccef98e4f1cf6cbe96b743fad4e8bd0");
    CHECK(md5Response(md5StoredHash("pencil", "postgres"), {0xde, 0xad, 0xbe, 0xef}) ==
          "md5ced99751bea390968e795eaedb0a4935");
    CHECK(md5Response("md520eb1b22a92b5c573dc1eb4331fc49ee", {0x01, 0x02, 0x03, 0x05}) !=
          "md5fccef98e4f1cf6cbe96b743fad4e8bd0");
  }
}
