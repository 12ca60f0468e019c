// SCRAM-SHA-256 benchmarks: the server side of one client login (usher verifies every client's
// proof), with the client's messages precomputed so only the server's work is timed.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <string>

#include "usher/auth/scram.h"
#include "usher/auth/secret.h"

namespace {

using namespace usher::auth;

constexpr std::string_view kClientNonce = "rOprNGfwEbeRWgbNEkqO";
constexpr std::string_view kServerNonce = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";

// One login's messages with fixed nonces, so the same client-final is valid for every fresh
// ScramServer built with the same verifier and server nonce.
struct Exchange {
  ScramVerifier verifier;
  std::string clientFirst;
  std::string clientFinal;
};

const Exchange& exchange() {
  static const Exchange ex = [] {
    Exchange e;
    e.verifier = makeVerifier("a-benchmark-password", kDefaultScramIterations);
    ScramClient client = ScramClient::withPassword("a-benchmark-password");
    client.setNonceForTests(std::string(kClientNonce));
    e.clientFirst = client.clientFirst();
    ScramServer server(e.verifier, std::string(kServerNonce));
    auto serverFirst = server.handleClientFirst(e.clientFirst);
    if (!serverFirst) std::abort();
    auto clientFinal = client.handleServerFirst(*serverFirst);
    if (!clientFinal) std::abort();
    e.clientFinal = *clientFinal;
    if (!server.handleClientFinal(e.clientFinal)) std::abort();
    return e;
  }();
  return ex;
}

// client-first only: parse, build server-first (the nonce is fixed, so no random bytes).
void BM_ScramServerClientFirst(benchmark::State& state) {
  const Exchange& ex = exchange();
  for (auto _ : state) {
    ScramServer server(ex.verifier, std::string(kServerNonce));
    auto first = server.handleClientFirst(ex.clientFirst);
    benchmark::DoNotOptimize(first);
  }
}
BENCHMARK(BM_ScramServerClientFirst);

// The whole server side of a login: client-first, then client-final (proof verification:
// HMAC(StoredKey, AuthMessage), XOR, SHA-256 compare, ServerSignature). The client-final part
// alone is this minus BM_ScramServerClientFirst.
void BM_ScramServerLogin(benchmark::State& state) {
  const Exchange& ex = exchange();
  for (auto _ : state) {
    ScramServer server(ex.verifier, std::string(kServerNonce));
    auto first = server.handleClientFirst(ex.clientFirst);
    auto final = server.handleClientFinal(ex.clientFinal);
    if (!final) state.SkipWithError("client-final was rejected");
    benchmark::DoNotOptimize(final);
  }
}
BENCHMARK(BM_ScramServerLogin);

// A wrong proof (what a password-guessing client costs usher): no ServerSignature to compute.
void BM_ScramServerLoginWrongProof(benchmark::State& state) {
  const Exchange& ex = exchange();
  std::string bad = ex.clientFinal;
  char& first = bad[bad.find(",p=") + 3];  // the proof's first base64 digit
  first = first == 'A' ? 'B' : 'A';
  for (auto _ : state) {
    ScramServer server(ex.verifier, std::string(kServerNonce));
    auto first = server.handleClientFirst(ex.clientFirst);
    auto final = server.handleClientFinal(bad);
    if (final) state.SkipWithError("a wrong proof was accepted");
    benchmark::DoNotOptimize(final);
  }
}
BENCHMARK(BM_ScramServerLoginWrongProof);

// PBKDF2 with 4096 iterations: what a plaintext secret costs once (PoolManager caches the
// verifier), and what each pgbench -C login costs the *client* side.
void BM_ScramDeriveVerifier(benchmark::State& state) {
  std::string salt(16, 's');
  for (auto _ : state) {
    auto v = deriveVerifier("a-benchmark-password", salt, kDefaultScramIterations);
    benchmark::DoNotOptimize(v);
  }
}
BENCHMARK(BM_ScramDeriveVerifier)->Unit(benchmark::kMicrosecond);

// Pass-through: usher's login to PostgreSQL with keys recovered from a client (no PBKDF2).
void BM_ScramClientWithKeys(benchmark::State& state) {
  const Exchange& ex = exchange();
  // A server-first as PostgreSQL would send it for our verifier.
  ScramServer pg(ex.verifier, std::string(kServerNonce));
  ScramClient probe = ScramClient::withPassword("a-benchmark-password");
  probe.setNonceForTests(std::string(kClientNonce));
  auto serverFirst = pg.handleClientFirst(probe.clientFirst());
  if (!serverFirst) std::abort();
  auto probeFinal = probe.handleServerFirst(*serverFirst);
  if (!probeFinal || !pg.handleClientFinal(*probeFinal)) std::abort();
  const Key32 clientKey = pg.clientKey();
  for (auto _ : state) {
    ScramClient client = ScramClient::withKeys(clientKey, ex.verifier.serverKey);
    client.setNonceForTests(std::string(kClientNonce));
    auto first = client.clientFirst();
    auto final = client.handleServerFirst(*serverFirst);
    benchmark::DoNotOptimize(first);
    benchmark::DoNotOptimize(final);
  }
}
BENCHMARK(BM_ScramClientWithKeys);

}  // namespace
