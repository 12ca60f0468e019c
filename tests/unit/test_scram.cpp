// SCRAM-SHA-256: RFC 7677's example, PostgreSQL-generated verifiers, round trips, pass-through
// and rejection of malformed messages.
#include <doctest/doctest.h>

#include <string>

#include "usher/auth/scram.h"
#include "usher/auth/secret.h"

using namespace usher::auth;

namespace {

// RFC 7677, section 3.
constexpr std::string_view kRfcClientNonce = "rOprNGfwEbeRWgbNEkqO";
constexpr std::string_view kRfcServerNonce = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
constexpr std::string_view kRfcClientFirst = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
constexpr std::string_view kRfcServerFirst =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
constexpr std::string_view kRfcClientFinal =
    "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
constexpr std::string_view kRfcServerFinal = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

// PostgreSQL 15: SET password_encryption='scram-sha-256'; CREATE ROLE x PASSWORD 'secret';
// SELECT rolpassword FROM pg_authid WHERE rolname = 'x';
constexpr std::string_view kPgPassword = "secret";
constexpr std::string_view kPgVerifier =
    "SCRAM-SHA-256$4096:iyULnXPgoJ8zgUklSWPC3w==$MZNIih3odV/m4/ivKVTZ+bKn/zZ7S7hs8+lmMCdt0lo=:"
    "K6UBUrdFUY4QS3AiGqSe0X4lAG3P2laxSuCgsPL+Y4w=";

ScramVerifier rfcVerifier() {
  auto salt = base64Decode("W22ZaJ0SNY7soEsUEjb6gQ==");
  REQUIRE(salt.has_value());
  return deriveVerifier("pencil", *salt, 4096);
}

ScramVerifier pgVerifier() {
  auto secret = Secret::parse(kPgVerifier);
  REQUIRE(secret.has_value());
  REQUIRE(secret->kind() == SecretKind::Scram);
  return secret->scram();
}

// Runs a whole exchange; returns the first error, if any, with the side that raised it.
struct Outcome {
  bool ok = false;
  std::string side;
  usher::Error error;
};

Outcome login(ScramClient& client, ScramServer& server) {
  auto serverFirst = server.handleClientFirst(client.clientFirst());
  if (!serverFirst) return {false, "server", serverFirst.error()};
  auto clientFinal = client.handleServerFirst(*serverFirst);
  if (!clientFinal) return {false, "client", clientFinal.error()};
  auto serverFinal = server.handleClientFinal(*clientFinal);
  if (!serverFinal) return {false, "server", serverFinal.error()};
  auto done = client.handleServerFinal(*serverFinal);
  if (!done) return {false, "client", done.error()};
  return {true, {}, {}};
}

}  // namespace

TEST_SUITE("auth") {
  TEST_CASE("scram: RFC 7677 example, server side") {
    ScramServer server(rfcVerifier(), std::string(kRfcServerNonce));
    auto serverFirst = server.handleClientFirst(kRfcClientFirst);
    REQUIRE(serverFirst.has_value());
    CHECK(*serverFirst == kRfcServerFirst);
    auto serverFinal = server.handleClientFinal(kRfcClientFinal);
    REQUIRE(serverFinal.has_value());
    CHECK(*serverFinal == kRfcServerFinal);
  }

  TEST_CASE("scram: RFC 7677 example, client side") {
    auto client = ScramClient::withPassword("pencil");
    client.setNonceForTests(std::string(kRfcClientNonce));
    client.setUserNameForTests("user");
    CHECK(client.clientFirst() == kRfcClientFirst);
    auto clientFinal = client.handleServerFirst(kRfcServerFirst);
    REQUIRE(clientFinal.has_value());
    CHECK(*clientFinal == kRfcClientFinal);
    CHECK(client.handleServerFinal(kRfcServerFinal).has_value());
  }

  TEST_CASE("scram: client rejects a wrong server signature or a server error") {
    auto client = ScramClient::withPassword("pencil");
    client.setNonceForTests(std::string(kRfcClientNonce));
    client.setUserNameForTests("user");
    client.clientFirst();
    REQUIRE(client.handleServerFirst(kRfcServerFirst).has_value());
    auto wrong = client.handleServerFinal("v=7rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
    REQUIRE_FALSE(wrong.has_value());
    CHECK(wrong.error().sqlstate == "08P01");
    auto shortSig = client.handleServerFinal("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G=");
    CHECK_FALSE(shortSig.has_value());
    auto err = client.handleServerFinal("e=invalid-proof");
    REQUIRE_FALSE(err.has_value());
    CHECK(err.error().message.find("invalid-proof") != std::string::npos);
  }

  TEST_CASE("scram: client first message is what libpq sends") {
    auto client = ScramClient::withPassword("pw");
    std::string first = client.clientFirst();
    REQUIRE(first.starts_with("n,,n=,r="));
    auto nonce = base64Decode(first.substr(8));
    REQUIRE(nonce.has_value());
    CHECK(nonce->size() == 18);
    auto other = ScramClient::withPassword("pw");
    CHECK(other.clientFirst() != first);  // random nonces
  }

  TEST_CASE("scram: deriveVerifier reproduces PostgreSQL's verifier") {
    ScramVerifier pg = pgVerifier();
    ScramVerifier derived = deriveVerifier(kPgPassword, pg.salt, pg.iterations);
    CHECK(derived.storedKey == pg.storedKey);
    CHECK(derived.serverKey == pg.serverKey);
    CHECK(formatVerifier(derived) == kPgVerifier);
    ScramVerifier wrong = deriveVerifier("Secret", pg.salt, pg.iterations);
    CHECK(wrong.storedKey != pg.storedKey);
  }

  TEST_CASE("scram: a password login against PostgreSQL's verifier") {
    ScramServer server(pgVerifier());
    auto client = ScramClient::withPassword(kPgPassword);
    Outcome o = login(client, server);
    CHECK_MESSAGE(o.ok, o.side << ": " << o.error.message);

    ScramServer server2(pgVerifier());
    auto bad = ScramClient::withPassword("secret ");
    Outcome rejected = login(bad, server2);
    REQUIRE_FALSE(rejected.ok);
    CHECK(rejected.side == "server");
    CHECK(rejected.error.sqlstate == "28P01");
    CHECK(rejected.error.message == "password authentication failed");
  }

  TEST_CASE("scram: round trip with a fresh verifier") {
    ScramVerifier v = makeVerifier("correct horse battery staple", 1000);
    CHECK(v.iterations == 1000);
    CHECK(v.salt.size() == 16);
    CHECK(makeVerifier("correct horse battery staple", 1000).salt != v.salt);

    ScramServer server(v);
    auto client = ScramClient::withPassword("correct horse battery staple");
    Outcome o = login(client, server);
    CHECK_MESSAGE(o.ok, o.side << ": " << o.error.message);

    ScramServer server2(v);
    auto wrong = ScramClient::withPassword("correct horse battery stapler");
    Outcome rejected = login(wrong, server2);
    REQUIRE_FALSE(rejected.ok);
    CHECK(rejected.error.sqlstate == "28P01");
  }

  TEST_CASE("scram: pass-through with the ClientKey recovered by the server") {
    ScramVerifier v = makeVerifier("tenant password");
    ScramServer front(v);
    auto app = ScramClient::withPassword("tenant password");
    Outcome first = login(app, front);
    REQUIRE_MESSAGE(first.ok, first.side << ": " << first.error.message);

    // usher logs in to PostgreSQL (here a second ScramServer with the same verifier) with the
    // recovered keys and no password.
    ScramServer backend(v);
    auto proxy = ScramClient::withKeys(front.clientKey(), v.serverKey);
    Outcome second = login(proxy, backend);
    CHECK_MESSAGE(second.ok, second.side << ": " << second.error.message);
    CHECK(backend.clientKey() == front.clientKey());

    // Keys from a different verifier do not work.
    ScramServer other(makeVerifier("tenant password"));
    auto stale = ScramClient::withKeys(front.clientKey(), v.serverKey);
    Outcome third = login(stale, other);
    REQUIRE_FALSE(third.ok);
    CHECK(third.error.sqlstate == "28P01");
  }

  TEST_CASE("scram: server rejects malformed client-first messages") {
    const std::string_view bad[] = {
        "",
        "p=tls-server-end-point,,n=,r=abc",
        "n,a=bob,n=,r=abc",
        "x,,n=,r=abc",
        "n,n=,r=abc",
        "n,,r=abc",
        "n,,n=,r=",
        "n,,n=,r=ab\x01"
        "c",
        "n,,n=,r=ab c",
        "n,,m=ext,n=,r=abc",
        "n,,n=,nonce",
        "n,,n=,r=abc,",
        "n,,n=,r=abc,1=x",
    };
    for (std::string_view message : bad) {
      CAPTURE(message);
      ScramServer server(rfcVerifier());
      auto r = server.handleClientFirst(message);
      REQUIRE_FALSE(r.has_value());
      CHECK(r.error().sqlstate == "08P01");
      CHECK_FALSE(r.error().message.empty());
    }
    ScramServer server(rfcVerifier());
    auto channel = server.handleClientFirst("p=tls-server-end-point,,n=,r=abc");
    REQUIRE_FALSE(channel.has_value());
    CHECK(channel.error().message.find("channel binding not supported") != std::string::npos);

    ScramServer ext(rfcVerifier());
    CHECK(ext.handleClientFirst("y,,n=ignored,r=abc,x=extension").has_value());
  }

  TEST_CASE("scram: server rejects malformed client-final messages") {
    const std::string nonce = std::string(kRfcClientNonce) + std::string(kRfcServerNonce);
    const std::string proof = "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    struct Case {
      std::string message;
      std::string_view sqlstate;
    };
    const Case cases[] = {
        {"c=eSws,r=" + nonce + "," + proof, "08P01"},           // y,, after n,,
        {"c=biws,r=" + nonce + "x," + proof, "08P01"},          // nonce mismatch
        {"c=biws,r=" + nonce, "08P01"},                         // no proof
        {"c=biws,r=" + nonce + ",p=dHzbZapWIk4j", "08P01"},     // short proof
        {"c=biws,r=" + nonce + "," + proof + ",x=1", "08P01"},  // garbage after proof
        {"r=" + nonce + ",c=biws," + proof, "08P01"},           // order
        {"c=biws,r=" + nonce + ",p=eHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=", "28P01"},
    };
    for (const Case& c : cases) {
      CAPTURE(c.message);
      ScramServer server(rfcVerifier(), std::string(kRfcServerNonce));
      REQUIRE(server.handleClientFirst(kRfcClientFirst).has_value());
      auto r = server.handleClientFinal(c.message);
      REQUIRE_FALSE(r.has_value());
      CHECK(r.error().sqlstate == c.sqlstate);
    }
    // An extension before the proof is allowed, but it is part of the signed message, so the
    // RFC proof no longer matches.
    ScramServer server(rfcVerifier(), std::string(kRfcServerNonce));
    REQUIRE(server.handleClientFirst(kRfcClientFirst).has_value());
    auto ext = server.handleClientFinal("c=biws,r=" + nonce + ",x=1," + proof);
    REQUIRE_FALSE(ext.has_value());
    CHECK(ext.error().sqlstate == "28P01");

    ScramServer early(rfcVerifier());
    CHECK_FALSE(early.handleClientFinal(kRfcClientFinal).has_value());
  }

  TEST_CASE("scram: client validates server-first") {
    const std::string_view bad[] = {
        "r=someoneElsesNonce123,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
        "r=rOprNGfwEbeRWgbNEkqO,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",  // not extended
        "r=rOprNGfwEbeRWgbNEkqOabc,s=!!!,i=4096",
        "r=rOprNGfwEbeRWgbNEkqOabc,s=,i=4096",
        "r=rOprNGfwEbeRWgbNEkqOabc,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=0",
        "r=rOprNGfwEbeRWgbNEkqOabc,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=-1",
        "r=rOprNGfwEbeRWgbNEkqOabc,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=40x",
        "r=rOprNGfwEbeRWgbNEkqOabc,s=W22ZaJ0SNY7soEsUEjb6gQ==",
        "r=rOprNGfwEbeRWgbNEkqOabc,i=4096,s=W22ZaJ0SNY7soEsUEjb6gQ==",
        "m=ext,r=rOprNGfwEbeRWgbNEkqOabc,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
    };
    for (std::string_view message : bad) {
      CAPTURE(message);
      auto client = ScramClient::withPassword("pencil");
      client.setNonceForTests(std::string(kRfcClientNonce));
      client.clientFirst();
      auto r = client.handleServerFirst(message);
      REQUIRE_FALSE(r.has_value());
      CHECK(r.error().sqlstate == "08P01");
    }
  }
}
