"""usherctl against a real PostgreSQL and usher: tenants, verified backups, audit and checks.

usherctl is found through USHERCTL_BIN, else next to the usher binary under test
(<build>/src/ctl/usherctl). Every tenant a test creates has its own name, so tests do not depend
on each other's order on the session's PostgreSQL.

Reloads pass both --admin-port and --usher-pid: usherctl must use RELOAD on usher's admin console
(database "pgbouncer") and fall back to SIGHUP only when the console fails, saying why.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

import harness
from harness import wait_until

pytestmark = pytest.mark.usher_only


def usherctl_binary() -> Path:
    env = os.environ.get("USHERCTL_BIN")
    path = Path(env) if env else harness.usher_binary().parent / "ctl" / "usherctl"
    return harness.require_file(path, "usherctl binary",
                                "build it with ninja -C build (src/ctl/usherctl) or point "
                                "USHERCTL_BIN at it")


class Ctl:
    """Runs usherctl as platform_admin (PGPASSWORD) against the test cluster."""

    def __init__(self, pg, base: Path):
        self.pg = pg
        self.exe = str(usherctl_binary())
        self.secrets = base / "secrets"
        self.secrets.mkdir(mode=0o700)
        self.backups = base / "backups"

    def run(self, *args, connect: bool = True, timeout: float = 120,
            env: dict | None = None) -> subprocess.CompletedProcess:
        argv = [self.exe, *map(str, args)]
        if connect:
            argv += ["--host", self.pg.host, "--port", str(self.pg.port), "--user", "platform_admin"]
        res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                             stdin=subprocess.DEVNULL,
                             env=harness.clean_env(PGPASSWORD=self.pg.passwords["platform_admin"],
                                                   **(env or {})))
        # Never a secret on the terminal unless asked: the admin password is the one we know.
        assert self.pg.passwords["platform_admin"] not in res.stdout + res.stderr
        return res

    def ok(self, *args, **kw) -> subprocess.CompletedProcess:
        res = self.run(*args, **kw)
        assert res.returncode == 0, f"usherctl {args[0]} failed ({res.returncode}):\n" \
                                    f"{res.stdout}\n{res.stderr}"
        return res

    def secret(self, role: str) -> str:
        return (self.secrets / f"{role}.password").read_text()

    def tenant_args(self, pooler) -> list[str]:
        """Config, secrets dir and both ways to reload the running usher."""
        return ["--config", pooler.config_path, "--secrets-dir", self.secrets,
                "--admin-port", pooler.port, "--usher-pid", pooler.proc.pid]


@pytest.fixture
def ctl(pg, tmp_path):
    return Ctl(pg, tmp_path)


def assert_reload_reported(res):
    """The reload went through the console (no fallback to SIGHUP was needed)."""
    assert "usher reloaded (RELOAD through usher's admin console" in res.stdout, res.stdout
    assert "warning" not in res.stderr, res.stderr


def login_works(pooler, user, db, password) -> bool:
    try:
        with pooler.connect(user, db, password=password) as conn:
            return conn.execute("SELECT current_user, current_database()").fetchone() == (user, db)
    except psycopg.OperationalError:
        return False


def role_exists(pg, role) -> bool:
    with pg.admin() as conn:
        return conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() is not None


def db_exists(pg, db) -> bool:
    with pg.admin() as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,)).fetchone() is not None


# ---- help and usage ------------------------------------------------------------------------

SUBCOMMANDS = ["provision", "rotate-password", "deprovision", "tenants", "reload", "backup",
               "restore", "backups", "bench", "check", "audit"]


def test_every_subcommand_has_help(ctl):
    for cmd in SUBCOMMANDS:
        res = ctl.run(cmd, "--help", connect=False)
        assert res.returncode == 0, res.stderr
        assert res.stdout.startswith(f"Usage: usherctl {cmd}"), res.stdout
        assert "--help" in res.stdout
    res = ctl.run("provision", "x", "--password", "literal", connect=False)
    assert res.returncode == 2 and "unknown option --password" in res.stderr
    res = ctl.run("frobnicate", connect=False)
    assert res.returncode == 2 and 'unknown command "frobnicate"' in res.stderr


# ---- provision / rotate / deprovision --------------------------------------------------------

def test_provision_twice_is_idempotent_and_tenants_are_isolated(pg, usher, ctl):
    pooler = usher()
    first = ctl.ok("provision", "acme", *ctl.tenant_args(pooler))
    assert_reload_reported(first)
    assert "create role acme_user" in first.stdout
    password = ctl.secret("acme_user")
    assert len(password) >= 32 and password not in first.stdout + first.stderr
    secret_file = ctl.secrets / "acme_user.password"
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    verifier = pg.scram_verifier("acme_user")  # PostgreSQL holds the verifier only
    config_after_first = pooler.config_path.read_text()
    assert "[databases.acme_db]" in config_after_first
    assert (ctl.secrets / "acme_user.scram").read_text().strip() == verifier

    second = ctl.ok("provision", "acme", *ctl.tenant_args(pooler), "--json")
    report = json.loads(second.stdout)
    assert report["changed"] is False and report["actions"] == [], report
    assert "password" not in report
    text = ctl.ok("provision", "acme", *ctl.tenant_args(pooler))
    assert "nothing to do: tenant acme is already provisioned" in text.stdout
    assert pooler.config_path.read_text() == config_after_first
    assert ctl.secret("acme_user") == password
    assert pg.scram_verifier("acme_user") == verifier

    ctl.ok("provision", "globex", *ctl.tenant_args(pooler))
    # The reload may be a SIGHUP, which usher handles asynchronously.
    wait_until(lambda: login_works(pooler, "acme_user", "acme_db", password), 10,
               "acme_user to log in through usher")
    wait_until(lambda: login_works(pooler, "globex_user", "globex_db", ctl.secret("globex_user")),
               10, "globex_user to log in through usher")
    # Tenant A cannot reach tenant B's database, directly or through usher.
    with pytest.raises(psycopg.OperationalError, match='permission denied for database "globex_db"'):
        psycopg.connect(pg.conninfo("acme_user", "globex_db", password)).close()
    with pytest.raises(psycopg.OperationalError, match='permission denied for database "globex_db"'):
        pooler.connect("acme_user", "globex_db", password=password).close()

    tenants = json.loads(ctl.ok("tenants", "--config", pooler.config_path, "--secrets-dir",
                                ctl.secrets, "--json").stdout)
    by_db = {t["database"]: t for t in tenants["tenants"]}
    assert by_db["acme_db"]["owner"] == "acme_user" and by_db["acme_db"]["secret_mode_ok"]
    assert by_db["acme_db"]["size_bytes"] > 0


def test_provision_refuses_weak_password(pg, ctl, tmp_path):
    weak = tmp_path / "weak"
    for password, reason in [("6432", "port number"), ("initrode_user", "user name"),
                             ("password", "common passwords"), ("Sh0rt-but-random", None),
                             ("short1", "shorter than 16")]:
        weak.write_text(password)
        res = ctl.run("provision", "initrode", "--secrets-dir", ctl.secrets,
                      "--tenant-password-file", weak)
        if reason is None:  # 16 characters, not in any list: accepted
            assert res.returncode == 0, res.stderr
            ctl.ok("deprovision", "initrode", "--no-backup", "--secrets-dir", ctl.secrets)
            continue
        assert res.returncode == 1, res.stdout + res.stderr
        assert "refusing the password" in res.stderr and reason in res.stderr, res.stderr
        assert not role_exists(pg, "initrode_user")


def test_rotate_then_log_in_with_the_new_password_through_usher(pg, usher, ctl):
    pooler = usher()
    ctl.ok("provision", "hooli", *ctl.tenant_args(pooler))
    old = ctl.secret("hooli_user")
    wait_until(lambda: login_works(pooler, "hooli_user", "hooli_db", old), 10,
               "hooli_user to log in through usher")
    held = pooler.connect("hooli_user", "hooli_db", password=old)
    held.execute("CREATE TABLE t (x int)")
    held.execute("INSERT INTO t VALUES (1)")

    res = ctl.ok("rotate-password", "hooli", *ctl.tenant_args(pooler))
    assert_reload_reported(res)
    new = ctl.secret("hooli_user")
    assert new != old and len(new) >= 32 and new not in res.stdout + res.stderr
    assert stat.S_IMODE((ctl.secrets / "hooli_user.password").stat().st_mode) == 0o600

    wait_until(lambda: login_works(pooler, "hooli_user", "hooli_db", new), 10,
               "hooli_user to log in through usher with the new password")
    assert not login_works(pooler, "hooli_user", "hooli_db", old)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(pg.conninfo("hooli_user", "hooli_db", old)).close()
    # The session opened before the rotation keeps working until it ends.
    assert held.execute("SELECT count(*) FROM t").fetchone() == (1,)
    held.close()

    shown = ctl.ok("rotate-password", "hooli", "--secrets-dir", ctl.secrets, "--show-password")
    assert f"password: {ctl.secret('hooli_user')}" in shown.stdout


def test_provision_with_pgbouncer_ini(pg, usher, ctl):
    pooler = usher(config_format="ini")
    ctl.ok("provision", "vandelay", *ctl.tenant_args(pooler))
    userlist = Path(pooler.config_path.parent / "userlist.txt").read_text()
    verifier = pg.scram_verifier("vandelay_user")
    assert f'"vandelay_user" "{verifier}"' in userlist
    assert "vandelay_db = host=" in pooler.config_path.read_text()
    before = pooler.config_path.read_text(), userlist
    again = ctl.ok("provision", "vandelay", *ctl.tenant_args(pooler))
    assert "nothing to do" in again.stdout
    assert (pooler.config_path.read_text(), Path(pooler.config_path.parent / "userlist.txt")
            .read_text()) == before
    wait_until(lambda: login_works(pooler, "vandelay_user", "vandelay_db",
                                   ctl.secret("vandelay_user")), 10,
               "vandelay_user to log in through usher")


def test_deprovision_needs_a_fresh_backup(pg, usher, ctl):
    pooler = usher()
    ctl.ok("provision", "soylent", *ctl.tenant_args(pooler))
    res = ctl.run("deprovision", "soylent", *ctl.tenant_args(pooler), "--backup-dir", ctl.backups)
    assert res.returncode == 1
    assert "refusing to deprovision soylent: no verified backup of soylent_db" in res.stderr
    assert db_exists(pg, "soylent_db")

    ctl.ok("backup", "soylent_db", "--backup-dir", ctl.backups)
    res = ctl.ok("deprovision", "soylent", *ctl.tenant_args(pooler), "--backup-dir", ctl.backups)
    assert "drop database soylent_db" in res.stdout and "drop role soylent_user" in res.stdout
    assert not db_exists(pg, "soylent_db") and not role_exists(pg, "soylent_user")
    assert "soylent" not in pooler.config_path.read_text()
    assert not (ctl.secrets / "soylent_user.password").exists()
    again = ctl.ok("deprovision", "soylent", "--no-backup", "--secrets-dir", ctl.secrets)
    assert "nothing to do" in again.stdout


def test_reload_through_the_console_or_sighup(pg, usher, ctl):
    pooler = usher()
    res = ctl.ok("reload", "--admin-port", pooler.port)
    assert "usher reloaded (RELOAD through usher's admin console" in res.stdout
    # A console that cannot be reached is named, then SIGHUP does the job.
    dead = harness.free_port()
    reloads = pooler.log().count("configuration reloaded")
    res = ctl.ok("reload", "--admin-port", dead, "--usher-pid", pooler.proc.pid)
    assert f"warning: RELOAD through usher's admin console failed: could not connect to " \
           f"server at 127.0.0.1:{dead}" in res.stderr, res.stderr
    assert f"usher reloaded (SIGHUP to usher pid {pooler.proc.pid})" in res.stdout
    wait_until(lambda: pooler.log().count("configuration reloaded") > reloads, 10,
               "usher to log the SIGHUP reload")
    # A console user usher does not know is refused, clearly.
    res = ctl.run("reload", "--admin-port", pooler.port, "--admin-user", "trading_app_user")
    assert res.returncode == 1
    assert "usher was not reloaded: RELOAD through usher's admin console" in res.stderr, res.stderr
    # Nothing to reach usher with: said so.
    res = ctl.run("reload")
    assert res.returncode == 1 and "no way to reach the running usher" in res.stderr


# ---- backups ---------------------------------------------------------------------------------

def fill(pg, role, db, password, rows=2000):
    with psycopg.connect(pg.conninfo(role, db, password), autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS orders (id int PRIMARY KEY, note text)")
        conn.execute("INSERT INTO orders SELECT g, repeat(md5(g::text), 4) FROM "
                     "generate_series(1, %s) g ON CONFLICT DO NOTHING", (rows,))


def orders(pg, db):
    with pg.admin(db) as conn:
        return conn.execute("SELECT id, note FROM orders ORDER BY id").fetchall()


def backup_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.name.endswith((".dump", ".dump.enc")))


def test_backup_drop_restore_gives_the_same_data(pg, ctl):
    ctl.ok("provision", "umbrella", "--secrets-dir", ctl.secrets)
    fill(pg, "umbrella_user", "umbrella_db", ctl.secret("umbrella_user"))
    before = orders(pg, "umbrella_db")
    res = json.loads(ctl.ok("backup", "umbrella_db", "--backup-dir", ctl.backups, "--json").stdout)
    (entry,) = res["backups"]
    assert entry["ok"] and entry["toc_entries"] > 0 and len(entry["blake2b"]) == 64
    dump = Path(entry["path"])
    assert stat.S_IMODE(dump.stat().st_mode) == 0o600
    manifest = json.loads(Path(str(dump) + ".json").read_text())
    assert manifest["size"] == dump.stat().st_size and manifest["owner"] == "umbrella_user"
    listing = json.loads(ctl.ok("backups", "--backup-dir", ctl.backups, "--json",
                                connect=False).stdout)
    assert [(b["database"], b["verified"]) for b in listing["backups"]] == [("umbrella_db", True)]

    with pg.admin() as conn:
        conn.execute("DROP DATABASE umbrella_db WITH (FORCE)")
    res = ctl.ok("restore", dump, "--to", "umbrella_db", "--backup-dir", ctl.backups)
    assert "checksum verified" in res.stdout and "created database umbrella_db" in res.stdout
    assert orders(pg, "umbrella_db") == before
    # The tenant isolation a dump does not carry is put back.
    with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
        psycopg.connect(pg.conninfo("trading_app_user", "umbrella_db")).close()
    with psycopg.connect(pg.conninfo("umbrella_user", "umbrella_db",
                                     ctl.secret("umbrella_user"))) as conn:
        assert conn.execute("SELECT count(*) FROM orders").fetchone() == (len(before),)

    # Restoring over the live database (by database name: its newest verified backup).
    with pg.admin("umbrella_db") as conn:
        conn.execute("DELETE FROM orders WHERE id > 10")
    ctl.ok("restore", "umbrella_db", "--to", "umbrella_db", "--backup-dir", ctl.backups)
    assert orders(pg, "umbrella_db") == before


def test_restore_refuses_a_corrupt_backup(pg, ctl):
    ctl.ok("provision", "wonka", "--secrets-dir", ctl.secrets)
    fill(pg, "wonka_user", "wonka_db", ctl.secret("wonka_user"))
    ctl.ok("backup", "wonka_db", "--backup-dir", ctl.backups)
    (dump,) = backup_files(ctl.backups)
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0xFF
    dump.write_bytes(bytes(data))
    with pg.admin("wonka_db") as conn:
        conn.execute("CREATE TABLE marker (x int)")
    res = ctl.run("restore", dump, "--to", "wonka_db", "--backup-dir", ctl.backups)
    assert res.returncode == 1
    assert "refusing to restore: checksum mismatch" in res.stderr, res.stderr
    assert "nothing was restored" in res.stderr
    with pg.admin("wonka_db") as conn:  # untouched: --clean would have dropped nothing else
        conn.execute("SELECT * FROM marker")
    verify = ctl.run("backups", "--backup-dir", ctl.backups, "--verify", connect=False)
    assert verify.returncode == 3 and "UNVERIFIED" in verify.stdout
    # A dump without its manifest was never verified: refused too.
    Path(str(dump) + ".json").unlink()
    res = ctl.run("restore", dump, "--to", "wonka_db", "--backup-dir", ctl.backups)
    assert res.returncode == 1 and "no manifest" in res.stderr


def test_encrypted_backup_round_trip(pg, ctl, tmp_path):
    ctl.ok("provision", "tyrell", "--secrets-dir", ctl.secrets)
    fill(pg, "tyrell_user", "tyrell_db", ctl.secret("tyrell_user"), rows=500)
    before = orders(pg, "tyrell_db")
    key = tmp_path / "backup.key"
    key.write_bytes(os.urandom(32))
    key.chmod(0o600)
    ctl.ok("backup", "tyrell", "--backup-dir", ctl.backups, "--encrypt-key-file", key,
           "--config", write_min_config(tmp_path, pg, ["tyrell_db"]))
    (dump,) = backup_files(ctl.backups)
    assert dump.name.endswith(".dump.enc") and dump.read_bytes().startswith(b"USHERENC1\n")
    assert b"PGDMP" not in dump.read_bytes()
    res = ctl.run("restore", dump, "--to", "tyrell_copy", "--backup-dir", ctl.backups)
    assert res.returncode == 1 and "is encrypted: pass --encrypt-key-file" in res.stderr
    other = tmp_path / "other.key"
    other.write_bytes(os.urandom(32))
    res = ctl.run("restore", dump, "--to", "tyrell_copy", "--encrypt-key-file", other)
    assert res.returncode == 1 and "decryption failed" in res.stderr and "nothing was restored" \
        in res.stderr
    assert not db_exists(pg, "tyrell_copy")
    ctl.ok("restore", dump, "--to", "tyrell_copy", "--encrypt-key-file", key)
    assert orders(pg, "tyrell_copy") == before
    with pg.admin() as conn:
        conn.execute("DROP DATABASE tyrell_copy")


def write_min_config(tmp_path, pg, databases) -> Path:
    """A usher.toml listing `databases` (for commands that take tenants from the config)."""
    path = tmp_path / "usher-min.toml"
    lines = ["[usher]", 'auth_type = "trust"', ""]
    for db in databases:
        lines += [f"[databases.{db}]", f'host = "{pg.host}"', f"port = {pg.port}", ""]
    path.write_text("\n".join(lines))
    return path


FAKE_DUMPS = {
    # pg_dump dies halfway with an error status.
    "exits-1": 'pg_dump "$@" | head -c 20000\nexit 1\n',
    # The stream is cut short but the exit status claims success: only reading it back tells.
    "truncated": 'pg_dump "$@" | head -c 20000\nexit 0\n',
    # Killed mid-stream.
    "killed": 'pg_dump "$@" | head -c 20000\nkill -9 $$\n',
}


def test_failed_dump_leaves_the_previous_good_backup(pg, ctl, tmp_path):
    ctl.ok("provision", "cyberdyne", "--secrets-dir", ctl.secrets)
    fill(pg, "cyberdyne_user", "cyberdyne_db", ctl.secret("cyberdyne_user"), rows=3000)
    ctl.ok("backup", "cyberdyne_db", "--backup-dir", ctl.backups)
    (good,) = backup_files(ctl.backups)
    assert good.stat().st_size > 40000  # the fakes cut it at 20000 bytes
    good_bytes = good.read_bytes()
    for name, script in FAKE_DUMPS.items():
        fake = tmp_path / f"pg_dump-{name}"
        fake.write_text("#!/bin/sh\n" + script)
        fake.chmod(0o755)
        res = ctl.run("backup", "cyberdyne_db", "--backup-dir", ctl.backups, "--pg-dump", fake)
        assert res.returncode == 1, f"{name}: {res.stdout}{res.stderr}"
        assert "backup of cyberdyne_db FAILED" in res.stderr and "no backup was replaced" \
            in res.stderr, res.stderr
        expected = {"exits-1": "exited with status 1", "truncated": "does not read back",
                    "killed": "killed by signal 9"}[name]
        assert expected in res.stderr, f"{name}: {res.stderr}"
        assert backup_files(ctl.backups) == [good], name
        assert good.read_bytes() == good_bytes
        assert not [p for p in ctl.backups.iterdir() if p.name.endswith(".partial")]
    ctl.ok("backups", "--backup-dir", ctl.backups, "--verify", connect=False)


def test_retention_keeps_the_newest_of_each_day(pg, ctl):
    ctl.ok("provision", "stark", "--secrets-dir", ctl.secrets)
    ctl.ok("backup", "stark_db", "--backup-dir", ctl.backups)
    ctl.ok("backup", "stark_db", "--backup-dir", ctl.backups)
    assert len(backup_files(ctl.backups)) == 2
    res = ctl.ok("backup", "stark_db", "--backup-dir", ctl.backups, "--keep-daily", "1",
                 "--keep-weekly", "1", "--json")
    (entry,) = json.loads(res.stdout)["backups"]
    assert len(entry["pruned"]) == 2
    assert backup_files(ctl.backups) == [Path(entry["path"])]


def test_compose_backup_is_refused_clearly_without_docker(pg, ctl):
    # No Docker here: the argv is unit-tested; this checks the failure is clean and explicit.
    res = ctl.run("backup", "trading_db", "--backup-dir", ctl.backups, "--compose-service",
                  "postgres", "--docker", "/nonexistent/docker")
    assert res.returncode == 1 and "cannot run /nonexistent/docker" in res.stderr, res.stderr
    assert backup_files(ctl.backups) == []


# ---- audit and check -------------------------------------------------------------------------

def test_audit_finds_the_port_number_password(pg, ctl):
    with pg.admin() as conn:
        conn.execute("CREATE ROLE legacy_trader LOGIN PASSWORD '6432'")
    leaked = ctl.secrets / "leaked.password"
    leaked.write_text("x")
    leaked.chmod(0o644)
    try:
        res = ctl.run("audit", "--secrets-dir", ctl.secrets, "--json")
        assert res.returncode == 3, res.stderr
        report = json.loads(res.stdout)
        weak = {f["subject"]: f for f in report["findings"] if f["kind"] == "weak-password"}
        assert "legacy_trader" in weak, report
        assert "is a port number" in weak["legacy_trader"]["message"]
        assert "6432" not in res.stdout  # the password itself only with --show-password
        for strong in ("platform_admin", "trading_app_user", "librarian_user"):
            assert strong not in weak
        modes = [f for f in report["findings"] if f["kind"] == "secret-file-mode"]
        assert [f["subject"] for f in modes] == [str(leaked)]
        shown = ctl.run("audit", "--secrets-dir", ctl.secrets, "--show-password")
        assert 'legacy_trader\'s password is a port number ("6432")' in shown.stdout
    finally:
        with pg.admin() as conn:
            conn.execute("DROP ROLE legacy_trader")


def test_check_reports_the_missing_vector_extension(pg, ctl):
    res = ctl.run("check", "--only", "extensions", "--vector-db", "trading_db", "--json")
    assert res.returncode == 3, res.stderr
    (check,) = json.loads(res.stdout)["checks"]
    assert check["name"] == "extensions" and check["status"] == "FAIL"
    assert "the vector extension (pgvector) is not installed" in check["reason"]
    text = ctl.run("check", "--only", "extensions", "--vector-db", "trading_db")
    assert "FAIL  extensions: the vector extension (pgvector) is not installed" in text.stdout
    assert "Traceback" not in text.stderr and "terminate" not in text.stderr


def test_check_pools_through_the_console(pg, usher, ctl):
    pooler = usher()
    with pooler.connect("trading_app_user", "trading_db") as conn:
        conn.execute("SELECT 1")
        res = ctl.run("check", "--only", "pools", "--config", pooler.config_path,
                      "--expect-pools", "trading_db", "--admin-port", pooler.port, "--json")
    (check,) = json.loads(res.stdout)["checks"]
    assert res.returncode == 0 and check["status"] == "PASS", check
    assert any(e.startswith("trading_db/trading_app_user:") for e in check["evidence"])
    # A pool nobody has used is missing, and the check says what that means.
    res = ctl.run("check", "--only", "pools", "--config", pooler.config_path,
                  "--admin-port", pooler.port)
    assert res.returncode == 3
    assert "FAIL  pools: no pool for librarian_db in SHOW POOLS" in res.stdout, res.stdout


def test_bench_through_usher_and_direct(pg, usher, ctl):
    pooler = usher()
    try:
        res = ctl.run("bench", "--scratch-db", "trading_db", "--config", pooler.config_path,
                      "--pooler-port", pooler.port, "--compare-direct", "--time", "2",
                      "--clients", "2", "--json")
        assert res.returncode in (0, 3), res.stderr  # 3: outside the 500-1500 TPS baseline
        report = json.loads(res.stdout)
        assert [r["target"].split(" ")[0] for r in report["runs"]] == ["through", "direct"]
        for run in report["runs"]:
            assert run["ok"], run
            assert run["tps"] > 0 and run["transactions"] > 0
            assert run["verdict"] in ("below", "healthy", "above")
        assert report["ok"] == (res.returncode == 0)
    finally:
        with pg.admin("trading_db") as conn:
            for t in ("pgbench_accounts", "pgbench_branches", "pgbench_history",
                      "pgbench_tellers"):
                conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(t)))
