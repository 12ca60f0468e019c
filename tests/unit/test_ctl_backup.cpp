// usherctl's backup pieces: names, manifests, retention, the pg_dump argv, encryption, JSON and
// pgbench output.
#include <doctest/doctest.h>
#include <sodium.h>

#include <algorithm>
#include <random>

#include "usher/ctl/backup_format.h"
#include "usher/ctl/bench.h"
#include "usher/ctl/crypto_stream.h"
#include "usher/ctl/json.h"

using namespace usher::ctl;

namespace {

std::time_t utc(int y, int mo, int d, int h = 12, int mi = 0, int s = 0) {
  std::tm tm{};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = s;
  return timegm(&tm);
}

BackupManifest sampleManifest() {
  BackupManifest m;
  m.database = "trading_db";
  m.owner = "trading_app_user";
  m.file = "trading_db-20250914T083000Z.dump";
  m.created = utc(2025, 9, 14, 8, 30, 0);
  m.size = 123456789012;
  m.blake2b = std::string(64, 'a');
  m.encrypted = true;
  m.tocEntries = 42;
  m.source = "127.0.0.1:5432";
  m.pgDumpVersion = "pg_dump (PostgreSQL) 15.8";
  return m;
}

}  // namespace

TEST_SUITE("ctl") {
  TEST_CASE("backup: file names and timestamps") {
    const std::time_t t = utc(2025, 9, 14, 8, 30, 5);
    CHECK(backupTimestamp(t) == "20250914T083005Z");
    CHECK(parseBackupTimestamp("20250914T083005Z") == t);
    CHECK_FALSE(parseBackupTimestamp("20251314T083005Z"));
    CHECK_FALSE(parseBackupTimestamp("20250914 083005Z"));
    CHECK(backupFileName("trading_db", t, false) == "trading_db-20250914T083005Z.dump");
    CHECK(backupFileName("trading_db", t, true) == "trading_db-20250914T083005Z.dump.enc");

    auto n = parseBackupFileName("trading_db-20250914T083005Z.dump");
    REQUIRE(n);
    CHECK(n->database == "trading_db");
    CHECK(n->created == t);
    CHECK_FALSE(n->encrypted);
    CHECK(n->sequence == 0);
    n = parseBackupFileName("my-app-db-20250914T083005Z-3.dump.enc");
    REQUIRE(n);
    CHECK(n->database == "my-app-db");
    CHECK(n->sequence == 3);
    CHECK(n->encrypted);
    // A database whose name ends in digits after a dash is not mistaken for a sequence.
    n = parseBackupFileName("shard-7-20250914T083005Z.dump");
    REQUIRE(n);
    CHECK(n->database == "shard-7");
    for (std::string_view bad :
         {"trading_db-20250914T083005Z.dump.partial", "trading_db-20250914T083005Z.dump.json",
          "trading_db.dump", "-20250914T083005Z.dump", "x-2025091T083005Z.dump"}) {
      CAPTURE(bad);
      CHECK_FALSE(parseBackupFileName(bad));
    }
  }

  TEST_CASE("backup: manifest round trip and refusals") {
    const BackupManifest m = sampleManifest();
    auto back = parseManifest(manifestToJson(m));
    REQUIRE(back);
    CHECK(back->database == m.database);
    CHECK(back->owner == m.owner);
    CHECK(back->file == m.file);
    CHECK(back->created == m.created);
    CHECK(back->size == m.size);  // beyond 2^32: sizes stay exact
    CHECK(back->blake2b == m.blake2b);
    CHECK(back->encrypted);
    CHECK(back->tocEntries == 42);
    CHECK(back->pgDumpVersion == m.pgDumpVersion);

    SUBCASE("wrong format") {
      auto r = parseManifest(R"({"format":"other","database":"x"})");
      REQUIRE_FALSE(r);
      CHECK(r.error().message.find("usherctl-backup-1") != std::string::npos);
    }
    SUBCASE("missing checksum") {
      std::string j = manifestToJson(m);
      j.replace(j.find("\"blake2b\""), 9, "\"blake3\"");
      auto r = parseManifest(j);
      REQUIRE_FALSE(r);
      CHECK(r.error().message.find("blake2b") != std::string::npos);
    }
    SUBCASE("checksum not hex") {
      BackupManifest bad = m;
      bad.blake2b = std::string(64, 'Z');
      CHECK_FALSE(parseManifest(manifestToJson(bad)));
    }
    SUBCASE("file with a directory") {
      BackupManifest bad = m;
      bad.file = "../etc/passwd";
      CHECK_FALSE(parseManifest(manifestToJson(bad)));
    }
    SUBCASE("not JSON") {
      CHECK_FALSE(parseManifest("{\"format\": "));
    }
  }

  TEST_CASE("backup: retention keeps the newest per day and per ISO week") {
    // Three backups a day for ten days, 2025-09-01 (a Monday) to 2025-09-10.
    std::vector<std::time_t> times;
    for (int d = 1; d <= 10; ++d) {
      for (int h : {2, 10, 18}) times.push_back(utc(2025, 9, d, h));
    }
    auto idx = [&](int day, int hour) {
      return size_t(std::find(times.begin(), times.end(), utc(2025, 9, day, hour)) - times.begin());
    };
    SUBCASE("daily") {
      auto keep = selectRetained(times, 3, 0);
      CHECK(keep == std::set<size_t>{idx(10, 18), idx(9, 18), idx(8, 18)});
    }
    SUBCASE("weekly: the newest of 2025-W37 and 2025-W36") {
      auto keep = selectRetained(times, 0, 2);
      CHECK(keep == std::set<size_t>{idx(10, 18), idx(7, 18)});
    }
    SUBCASE("both, overlapping") {
      auto keep = selectRetained(times, 2, 2);
      CHECK(keep == std::set<size_t>{idx(10, 18), idx(9, 18), idx(7, 18)});
    }
    SUBCASE("nothing asked: the newest is still kept") {
      CHECK(selectRetained(times, 0, 0) == std::set<size_t>{idx(10, 18)});
    }
    SUBCASE("input order does not matter") {
      std::vector<std::time_t> shuffled = times;
      std::mt19937 rng(7);
      std::shuffle(shuffled.begin(), shuffled.end(), rng);
      auto keep = selectRetained(shuffled, 3, 0);
      std::set<std::time_t> kept;
      for (size_t i : keep) kept.insert(shuffled[i]);
      CHECK(kept ==
            std::set<std::time_t>{utc(2025, 9, 10, 18), utc(2025, 9, 9, 18), utc(2025, 9, 8, 18)});
    }
    CHECK(selectRetained({}, 7, 4).empty());
  }

  TEST_CASE("backup: the pg_dump argv, direct and through docker compose") {
    DumpCommand c;
    c.host = "127.0.0.1";
    c.port = 5433;
    c.user = "platform_admin";
    c.database = "trading_db";
    CHECK(buildDumpArgv(c) == std::vector<std::string>{"pg_dump", "--host=127.0.0.1", "--port=5433",
                                                       "--format=custom", "--no-password",
                                                       "--username=platform_admin",
                                                       "--dbname=trading_db"});
    c.composeService = "postgres";
    c.composeFile = "/srv/apps/postgres-stack/docker-compose.yml";
    c.passPassword = true;
    // -T: no pseudo-TTY (the legacy script's corruption); the password stays in the
    // environment, never on the argv; the host is the container's own.
    CHECK(buildDumpArgv(c) ==
          std::vector<std::string>{
              "docker", "compose", "-f", "/srv/apps/postgres-stack/docker-compose.yml", "exec",
              "-T", "-e", "PGPASSWORD", "postgres", "pg_dump", "--format=custom", "--no-password",
              "--username=platform_admin", "--dbname=trading_db"});
    c.composeFile.clear();
    c.passPassword = false;
    auto argv = buildDumpArgv(c);
    CHECK(argv[2] == "exec");
    CHECK(std::find(argv.begin(), argv.end(), "-e") == argv.end());
    CHECK(std::find(argv.begin(), argv.end(), "-t") == argv.end());
  }

  TEST_CASE("backup: encryption round trip in any split, and what it detects") {
    REQUIRE(sodium_init() >= 0);
    EncryptionKey key{};
    randombytes_buf(key.data(), key.size());
    std::string plain(3 * kPlainChunk + 1234, '\0');
    randombytes_buf(plain.data(), plain.size());

    Encryptor enc(key);
    std::string file = enc.begin();
    for (size_t pos = 0; pos < plain.size(); pos += 10000)
      file += enc.update(plain.substr(pos, 10000));
    file += enc.finish();
    CHECK(file.starts_with(kEncryptedMagic));
    CHECK(file.find(plain.substr(0, 64)) == std::string::npos);

    auto decrypt = [&](std::string_view data, size_t step,
                       const EncryptionKey& k) -> usher::Result<std::string> {
      Decryptor dec(k);
      std::string out;
      for (size_t pos = 0; pos < data.size(); pos += step) {
        auto part = dec.update(data.substr(pos, step));
        if (!part) return std::unexpected(part.error());
        out += *part;
      }
      if (auto ok = dec.finish(); !ok) return std::unexpected(ok.error());
      return out;
    };
    for (size_t step : {size_t(1) << 20, size_t(65536 + 21), size_t(4093), size_t(13)}) {
      CAPTURE(step);
      auto out = decrypt(file, step, key);
      REQUIRE(out);
      CHECK(*out == plain);
    }
    SUBCASE("one flipped bit") {
      std::string bad = file;
      bad[bad.size() / 2] ^= 1;
      auto r = decrypt(bad, 65536, key);
      REQUIRE_FALSE(r);
      CHECK(r.error().message.find("decryption failed") != std::string::npos);
    }
    SUBCASE("wrong key") {
      EncryptionKey other = key;
      other[0] ^= 1;
      CHECK_FALSE(decrypt(file, 65536, other));
    }
    SUBCASE("truncated at a chunk boundary") {
      // Drop the final chunk: every remaining chunk authenticates, only the missing tag tells.
      const size_t finalChunk = 4 + 1234 + crypto_secretstream_xchacha20poly1305_ABYTES;
      auto r = decrypt(std::string_view(file).substr(0, file.size() - finalChunk), 65536, key);
      REQUIRE_FALSE(r);
      CHECK(r.error().message.find("truncated") != std::string::npos);
    }
    SUBCASE("data after the end") {
      CHECK_FALSE(decrypt(file + std::string(40, 'x'), 65536, key));
    }
    SUBCASE("empty input encrypts to a valid stream") {
      Encryptor e(key);
      std::string f = e.begin();
      f += e.update("");
      f += e.finish();
      auto out = decrypt(f, 100, key);
      REQUIRE(out);
      CHECK(out->empty());
    }
  }

  TEST_CASE("json: writer output parses back") {
    JsonWriter w;
    w.beginObject()
        .field("s", "quote \" backslash \\ newline \n tab \t bell \x07")
        .field("n", int64_t(-12345678901234))
        .field("b", true)
        .key("a")
        .beginArray()
        .value(1)
        .value("x")
        .null()
        .beginObject()
        .endObject()
        .endArray()
        .endObject();
    auto v = parseJson(w.str());
    REQUIRE(v);
    CHECK(v->getString("s") == "quote \" backslash \\ newline \n tab \t bell \x07");
    CHECK(v->getInt("n") == -12345678901234);
    CHECK(v->getBool("b") == true);
    REQUIRE(v->get("a"));
    CHECK(v->get("a")->items.size() == 4);
    CHECK(parseJson(R"("\u00e9\ud83d\ude00")")->text == "\xc3\xa9\xf0\x9f\x98\x80");
    for (std::string_view bad : {"", "{", "[1,]", "{\"a\" 1}", "tru", "\"\x01\"", "1 2"}) {
      CAPTURE(bad);
      CHECK_FALSE(parseJson(bad));
    }
  }

  TEST_CASE("bench: pgbench output and the baseline verdict") {
    constexpr std::string_view kOut =
        "pgbench (15.8 (Debian 15.8-0+deb12u1))\n"
        "transaction type: <builtin: TPC-B (sort of)>\n"
        "scaling factor: 1\nquery mode: simple\nnumber of clients: 8\nnumber of threads: 2\n"
        "maximum number of tries: 1\nduration: 60 s\n"
        "number of transactions actually processed: 61234\n"
        "number of failed transactions: 0 (0.000%)\n"
        "latency average = 7.839 ms\n"
        "initial connection time = 12.345 ms\n"
        "tps = 1020.567890 (without initial connection time)\n";
    auto n = parsePgbenchOutput(kOut);
    REQUIRE(n);
    CHECK(n->tps == doctest::Approx(1020.56789));
    CHECK(n->latencyMs == doctest::Approx(7.839));
    CHECK(n->transactions == 61234);
    CHECK(n->failed == 0);
    // pgbench 13 and older print two tps lines: the one excluding connections counts.
    auto old = parsePgbenchOutput(
        "tps = 480.1 (including connections establishing)\n"
        "tps = 495.2 (excluding connections establishing)\n");
    REQUIRE(old);
    CHECK(old->tps == doctest::Approx(495.2));
    CHECK_FALSE(parsePgbenchOutput("pgbench: error: connection to server failed\n"));

    CHECK(benchVerdict(499.9, 500, 1500) == Verdict::Below);
    CHECK(benchVerdict(500, 500, 1500) == Verdict::Healthy);
    CHECK(benchVerdict(1500, 500, 1500) == Verdict::Healthy);
    CHECK(benchVerdict(1500.1, 500, 1500) == Verdict::Above);
    CHECK(verdictExplanation(Verdict::Below, 120, 500, 1500).find("disk I/O") != std::string::npos);
    CHECK(verdictExplanation(Verdict::Above, 9000, 500, 1500).find("above") != std::string::npos);
  }
}
