// Startup-phase packets and libpq's options parameter.
#include <doctest/doctest.h>

#include <string>

#include "usher/protocol/startup.h"
#include "usher/protocol/tags.h"

using namespace usher::protocol;
using namespace std::string_literals;

namespace {

std::string be32(uint32_t v) {
  return {char(v >> 24), char(v >> 16), char(v >> 8), char(v)};
}

// Length prefix + body.
std::string packet(const std::string& body) {
  return be32(uint32_t(body.size() + 4)) + body;
}

auto parse(const std::string& p) {
  return parseStartup(reinterpret_cast<const uint8_t*>(p.data()), p.size());
}

// What psql sends: version 3.0, user, database, application_name, client_encoding, terminator.
const std::string kPsqlBody = be32(kProtocolV3) +
                              "user\0alice\0database\0app_db\0application_name\0psql\0"
                              "client_encoding\0UTF8\0\0"s;

}  // namespace

TEST_SUITE("protocol") {
  TEST_CASE("startup: a real StartupMessage") {
    auto r = parse(packet(kPsqlBody));
    REQUIRE(r.has_value());
    CHECK(r->kind == StartupKind::Startup);
    CHECK(r->version == 196608);
    REQUIRE(r->params.size() == 4);
    CHECK(r->params[0] == std::pair<std::string, std::string>{"user", "alice"});
    CHECK(r->params[3] == std::pair<std::string, std::string>{"client_encoding", "UTF8"});
    REQUIRE(r->param("database"));
    CHECK(*r->param("database") == "app_db");
    CHECK(r->param("Database") == nullptr);
    CHECK(r->param("options") == nullptr);
  }

  TEST_CASE("startup: empty values and other versions") {
    auto r = parse(packet(be32(kProtocolV3_2) + "user\0u\0options\0\0\0"s));
    REQUIRE(r.has_value());
    CHECK(r->version == kProtocolV3_2);
    REQUIRE(r->param("options"));
    CHECK(r->param("options")->empty());

    // Protocol 2.0's layout is not name/value pairs; the caller rejects the version itself.
    auto v2 = parse(packet(be32(2u << 16) + std::string(64, 'x')));
    REQUIRE(v2.has_value());
    CHECK(v2->kind == StartupKind::Startup);
    CHECK(v2->version == (2u << 16));
    CHECK(v2->params.empty());
  }

  TEST_CASE("startup: SSL, GSS and cancel requests") {
    auto ssl = parse(packet(be32(kSslRequestCode)));
    REQUIRE(ssl.has_value());
    CHECK(ssl->kind == StartupKind::SslRequest);
    auto gss = parse(packet(be32(kGssEncRequestCode)));
    REQUIRE(gss.has_value());
    CHECK(gss->kind == StartupKind::GssEncRequest);

    auto cancel = parse(packet(be32(kCancelRequestCode) + be32(4242) + be32(0xdeadbeef)));
    REQUIRE(cancel.has_value());
    CHECK(cancel->kind == StartupKind::Cancel);
    CHECK(cancel->cancelPid == 4242);
    CHECK(cancel->cancelKey == int32_t(0xdeadbeef));

    auto shortCancel = parse(packet(be32(kCancelRequestCode) + be32(4242)));
    REQUIRE_FALSE(shortCancel.has_value());
    CHECK(shortCancel.error().sqlstate == "08P01");
    CHECK_FALSE(parse(packet(be32(kCancelRequestCode) + be32(1) + be32(2) + be32(3))));
    CHECK_FALSE(parse(packet(be32(kSslRequestCode) + be32(0))));
  }

  TEST_CASE("startup: truncated and malformed packets") {
    SUBCASE("length prefix disagrees with the bytes given") {
      std::string p = packet(kPsqlBody);
      auto r = parseStartup(reinterpret_cast<const uint8_t*>(p.data()), p.size() - 1);
      REQUIRE_FALSE(r.has_value());
      CHECK(r.error().sqlstate == "08P01");
      CHECK_FALSE(parse(""));
      CHECK_FALSE(parse(be32(4)));
    }
    SUBCASE("missing terminator") {
      auto r = parse(packet(be32(kProtocolV3) + "user\0alice\0"s));
      REQUIRE_FALSE(r.has_value());
      CHECK(r.error().sqlstate == "08P01");
      CHECK(r.error().message == "invalid startup packet layout: expected terminator as last byte");
    }
    SUBCASE("value cut off") {
      auto r = parse(packet(be32(kProtocolV3) + "user\0ali"s));
      REQUIRE_FALSE(r.has_value());
      CHECK(r.error().sqlstate == "08P01");
    }
    SUBCASE("trailing garbage after the terminator") {
      auto r = parse(packet(kPsqlBody + "x"));
      REQUIRE_FALSE(r.has_value());
      CHECK(r.error().message.find("terminator") != std::string::npos);
    }
  }

  TEST_CASE("parseOptions: accepted forms") {
    using Settings = std::vector<std::pair<std::string, std::string>>;
    auto r = parseOptions("-c search_path=app  -cstatement_timeout=5s --work-mem=64MB");
    REQUIRE(r.has_value());
    CHECK(*r ==
          Settings{{"search_path", "app"}, {"statement_timeout", "5s"}, {"work_mem", "64MB"}});

    auto escaped = parseOptions(R"(-c application_name=my\ app\\x -c x=)");
    REQUIRE(escaped.has_value());
    CHECK(*escaped == Settings{{"application_name", R"(my app\x)"}, {"x", ""}});

    auto empty = parseOptions("   ");
    REQUIRE(empty.has_value());
    CHECK(empty->empty());
  }

  TEST_CASE("parseOptions: rejected arguments name themselves") {
    for (std::string_view bad : {"-B 100", "geqo=off", "-c", "-c novalue", "--flag", "-c =x"}) {
      CAPTURE(bad);
      auto r = parseOptions(bad);
      REQUIRE_FALSE(r.has_value());
      CHECK(r.error().sqlstate == "08P01");
    }
    auto r = parseOptions("-c a=b -B 100");
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().message.find("\"-B\"") != std::string::npos);
    auto nv = parseOptions("-c novalue");
    REQUIRE_FALSE(nv.has_value());
    CHECK(nv.error().message.find("novalue") != std::string::npos);
  }
}
