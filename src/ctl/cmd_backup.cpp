// Verified backups: backup (pg_dump -Fc streamed, checked, checksummed, renamed), restore
// (checksum and decryption checked before anything is touched), backups (the listing), and the
// backup directory as a store.
#include <dirent.h>
#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <ctime>
#include <map>

#include "usher/auth/secret.h"
#include "usher/ctl/backup_format.h"
#include "usher/ctl/backup_store.h"
#include "usher/ctl/context.h"
#include "usher/ctl/crypto_stream.h"
#include "usher/ctl/files.h"
#include "usher/ctl/json.h"
#include "usher/ctl/process.h"

namespace usher::ctl {
namespace {

constexpr size_t kHashBytes = 32;  // BLAKE2b-256
constexpr size_t kReadChunk = 256 * 1024;

// A file descriptor closed on scope exit.
class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }
  int get() const { return fd_; }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
};

// Reads `path` in chunks, calling `sink(chunk)` for each; stops at the first sink error.
template <class Sink>
Result<void> streamFile(const std::string& path, Sink&& sink) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return failPlain("cannot open " + path + ": " + errnoText(errno));
  std::string buf(kReadChunk, '\0');
  while (true) {
    ssize_t n = ::read(fd.get(), buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return failPlain("read " + path + ": " + errnoText(errno));
    }
    if (n == 0) return {};
    if (auto ok = sink(std::string_view(buf.data(), size_t(n))); !ok) return ok;
  }
}

Result<std::pair<std::string, int64_t>> hashFile(const std::string& path) {
  crypto_generichash_state st;
  crypto_generichash_init(&st, nullptr, 0, kHashBytes);
  int64_t size = 0;
  auto ok = streamFile(path, [&](std::string_view chunk) -> Result<void> {
    crypto_generichash_update(&st, reinterpret_cast<const unsigned char*>(chunk.data()),
                              chunk.size());
    size += int64_t(chunk.size());
    return {};
  });
  if (!ok) return std::unexpected(ok.error());
  unsigned char out[kHashBytes];
  crypto_generichash_final(&st, out, sizeof out);
  return std::pair{toHex(out, sizeof out), size};
}

// Feeds the decrypted content of `path` to a child's stdin. A reader that stops early (EPIPE)
// is not an error here: its exit status tells.
Result<void> feedDecrypted(const std::string& path, const EncryptionKey& key, Child& child) {
  Decryptor dec(key);
  bool readerGone = false;
  auto ok = streamFile(path, [&](std::string_view chunk) -> Result<void> {
    auto plain = dec.update(chunk);
    if (!plain) return std::unexpected(plain.error());
    if (!readerGone && !plain->empty()) {
      auto w = writeAll(child.stdinFd(), *plain, "pg_restore");
      sodium_memzero(plain->data(), plain->size());
      if (!w) {
        if (errno != EPIPE) return w;
        readerGone = true;
      }
    }
    return {};
  });
  child.closeStdin();
  if (!ok) return ok;
  if (!readerGone) return dec.finish();
  return {};
}

// Decrypts the whole file without writing anything: proves key and integrity.
Result<void> checkDecrypts(const std::string& path, const EncryptionKey& key) {
  Decryptor dec(key);
  auto ok = streamFile(path, [&](std::string_view chunk) -> Result<void> {
    auto plain = dec.update(chunk);
    if (!plain) return std::unexpected(plain.error());
    sodium_memzero(plain->data(), plain->size());
    return {};
  });
  if (!ok) return ok;
  return dec.finish();
}

// Runs pg_restore with `args` on the dump at `path` (decrypting into its stdin when `key`).
Result<ProcessResult> runPgRestore(const std::string& pgRestore, std::vector<std::string> args,
                                   const std::string& path, const EncryptionKey* key,
                                   const std::vector<std::pair<std::string, std::string>>& env,
                                   Stdio out) {
  ProcessSpec spec;
  spec.argv.push_back(pgRestore);
  spec.argv.insert(spec.argv.end(), args.begin(), args.end());
  spec.env = env;
  spec.out = out;
  if (!key) {
    spec.argv.push_back(path);
    return runProcess(spec);
  }
  spec.in = Stdio::Pipe;
  auto child = spawnProcess(spec);
  if (!child) return std::unexpected(child.error());
  auto fed = feedDecrypted(path, *key, *child);
  ProcessResult r = child->wait();
  if (!fed) return std::unexpected(fed.error());
  return r;
}

// Reads the dump back: `pg_restore --list` (the table of contents) and a full pass to
// /dev/null (every data block, so a truncated dump fails even when its TOC is intact).
Result<int64_t> verifyDump(const std::string& pgRestore, const std::string& path,
                           const EncryptionKey* key) {
  auto list = runPgRestore(pgRestore, {"--list"}, path, key, {}, Stdio::Capture);
  if (!list) return std::unexpected(list.error());
  if (!list->ok()) {
    return failPlain("pg_restore --list " + list->status() + ": " + list->errTail());
  }
  int64_t entries = 0;
  size_t pos = 0;
  while (pos < list->out.size()) {
    size_t eol = list->out.find('\n', pos);
    if (eol == std::string::npos) eol = list->out.size();
    std::string_view line(list->out.data() + pos, eol - pos);
    if (!line.empty() && line[0] != ';') ++entries;
    pos = eol + 1;
  }
  auto full = runPgRestore(pgRestore, {"--file=/dev/null"}, path, key, {}, Stdio::Null);
  if (!full) return std::unexpected(full.error());
  if (!full->ok()) {
    return failPlain("pg_restore reading the whole dump " + full->status() + ": " +
                     full->errTail());
  }
  return entries;
}

std::string pgDumpVersion(const std::string& pgDump) {
  ProcessSpec spec;
  spec.argv = {pgDump, "--version"};
  auto r = runProcess(spec);
  if (!r || !r->ok()) return {};
  std::string v = r->out;
  while (!v.empty() && (v.back() == '\n' || v.back() == '\r')) v.pop_back();
  return v;
}

std::vector<std::pair<std::string, std::string>> passwordEnv(const ConnParams& p) {
  std::vector<std::pair<std::string, std::string>> env;
  if (!p.password.empty()) env.emplace_back("PGPASSWORD", p.password);
  env.emplace_back("PGCONNECT_TIMEOUT", std::to_string(std::max(1, p.connectTimeoutMs / 1000)));
  return env;
}

struct BackupOutcome {
  std::string database;
  bool ok = false;
  std::string error;
  std::string path;
  BackupManifest manifest;
  std::vector<std::string> pruned;
};

struct BackupJob {
  std::string dir;
  DumpCommand dump;
  std::string pgRestore;
  const EncryptionKey* key = nullptr;
  ConnParams conn;
  std::string owner;
  std::string source;
  std::string version;
};

BackupOutcome backupOne(const BackupJob& job) {
  BackupOutcome out;
  out.database = job.dump.database;
  const std::time_t now = std::time(nullptr);
  std::string name = backupFileName(job.dump.database, now, job.key != nullptr);
  for (int n = 1; fileExists(joinPath(job.dir, name)) ||
                  fileExists(joinPath(job.dir, name) + std::string(kPartialSuffix));
       ++n) {
    name = job.dump.database + "-" + backupTimestamp(now) + "-" + std::to_string(n) + ".dump" +
           (job.key ? ".enc" : "");
  }
  const std::string finalPath = joinPath(job.dir, name);
  const std::string partial = finalPath + std::string(kPartialSuffix);
  auto failed = [&](const std::string& why) {
    ::unlink(partial.c_str());
    out.error = why + " (no backup was replaced; " + partial + " removed)";
    return out;
  };

  Fd fd(::open(partial.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (fd.get() < 0) {
    out.error = "cannot create " + partial + ": " + errnoText(errno);
    return out;
  }
  ProcessSpec spec;
  spec.argv = buildDumpArgv(job.dump);
  spec.env = passwordEnv(job.conn);
  spec.out = Stdio::Pipe;
  auto child = spawnProcess(spec);
  if (!child) return failed(child.error().message);

  crypto_generichash_state hash;
  crypto_generichash_init(&hash, nullptr, 0, kHashBytes);
  int64_t stored = 0, plainBytes = 0;
  std::optional<Encryptor> enc;
  if (job.key) enc.emplace(*job.key);
  auto emit = [&](std::string_view data) -> Result<void> {
    crypto_generichash_update(&hash, reinterpret_cast<const unsigned char*>(data.data()),
                              data.size());
    stored += int64_t(data.size());
    return writeAll(fd.get(), data, partial);
  };
  Result<void> written = enc ? emit(enc->begin()) : Result<void>();
  std::string buf(kReadChunk, '\0');
  while (written) {
    ssize_t n = ::read(child->stdoutFd(), buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      written = failPlain("reading pg_dump's output: " + errnoText(errno));
      break;
    }
    if (n == 0) break;
    plainBytes += n;
    std::string_view chunk(buf.data(), size_t(n));
    written = enc ? emit(enc->update(chunk)) : emit(chunk);
  }
  ProcessResult res = child->wait();
  if (!res.ok()) {
    return failed("pg_dump of " + job.dump.database + " " + res.status() + ": " + res.errTail());
  }
  if (!written) return failed(written.error().message);
  if (plainBytes == 0) return failed("pg_dump of " + job.dump.database + " produced no output");
  if (enc) {
    if (auto ok = emit(enc->finish()); !ok) return failed(ok.error().message);
  }
  if (::fsync(fd.get()) != 0) return failed("fsync " + partial + ": " + errnoText(errno));
  fd.reset();

  auto toc = verifyDump(job.pgRestore, partial, job.key);
  if (!toc) {
    return failed("the dump of " + job.dump.database +
                  " does not read back, it is corrupt or truncated: " + toc.error().message);
  }
  unsigned char digest[kHashBytes];
  crypto_generichash_final(&hash, digest, sizeof digest);

  BackupManifest& m = out.manifest;
  m.database = job.dump.database;
  m.owner = job.owner;
  m.file = name;
  m.created = int64_t(now);
  m.size = stored;
  m.blake2b = toHex(digest, sizeof digest);
  m.encrypted = job.key != nullptr;
  m.tocEntries = *toc;
  m.source = job.source;
  m.pgDumpVersion = job.version;
  if (::rename(partial.c_str(), finalPath.c_str()) != 0) {
    return failed("rename " + partial + ": " + errnoText(errno));
  }
  if (auto ok = fsyncParentDir(finalPath); !ok) {
    out.error = ok.error().message;
    return out;
  }
  if (auto ok = atomicWriteFile(finalPath + std::string(kManifestSuffix), manifestToJson(m), 0600);
      !ok) {
    out.error = "the dump is in " + finalPath +
                " but its manifest could not be written: " + ok.error().message;
    return out;
  }
  out.ok = true;
  out.path = finalPath;
  return out;
}

// Deletes verified backups of `database` that retention does not keep.
Result<std::vector<std::string>> prune(const std::string& dir, const std::string& database,
                                       int keepDaily, int keepWeekly) {
  auto all = listBackups(dir);
  if (!all) return std::unexpected(all.error());
  std::vector<StoredBackup> mine;
  for (auto& b : *all) {
    if (b.name.database == database && b.verified()) mine.push_back(std::move(b));
  }
  std::vector<std::time_t> times;
  for (const auto& b : mine) times.push_back(std::time_t(b.manifest->created));
  auto keep = selectRetained(times, keepDaily, keepWeekly);
  std::vector<std::string> removed;
  for (size_t i = 0; i < mine.size(); ++i) {
    if (keep.contains(i)) continue;
    // Manifest first: a crash in between leaves an unverified file, never a lying manifest.
    if (::unlink(mine[i].manifestPath.c_str()) != 0 || ::unlink(mine[i].path.c_str()) != 0) {
      return failPlain("removing " + mine[i].path + ": " + errnoText(errno));
    }
    removed.push_back(mine[i].path);
  }
  return removed;
}

Result<StoredBackup> loadStoredBackup(const std::string& path) {
  StoredBackup b;
  b.path = path;
  b.manifestPath = path + std::string(kManifestSuffix);
  auto parsed = parseBackupFileName(baseName(path));
  if (parsed) b.name = *parsed;
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0)
    return failPlain("cannot read " + path + ": " + errnoText(errno));
  b.size = int64_t(st.st_size);
  if (!fileExists(b.manifestPath)) {
    b.status = "unverified (no manifest)";
    return b;
  }
  auto text = readTextFile(b.manifestPath);
  if (!text) {
    b.status = "unverified (" + text.error().message + ")";
    return b;
  }
  auto m = parseManifest(*text);
  if (!m) {
    b.status = "unverified (manifest: " + m.error().message + ")";
    return b;
  }
  b.manifest = *m;
  if (m->file != baseName(path)) {
    b.status = "unverified (manifest names " + m->file + ")";
  } else if (m->size != b.size) {
    b.status = "size mismatch (manifest " + std::to_string(m->size) + " bytes, file " +
               std::to_string(b.size) + ")";
  } else {
    b.status = "verified";
  }
  if (!parsed) {
    b.name.database = m->database;
    b.name.created = std::time_t(m->created);
    b.name.encrypted = m->encrypted;
  }
  return b;
}

}  // namespace

// ---- the store -----------------------------------------------------------------------------

Result<std::vector<StoredBackup>> listBackups(const std::string& dir) {
  std::vector<StoredBackup> out;
  DIR* d = ::opendir(dir.c_str());
  if (!d) {
    if (errno == ENOENT) return out;
    return failPlain("cannot list " + dir + ": " + errnoText(errno));
  }
  while (dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (!parseBackupFileName(name)) continue;  // also skips .partial and .json
    auto b = loadStoredBackup(joinPath(dir, name));
    if (b) out.push_back(std::move(*b));
  }
  ::closedir(d);
  std::sort(out.begin(), out.end(), [](const StoredBackup& a, const StoredBackup& b) {
    if (a.name.created != b.name.created) return a.name.created > b.name.created;
    if (a.name.sequence != b.name.sequence) return a.name.sequence > b.name.sequence;
    return a.path > b.path;
  });
  return out;
}

Result<void> verifyChecksum(const StoredBackup& b) {
  if (!b.manifest) return failPlain(b.path + " is " + b.status);
  auto h = hashFile(b.path);
  if (!h) return std::unexpected(h.error());
  if (h->second != b.manifest->size) {
    return failPlain("size mismatch: " + b.path + " has " + std::to_string(h->second) +
                     " bytes, its manifest says " + std::to_string(b.manifest->size));
  }
  if (!auth::constantTimeEqual(h->first, b.manifest->blake2b)) {
    return failPlain("checksum mismatch: the BLAKE2b of " + b.path +
                     " is not the one in its manifest (the file is corrupt or was modified)");
  }
  return {};
}

std::optional<StoredBackup> freshestVerifiedBackup(const std::vector<StoredBackup>& all,
                                                   const std::string& database,
                                                   std::time_t notBefore) {
  for (const auto& b : all) {  // newest first
    if (b.name.database == database && b.verified() && b.manifest->created >= notBefore) return b;
  }
  return std::nullopt;
}

// ---- subcommands ---------------------------------------------------------------------------

int cmdBackup(Context& ctx) {
  auto cfg = ctx.loadConfig();
  if (!cfg) return ctx.fail(cfg.error().message);
  std::vector<std::string> databases;
  if (!ctx.args().positional.empty()) {
    for (const auto& name : ctx.args().positional) {
      std::string db = name;
      if (*cfg) {
        // A tenant NAME finds NAME_db; a configured database maps to its server dbname.
        const config::DatabaseConfig* found = nullptr;
        for (const auto& d : (*cfg)->databases) {
          if (d.name == name) found = &d;
        }
        if (!found) {
          for (const auto& d : (*cfg)->databases) {
            if (d.name == name + "_db") found = &d;
          }
        }
        if (found) db = found->dbname.empty() ? found->name : found->dbname;
      }
      databases.push_back(db);
    }
  } else if (*cfg) {
    for (const auto& name : configTenantDatabases(**cfg)) {
      const config::DatabaseConfig* d = (*cfg)->findDatabase(name);
      databases.push_back(d && !d->dbname.empty() ? d->dbname : name);
    }
  }
  if (databases.empty()) {
    return ctx.fail(
        "nothing to back up: name databases (or tenants), or pass --config to back "
        "up every tenant in usher's config",
        kExitUsage);
  }
  auto keepDaily = ctx.args().getInt("keep-daily", 0, 0, 10000);
  auto keepWeekly = ctx.args().getInt("keep-weekly", 0, 0, 10000);
  if (!keepDaily) return ctx.fail(keepDaily.error().message, kExitUsage);
  if (!keepWeekly) return ctx.fail(keepWeekly.error().message, kExitUsage);
  const bool retention = ctx.args().has("keep-daily") || ctx.args().has("keep-weekly");

  std::optional<EncryptionKey> key;
  if (auto kf = ctx.args().get("encrypt-key-file")) {
    auto k = loadEncryptionKey(*kf);
    if (!k) return ctx.fail(k.error().message);
    key = *k;
    if (auto mode = fileMode(*kf); mode && (*mode & 077)) {
      ctx.warn("the key file " + *kf + " is readable by group or others (chmod 600 it)");
    }
  }
  const std::string dir = ctx.args().getOr("backup-dir", "/srv/backups");
  if (auto ok = ensureDirectory(dir, 0700); !ok) return ctx.fail(ok.error().message);
  auto conn = ctx.pgParams();
  if (!conn) return ctx.fail(conn.error().message);

  BackupJob job;
  job.dir = dir;
  job.conn = *conn;
  job.key = key ? &*key : nullptr;
  job.pgRestore = ctx.args().getOr("pg-restore", "pg_restore");
  job.dump.pgDump = ctx.args().getOr("pg-dump", "pg_dump");
  job.dump.host = conn->host;
  job.dump.port = conn->port;
  job.dump.user = conn->user;
  job.dump.composeService = ctx.args().getOr("compose-service", "");
  job.dump.composeFile = ctx.args().getOr("compose-file", "");
  job.dump.docker = ctx.args().getOr("docker", "docker");
  job.dump.passPassword = !conn->password.empty();
  job.source =
      job.dump.composeService.empty() ? conn->where() : "compose:" + job.dump.composeService;
  job.version = job.dump.composeService.empty() ? pgDumpVersion(job.dump.pgDump) : "";

  // Owners go in the manifest so restore can recreate a dropped database as it was. Best effort:
  // with --compose-service PostgreSQL may not be reachable from here.
  std::map<std::string, std::string> owners;
  if (auto pg = PgClient::connect(*conn)) {
    auto r = pg->query(
        "SELECT d.datname, r.rolname FROM pg_database d JOIN pg_roles r ON "
        "r.oid = d.datdba");
    if (r) {
      for (size_t i = 0; i < r->rows.size(); ++i) {
        owners[r->value(i, "datname")] = r->value(i, "rolname");
      }
    }
  } else if (job.dump.composeService.empty()) {
    return ctx.fail(pg.error().message);
  }

  std::vector<BackupOutcome> outcomes;
  bool allOk = true;
  for (const auto& db : databases) {
    job.dump.database = db;
    job.owner = owners.contains(db) ? owners[db] : "";
    BackupOutcome o = backupOne(job);
    if (o.ok && retention) {
      auto pruned = prune(dir, db, *keepDaily, *keepWeekly);
      if (pruned) {
        o.pruned = std::move(*pruned);
      } else {
        ctx.warn("retention for " + db + ": " + pruned.error().message);
      }
    }
    if (o.ok) {
      ctx.info("backup of " + db + ": " + o.path + " (" + humanSize(o.manifest.size) + ", " +
               std::to_string(o.manifest.tocEntries) + " TOC entries, blake2b " +
               o.manifest.blake2b.substr(0, 16) + "…, verified with pg_restore" +
               (o.manifest.encrypted ? ", encrypted" : "") + ")");
      for (const auto& p : o.pruned) ctx.info("  removed by retention: " + p);
    } else {
      allOk = false;
      ctx.error("backup of " + db + " FAILED: " + o.error);
    }
    outcomes.push_back(std::move(o));
  }
  if (ctx.json()) {
    JsonWriter w;
    w.beginObject().field("ok", allOk).key("backups").beginArray();
    for (const auto& o : outcomes) {
      w.beginObject().field("database", o.database).field("ok", o.ok);
      if (o.ok) {
        w.field("path", o.path)
            .field("size", o.manifest.size)
            .field("blake2b", o.manifest.blake2b)
            .field("encrypted", o.manifest.encrypted)
            .field("toc_entries", o.manifest.tocEntries)
            .field("created", backupTimestamp(std::time_t(o.manifest.created)));
        w.key("pruned").beginArray();
        for (const auto& p : o.pruned) w.value(p);
        w.endArray();
      } else {
        w.field("error", o.error);
      }
      w.endObject();
    }
    w.endArray().endObject();
    ctx.emitJson(w.str());
  }
  return allOk ? kExitOk : kExitFailure;
}

int cmdRestore(Context& ctx) {
  if (ctx.args().positional.size() != 1) {
    return ctx.fail(
        "expected one BACKUP (a file, or a database name for its newest verified "
        "backup)",
        kExitUsage);
  }
  auto target = ctx.args().get("to");
  if (!target || target->empty()) {
    return ctx.fail("--to DB is required: the database to restore into", kExitUsage);
  }
  const std::string dir = ctx.args().getOr("backup-dir", "/srv/backups");
  const std::string arg = ctx.args().positional[0];

  // Resolve the backup: a path, a file in the backup directory, or a database's newest.
  std::string path;
  if (fileExists(arg)) {
    path = arg;
  } else if (fileExists(joinPath(dir, arg))) {
    path = joinPath(dir, arg);
  } else {
    auto all = listBackups(dir);
    if (!all) return ctx.fail(all.error().message);
    for (const auto& b : *all) {
      if (b.name.database == arg && b.verified()) {
        path = b.path;
        break;
      }
    }
    if (path.empty()) {
      return ctx.fail("no backup file \"" + arg + "\" and no verified backup of a database \"" +
                      arg + "\" in " + dir);
    }
  }
  auto backup = loadStoredBackup(path);
  if (!backup) return ctx.fail(backup.error().message);
  if (!backup->manifest) {
    return ctx.fail("refusing to restore " + path + ": it is " + backup->status +
                    " — a backup without its manifest was never verified");
  }
  // Everything below this line is checked before the database is touched.
  if (auto ok = verifyChecksum(*backup); !ok) {
    return ctx.fail("refusing to restore: " + ok.error().message + "; nothing was restored");
  }
  std::optional<EncryptionKey> key;
  if (backup->manifest->encrypted) {
    auto kf = ctx.args().get("encrypt-key-file");
    if (!kf) {
      return ctx.fail(path +
                      " is encrypted: pass --encrypt-key-file with the key it was made "
                      "with");
    }
    auto k = loadEncryptionKey(*kf);
    if (!k) return ctx.fail(k.error().message);
    key = *k;
    if (auto ok = checkDecrypts(path, *key); !ok) {
      return ctx.fail("refusing to restore " + path + ": " + ok.error().message +
                      "; nothing was restored");
    }
  }

  auto conn = ctx.pgParams();
  if (!conn) return ctx.fail(conn.error().message);
  auto pg = PgClient::connect(*conn);
  if (!pg) return ctx.fail(pg.error().message);
  std::vector<std::string> actions;
  auto exists = pg->query("SELECT 1 FROM pg_database WHERE datname = " + quoteLiteralSql(*target));
  if (!exists) return ctx.fail(exists.error().message);
  if (exists->rows.empty()) {
    std::string owner = ctx.args().getOr("owner", backup->manifest->owner);
    if (!owner.empty()) {
      auto role = pg->query("SELECT 1 FROM pg_roles WHERE rolname = " + quoteLiteralSql(owner));
      if (!role) return ctx.fail(role.error().message);
      if (role->rows.empty()) {
        ctx.warn("role " + owner +
                 " (the dumped database's owner) does not exist: the new "
                 "database is owned by " +
                 conn->user);
        owner.clear();
      }
    }
    std::string sql = "CREATE DATABASE " + quoteIdent(*target);
    if (!owner.empty()) sql += " OWNER " + quoteIdent(owner);
    if (auto r = pg->execute(sql); !r) {
      return ctx.fail("CREATE DATABASE " + *target + ": " + r.error().message);
    }
    actions.push_back("created database " + *target + (owner.empty() ? "" : " owned by " + owner));
    if (!owner.empty()) {
      // Database-level privileges are not in a pg_dump archive: restore the tenant isolation.
      auto r = pg->execute("REVOKE CONNECT ON DATABASE " + quoteIdent(*target) +
                           " FROM PUBLIC; GRANT CONNECT ON DATABASE " + quoteIdent(*target) +
                           " TO " + quoteIdent(owner));
      if (!r) return ctx.fail("restricting CONNECT on " + *target + ": " + r.error().message);
      actions.push_back("revoked CONNECT on " + *target + " from PUBLIC (granted to " + owner +
                        ")");
    }
  }

  const std::string pgRestore = ctx.args().getOr("pg-restore", "pg_restore");
  std::vector<std::string> args = {"--clean",
                                   "--if-exists",
                                   "--single-transaction",
                                   "--no-password",
                                   "--host=" + conn->host,
                                   "--port=" + std::to_string(conn->port),
                                   "--username=" + conn->user,
                                   "--dbname=" + *target};
  auto res = runPgRestore(pgRestore, args, path, key ? &*key : nullptr, passwordEnv(*conn),
                          Stdio::Capture);
  if (!res) return ctx.fail("restore of " + path + " into " + *target + ": " + res.error().message);
  if (!res->ok()) {
    return ctx.fail("pg_restore into " + *target + " " + res->status() + ": " + res->errTail() +
                    " (it ran as one transaction: " + *target + " is as it was before)");
  }
  actions.push_back("restored " + path + " (" + std::to_string(backup->manifest->tocEntries) +
                    " TOC entries, taken " +
                    backupTimestamp(std::time_t(backup->manifest->created)) + " from " +
                    backup->manifest->database + ") into " + *target +
                    " with pg_restore --clean --if-exists --single-transaction");
  if (ctx.json()) {
    JsonWriter w;
    w.beginObject()
        .field("ok", true)
        .field("backup", path)
        .field("database", *target)
        .field("source_database", backup->manifest->database)
        .field("created", backupTimestamp(std::time_t(backup->manifest->created)))
        .field("checksum_verified", true);
    w.key("actions").beginArray();
    for (const auto& a : actions) w.value(a);
    w.endArray().endObject();
    ctx.emitJson(w.str());
  } else {
    ctx.info("checksum verified: " + backup->manifest->blake2b.substr(0, 16) + "…" +
             (key ? " (and decrypted)" : ""));
    for (const auto& a : actions) ctx.info(a);
  }
  return kExitOk;
}

int cmdBackups(Context& ctx) {
  const std::string dir = ctx.args().getOr("backup-dir", "/srv/backups");
  auto all = listBackups(dir);
  if (!all) return ctx.fail(all.error().message);
  const bool deep = ctx.args().has("verify");
  const auto& filter = ctx.args().positional;
  JsonWriter w;
  w.beginObject().field("directory", dir).key("backups").beginArray();
  std::string text;
  char line[1024];
  std::snprintf(line, sizeof line, "%-20s %-17s %10s %-4s %-10s %s\n", "DATABASE", "CREATED",
                "SIZE", "ENC", "STATUS", "FILE");
  text += line;
  bool allOk = true;
  for (auto& b : *all) {
    if (!filter.empty() &&
        std::find(filter.begin(), filter.end(), b.name.database) == filter.end()) {
      continue;
    }
    if (deep && b.verified()) {
      if (auto ok = verifyChecksum(b); !ok) b.status = "corrupt (" + ok.error().message + ")";
    }
    allOk = allOk && b.verified();
    w.beginObject()
        .field("database", b.name.database)
        .field("created", backupTimestamp(b.name.created))
        .field("created_unix", int64_t(b.name.created))
        .field("size", b.size)
        .field("encrypted", b.name.encrypted)
        .field("verified", b.verified())
        .field("status", b.status)
        .field("path", b.path)
        .endObject();
    std::snprintf(line, sizeof line, "%-20s %-17s %10s %-4s %-10s %s\n", b.name.database.c_str(),
                  backupTimestamp(b.name.created).c_str(), humanSize(b.size).c_str(),
                  b.name.encrypted ? "yes" : "no", b.verified() ? "verified" : "UNVERIFIED",
                  baseName(b.path).c_str());
    text += line;
    if (!b.verified()) text += "    " + b.status + "\n";
  }
  w.endArray().endObject();
  if (ctx.json()) {
    ctx.emitJson(w.str());
  } else {
    std::fputs(text.c_str(), stdout);
  }
  return deep && !allOk ? kExitProblems : kExitOk;
}

}  // namespace usher::ctl
