"""Integration-test harness: a throwaway PostgreSQL 15, the pooler under test, and client helpers.

Nothing here sleeps to wait for something that can be awaited: every wait polls with a deadline.
The pooler under test is usher by default; USHER_TEST_TARGET=pgbouncer runs the same suite against
Debian's PgBouncer (a development aid for validating the tests themselves).
"""

from __future__ import annotations

import atexit
import errno
import glob
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

REPO_ROOT = Path(__file__).resolve().parents[2]
PG_BINDIR = Path(os.environ.get("PG_BINDIR", "/usr/lib/postgresql/15/bin"))
TEST_OS_USER = "usher-test"
TENANTS = {
    # role -> database it owns (None: no database)
    "platform_admin": None,
    "trading_app_user": "trading_db",
    "librarian_user": "librarian_db",
}
TMP_PREFIX = "usher-it-"


class HarnessError(Exception):
    """Something the harness needs is missing or broken; the message says what to do."""


def target() -> str:
    value = os.environ.get("USHER_TEST_TARGET", "usher")
    if value not in ("usher", "pgbouncer"):
        raise HarnessError(f"USHER_TEST_TARGET={value!r}: expected 'usher' or 'pgbouncer'")
    return value


def require_file(path: Path | str, what: str, install_hint: str) -> Path:
    p = Path(path)
    if not (p.is_file() and os.access(p, os.X_OK)):
        raise HarnessError(f"{what} not found at {p}: {install_hint}")
    return p


def require_tool(name: str, package: str) -> str:
    found = shutil.which(name) or (str(PG_BINDIR / name) if (PG_BINDIR / name).exists() else None)
    if not found:
        raise HarnessError(f"`{name}` not found on PATH: apt-get install {package}")
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.05):
    """Poll predicate until it returns a truthy value; raise TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - remembered for the timeout message
            last_exc = exc
        if time.monotonic() >= deadline:
            suffix = f" (last error: {last_exc!r})" if last_exc else ""
            raise TimeoutError(f"timed out after {timeout:.1f}s waiting for {what}{suffix}")
        time.sleep(interval)


def port_accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for client tools: no stray PG* variables from the caller's shell."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.setdefault("LC_ALL", "C.UTF-8")
    env["PGCONNECT_TIMEOUT"] = "10"
    env.update(extra)
    return env


# --------------------------------------------------------------------------------------------
# Running things as the unprivileged user


@dataclass
class OsUser:
    """Who runs PostgreSQL (and PgBouncer, which also refuses root)."""

    name: str
    uid: int
    gid: int
    switch: bool  # True when we are root and must drop privileges

    @classmethod
    def ensure(cls) -> "OsUser":
        if os.geteuid() != 0:
            pw = pwd.getpwuid(os.geteuid())
            return cls(pw.pw_name, pw.pw_uid, pw.pw_gid, False)
        try:
            pw = pwd.getpwnam(TEST_OS_USER)
        except KeyError:
            useradd = shutil.which("useradd") or "/usr/sbin/useradd"
            res = subprocess.run(
                [useradd, "--system", "--create-home", "--shell", "/usr/sbin/nologin", TEST_OS_USER],
                capture_output=True, text=True)
            # 9 = already exists (a concurrent run created it first).
            if res.returncode not in (0, 9):
                raise HarnessError(f"useradd {TEST_OS_USER} failed: {res.stderr.strip()}")
            pw = pwd.getpwnam(TEST_OS_USER)
        if not shutil.which("setpriv"):
            raise HarnessError("`setpriv` not found: apt-get install util-linux")
        return cls(pw.pw_name, pw.pw_uid, pw.pw_gid, True)

    def argv(self, argv: list[str]) -> list[str]:
        if not self.switch:
            return argv
        # setpriv execs in place (no fork), so the pid we get is the program's and signals reach it.
        return ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--init-groups",
                "--reset-env", "--"] + argv

    def chown(self, path: Path | str) -> None:
        if self.switch:
            os.chown(path, self.uid, self.gid)


# --------------------------------------------------------------------------------------------
# PostgreSQL


@dataclass
class PgCluster:
    base: Path
    port: int
    os_user: OsUser
    passwords: dict[str, str] = field(default_factory=dict)
    host: str = "127.0.0.1"
    _running: bool = False

    @property
    def datadir(self) -> Path:
        return self.base / "data"

    @property
    def sockdir(self) -> Path:
        return self.base / "sock"

    @property
    def logfile(self) -> Path:
        return self.base / "postgres.log"

    def _run(self, argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
        res = subprocess.run(self.os_user.argv(argv), cwd=self.base, capture_output=True, text=True,
                             stdin=subprocess.DEVNULL, timeout=timeout,
                             env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8"})
        if res.returncode != 0:
            raise HarnessError(f"{' '.join(argv)} failed ({res.returncode}):\n{res.stdout}{res.stderr}"
                               + self.log_tail())
        return res

    def log_tail(self, n: int = 30, header: bool = True) -> str:
        try:
            lines = self.logfile.read_text(errors="replace").splitlines()[-n:]
            return ("\n--- postgres.log (tail) ---\n" if header else "") + "\n".join(lines)
        except OSError:
            return ""

    @classmethod
    def create(cls) -> "PgCluster":
        for tool in ("initdb", "pg_ctl", "postgres"):
            require_file(PG_BINDIR / tool, f"PostgreSQL 15 `{tool}`",
                         "apt-get install postgresql-15 (or set PG_BINDIR)")
        reap_stale_clusters()
        os_user = OsUser.ensure()
        base = Path(tempfile.mkdtemp(prefix=TMP_PREFIX))
        os.chmod(base, 0o755)
        os_user.chown(base)
        (base / "owner.pid").write_text(str(os.getpid()))
        cluster = cls(base=base, port=free_port(), os_user=os_user)
        cluster.sockdir.mkdir(mode=0o755)
        os_user.chown(cluster.sockdir)
        return cluster

    def init_and_start(self) -> None:
        self._run([str(PG_BINDIR / "initdb"), "-D", str(self.datadir), "-U", "postgres",
                   "--auth-local=trust", "--auth-host=scram-sha-256", "--encoding=UTF8",
                   "--locale=C", "--no-sync", "--no-instructions"])
        (self.datadir / "pg_hba.conf").write_text(
            "# written by tests/integration/harness.py\n"
            "local all all trust\n"
            "host  all all 127.0.0.1/32 scram-sha-256\n"
            "host  all all ::1/128      scram-sha-256\n")
        with open(self.datadir / "postgresql.conf", "a") as conf:
            conf.write(
                "\n# usher integration tests\n"
                "listen_addresses = '127.0.0.1'\n"
                f"port = {self.port}\n"
                f"unix_socket_directories = '{self.sockdir}'\n"
                "max_connections = 200\n"
                "password_encryption = 'scram-sha-256'\n"
                "fsync = off\n"
                "synchronous_commit = off\n"
                "full_page_writes = off\n"
                "log_min_messages = warning\n"
                "log_line_prefix = '%m [%p] %u@%d '\n")
        atexit.register(self.stop)
        self._running = True
        self._run([str(PG_BINDIR / "pg_ctl"), "-D", str(self.datadir), "-l", str(self.logfile),
                   "-w", "-t", "60", "start"])

    def stop(self) -> None:
        if not self._running:
            return
        self._running = False
        try:
            self._run([str(PG_BINDIR / "pg_ctl"), "-D", str(self.datadir), "-m", "immediate",
                       "-w", "-t", "30", "stop"], timeout=60)
        except (HarnessError, subprocess.TimeoutExpired):
            pass

    def remove(self) -> None:
        if os.environ.get("USHER_TEST_KEEP"):
            return
        shutil.rmtree(self.base, ignore_errors=True)

    # -- connections -----------------------------------------------------------------------

    def admin_conninfo(self, dbname: str = "postgres") -> str:
        """Superuser over the Unix socket (trust): for setup and observation only."""
        return f"host={self.sockdir} port={self.port} user=postgres dbname={dbname}"

    def admin(self, dbname: str = "postgres"):
        import psycopg
        return psycopg.connect(self.admin_conninfo(dbname), autocommit=True)

    def conninfo(self, user: str, dbname: str, password: str | None = None) -> str:
        """A direct TCP connection as a tenant, with SCRAM, as an application would make it."""
        pw = self.passwords[user] if password is None else password
        return f"host={self.host} port={self.port} user={user} dbname={dbname} password={pw}"

    def connect(self, user: str, dbname: str, **kwargs):
        import psycopg
        kwargs.setdefault("autocommit", True)
        return psycopg.connect(self.conninfo(user, dbname), **kwargs)

    def scram_verifier(self, role: str) -> str:
        with self.admin() as conn:
            row = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,)).fetchone()
        assert row and row[0].startswith("SCRAM-SHA-256$"), f"no SCRAM verifier for {role}: {row}"
        return row[0]

    def create_tenants(self) -> None:
        from psycopg import sql
        self.passwords = {role: secrets.token_hex(16) for role in TENANTS}
        with self.admin() as conn:
            for role in TENANTS:
                attrs = sql.SQL("SUPERUSER LOGIN") if role == "platform_admin" else sql.SQL("LOGIN")
                conn.execute(sql.SQL("CREATE ROLE {} {} PASSWORD {}").format(
                    sql.Identifier(role), attrs, sql.Literal(self.passwords[role])))
            for role, db in TENANTS.items():
                if db is None:
                    continue
                conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(db), sql.Identifier(role)))
                conn.execute(sql.SQL("REVOKE CONNECT ON DATABASE {} FROM PUBLIC").format(
                    sql.Identifier(db)))

    def backends(self, usename: str, datname: str) -> list[tuple]:
        """Client backends of usename on datname: (pid, state, client_port)."""
        with self.admin() as conn:
            return conn.execute(
                "SELECT pid, state, client_port FROM pg_stat_activity"
                " WHERE usename = %s AND datname = %s AND backend_type = 'client backend'",
                (usename, datname)).fetchall()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM
    return True


def reap_stale_clusters() -> None:
    """Stop clusters left behind by a test run that was killed (its owner pid is gone)."""
    for owner in glob.glob(os.path.join(tempfile.gettempdir(), TMP_PREFIX + "*", "owner.pid")):
        base = Path(owner).parent
        try:
            pid = int(Path(owner).read_text().strip() or 0)
        except (OSError, ValueError):
            continue
        if pid and _pid_alive(pid):
            continue
        pidfile = base / "data" / "postmaster.pid"
        try:
            postmaster = int(pidfile.read_text().splitlines()[0])
            os.kill(postmaster, signal.SIGQUIT)  # immediate shutdown
        except (OSError, ValueError, IndexError):
            pass
        shutil.rmtree(base, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# The pooler under test


def usher_binary() -> Path:
    path = Path(os.environ.get("USHER_BIN", REPO_ROOT / "build" / "src" / "usher"))
    return require_file(path, "usher binary",
                        "build it with ./dev/setup (meson setup build --wrap-mode=nodownload && "
                        "ninja -C build) or point USHER_BIN at it")


def pgbouncer_binary() -> Path:
    return require_file(os.environ.get("PGBOUNCER_BIN", "/usr/sbin/pgbouncer"), "pgbouncer",
                        "apt-get install pgbouncer (or set PGBOUNCER_BIN)")


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(str(value))  # a TOML basic string for everything we write


def ini_value(value) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def quote_userlist(s: str) -> str:
    return '"' + s.replace('"', '""') + '"'


@dataclass
class Pooler:
    """One running usher (or PgBouncer) instance, started by the `usher` fixture."""

    kind: str
    port: int
    workdir: Path
    config_path: Path
    log_path: Path
    pg: PgCluster
    argv: list[str]
    host: str = "127.0.0.1"
    proc: subprocess.Popen | None = None
    died_early: int | None = None
    final_log: str | None = None  # the log as it was at stop(), kept after the files are gone

    @property
    def is_usher(self) -> bool:
        return self.kind == "usher"

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError as exc:
            return self.final_log if self.final_log is not None else f"(no log: {exc})"

    def start(self, timeout: float = 15) -> None:
        logf = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=logf,
                                         stderr=subprocess.STDOUT, cwd=self.workdir,
                                         start_new_session=True)
        finally:
            logf.close()

        def ready():
            if self.proc.poll() is not None:
                raise HarnessError(f"{self.kind} exited with code {self.proc.returncode} before "
                                   f"accepting connections on port {self.port}.\n"
                                   f"--- {self.kind} log ---\n{self.log()}")
            return port_accepts(self.host, self.port)

        try:
            wait_until(ready, timeout, f"{self.kind} to accept connections on port {self.port}")
        except HarnessError:
            raise
        except TimeoutError as exc:
            self.stop()
            raise HarnessError(f"{exc}\n--- {self.kind} log ---\n{self.log()}") from None

    def stop(self, grace: float = 5) -> None:
        """SIGINT, then SIGKILL after `grace` seconds. Remembers whether it had died on its own."""
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        if proc.poll() is not None:
            self.died_early = proc.returncode
            self.final_log = self.log()
            return
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with open(self.log_path, "a") as f:
                f.write(f"\n[harness] {self.kind} still running {grace}s after SIGINT: SIGKILL\n")
            proc.kill()
            proc.wait(timeout=10)
        self.final_log = self.log()

    def signal_and_wait(self, sig: int, timeout: float) -> int | None:
        """Send sig; return the exit status if the process exits within timeout, else None
        (the process is then left to the fixture's teardown)."""
        assert self.proc is not None, f"{self.kind} is not running"
        self.proc.send_signal(sig)
        try:
            status = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        self.proc = None
        self.final_log = self.log()
        return status

    # -- client side -----------------------------------------------------------------------

    def conninfo(self, user: str = "trading_app_user", dbname: str = "trading_db",
                 password: str | None = None) -> str:
        pw = self.pg.passwords[user] if password is None else password
        return f"host={self.host} port={self.port} user={user} dbname={dbname} password={pw}"

    def connect(self, user: str = "trading_app_user", dbname: str = "trading_db",
                password: str | None = None, **kwargs):
        """A psycopg connection through the pooler. Server-side prepared statements are off by
        default (prepare_threshold=None) so tests control when they happen; the prepared-statement
        suites (test_prepared_*.py) turn them on."""
        import psycopg
        kwargs.setdefault("autocommit", True)
        kwargs.setdefault("prepare_threshold", None)
        return psycopg.connect(self.conninfo(user, dbname, password), **kwargs)


def write_pooler_config(kind: str, workdir: Path, pg: PgCluster, port: int, *,
                        config_format: str = "toml", pool_size: int = 2,
                        userlist: dict[str, str] | None = None, **settings) -> Path:
    """Write usher.toml (or pgbouncer.ini + userlist.txt) for the tenants of `pg`.

    `settings` override keys of the [usher]/[pgbouncer] section. `userlist` replaces the secrets
    (user -> plaintext, md5... or SCRAM-SHA-256$... verifier) in the auth file / password files.
    """
    secrets_map = dict(pg.passwords) if userlist is None else dict(userlist)
    if kind == "pgbouncer":
        config_format = "ini"
    base = {
        "listen_addr": "127.0.0.1",
        "listen_port": port,
        "auth_type": "scram-sha-256",
        "admin_users": ["platform_admin"],
        "pool_mode": "transaction",
        "default_pool_size": 20,
        "max_client_conn": 1000,
        "query_wait_timeout": 10,
        "server_connect_timeout": 5,
    }
    base.update(settings)
    databases = {db: {"host": pg.host, "port": pg.port, "dbname": db, "pool_size": pool_size}
                 for db in TENANTS.values() if db}

    if config_format == "toml":
        secret_dir = workdir / "secrets"
        secret_dir.mkdir(mode=0o700, exist_ok=True)
        lines = ["# written by tests/integration/harness.py", "[usher]"]
        lines += [f"{k} = {toml_value(v)}" for k, v in base.items()]
        for name, db in databases.items():
            lines += ["", f"[databases.{name}]"] + [f"{k} = {toml_value(v)}" for k, v in db.items()]
        for user, secret in secrets_map.items():
            f = secret_dir / user
            f.write_text(secret)
            f.chmod(0o600)
            lines += ["", f"[users.{user}]", f"password_file = {toml_value(str(f))}"]
        path = workdir / "usher.toml"
        path.write_text("\n".join(lines) + "\n")
        return path

    if config_format != "ini":
        raise ValueError(f"config_format must be 'toml' or 'ini', not {config_format!r}")
    userlist_path = workdir / "userlist.txt"
    userlist_path.write_text("".join(f"{quote_userlist(u)} {quote_userlist(s)}\n"
                                     for u, s in secrets_map.items()))
    userlist_path.chmod(0o600)
    base.setdefault("auth_file", str(userlist_path))
    base.setdefault("unix_socket_dir", "")  # PgBouncer's default is /tmp; no Unix socket here
    lines = ["; written by tests/integration/harness.py", "[databases]"]
    for name, db in databases.items():
        lines.append(f"{name} = " + " ".join(f"{k}={v}" for k, v in db.items()))
    lines += ["", "[pgbouncer]"] + [f"{k} = {ini_value(v)}" for k, v in base.items()]
    path = workdir / "pgbouncer.ini"
    path.write_text("\n".join(lines) + "\n")
    return path


def make_pooler(pg: PgCluster, workdir: Path, **overrides) -> Pooler:
    kind = target()
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = write_pooler_config(kind, workdir, pg, port, **overrides)
    if kind == "usher":
        argv = [str(usher_binary()), str(config)]
    else:
        # PgBouncer refuses to run as root: run it as the test user, who must read its files.
        os.chmod(workdir, 0o755)
        for p in [workdir, *workdir.rglob("*")]:
            pg.os_user.chown(p)
        argv = pg.os_user.argv([str(pgbouncer_binary()), str(config)])
    return Pooler(kind=kind, port=port, workdir=workdir, config_path=config,
                  log_path=workdir / f"{kind}.log", pg=pg, argv=argv)


# --------------------------------------------------------------------------------------------
# Client tools


def psql(port: int, user: str, dbname: str, password: str, *args: str, input: str | None = None,
         host: str = "127.0.0.1", timeout: float = 120) -> subprocess.CompletedProcess:
    """psql -X (no psqlrc) with PGPASSWORD; returns the CompletedProcess (text)."""
    exe = require_tool("psql", "postgresql-client-15")
    return subprocess.run([exe, "-X", "-h", host, "-p", str(port), "-U", user, "-d", dbname, *args],
                          input=input, capture_output=True, text=True, timeout=timeout,
                          env=clean_env(PGPASSWORD=password))


def pgbench(port: int, user: str, dbname: str, password: str, *args: str,
            host: str = "127.0.0.1", timeout: float = 120) -> subprocess.CompletedProcess:
    exe = require_tool("pgbench", "postgresql-15 (pgbench)")
    return subprocess.run([exe, "-h", host, "-p", str(port), "-U", user, *args, dbname],
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                          env=clean_env(PGPASSWORD=password))


class ServerConnectionWatch:
    """Polls pg_stat_activity (directly, as superuser) in a thread; records the peak number of
    backends of one user on one database."""

    def __init__(self, pg, user, dbname):
        self.pg, self.user, self.dbname = pg, user, dbname
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.error: Exception | None = None

    def _run(self):
        try:
            with self.pg.admin() as conn:
                while not self._stop.is_set():
                    (n,) = conn.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE usename = %s AND datname = %s"
                        " AND backend_type = 'client backend'", (self.user, self.dbname)).fetchone()
                    self.peak = max(self.peak, n)
                    self.samples += 1
                    self._stop.wait(0.02)
        except Exception as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    def __enter__(self):
        wait_until(lambda: not self.pg.backends(self.user, self.dbname), 10,
                   f"no leftover backends of {self.user} on {self.dbname}")
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=10)


def connect_when_slot_free(pooler, timeout: float = 5, **kwargs):
    """Connect through the pooler, retrying while max_client_conn still counts a connection that
    has just closed (the readiness probe, a previous test step): the slot frees within a loop
    iteration of the pooler seeing the close."""
    import psycopg
    box = {}

    def attempt():
        try:
            box["conn"] = pooler.connect(**kwargs)
            return True
        except psycopg.OperationalError as exc:
            if "max_client_conn" not in str(exc):
                raise
            return False

    wait_until(attempt, timeout, "a free max_client_conn slot")
    return box["conn"]
