"""The system under test: a throwaway PostgreSQL 15, usher and PgBouncer with the same pool settings.

Built on tests/integration/harness.py (imported, not copied): initdb as the unprivileged user,
free ports, config writers for usher.toml and pgbouncer.ini. What this adds for benchmarking:
room for 200 direct clients, SCRAM verifiers copied from pg_authid in both poolers' auth files
(the production setup: neither pooler knows a plaintext password, both log in to PostgreSQL by
pass-through), connection logging off in both, and /proc readings of a running pooler.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "tests" / "integration"))

import harness  # noqa: E402  (tests/integration/harness.py)

USER, DB = "trading_app_user", "trading_db"
POOL_SIZE = 20


class BenchError(Exception):
    """Something the benchmark needs is missing or broken; the message says what to do."""


def raise_fd_limit(wanted: int) -> int:
    """Raise RLIMIT_NOFILE for this process and its children (the poolers inherit it).

    Root may raise the hard limit too, up to fs.nr_open. Returns the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return soft
    if hard < wanted and os.geteuid() == 0:
        try:
            nr_open = int(Path("/proc/sys/fs/nr_open").read_text())
        except (OSError, ValueError):
            nr_open = wanted
        hard = min(max(hard, wanted), nr_open)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
            return min(wanted, hard)
        except (ValueError, OSError):
            # Root without CAP_SYS_RESOURCE (a container): the hard limit stands.
            hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    new_soft = min(wanted, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (new_soft, hard))
    return new_soft


# --------------------------------------------------------------------------------------------
# /proc readings of one process (all its threads)


def _utime_stime(stat_path: Path) -> tuple[int, int]:
    """utime, stime (clock ticks) from a /proc/.../stat line (fields 14 and 15)."""
    stat = stat_path.read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return int(fields[11]), int(fields[12])


@dataclass
class ProcSample:
    utime_ticks: int
    stime_ticks: int
    run_ns: int           # sum of /proc/PID/task/*/schedstat: on-CPU time, ns resolution
    voluntary_switches: int  # times a thread blocked (in epoll_wait, mostly): wakeups
    rss_kb: int
    # Per thread (tid -> utime + stime ticks, /proc/PID/task/TID/stat): which threads did the
    # work. usher's worker 0 is the main thread, workers 1.. are threads of their own.
    thread_ticks: dict[int, int] = field(default_factory=dict)

    @property
    def cpu_seconds(self) -> float:
        return (self.utime_ticks + self.stime_ticks) / os.sysconf("SC_CLK_TCK")


def proc_sample(pid: int) -> ProcSample:
    utime, stime = _utime_stime(Path(f"/proc/{pid}/stat"))
    run_ns = 0
    switches = 0
    threads: dict[int, int] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            u, s = _utime_stime(task / "stat")
            run_ns += int((task / "schedstat").read_text().split()[0])
            for line in (task / "status").read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches:"):
                    switches += int(line.split()[1])
            threads[int(task.name)] = u + s
        except (OSError, ValueError, IndexError):
            continue  # a thread that exited between listing and reading
    return ProcSample(utime, stime, run_ns, switches, rss_kb(pid), threads)


def thread_cpu_seconds(before: ProcSample, after: ProcSample) -> list[float]:
    """CPU seconds each thread used between two samples, busiest first (threads born in
    between count from 0)."""
    tick = os.sysconf("SC_CLK_TCK")
    return sorted(((t - before.thread_ticks.get(tid, 0)) / tick
                   for tid, t in after.thread_ticks.items()), reverse=True)


def run_ns_total(pid: int) -> int:
    """On-CPU nanoseconds of all threads of pid (schedstat): cheap enough to poll every 0.2 s."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return total


def process_tree_ticks(root: int) -> int:
    """utime+stime of `root` and its live children, plus what its reaped children used
    (cutime+cstime): PostgreSQL's whole CPU when root is the postmaster, backends that exited
    during a run (pgbench -C) included."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2:].split()
        pid, ppid = int(stat.parent.name), int(fields[1])
        if pid == root:
            total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
        elif ppid == root:
            total += int(fields[11]) + int(fields[12])
    return total


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise BenchError(f"no VmRSS in /proc/{pid}/status")


# --------------------------------------------------------------------------------------------
# The stack


class Stack:
    """PostgreSQL plus the poolers. Use as a context manager; everything is torn down on exit.

    Pooler targets: `pgbouncer`, `usher` (workers = usher_workers, 1 by default: one core, as
    PgBouncer) and `usher2` (the same usher binary and settings with workers = multi_workers, 2
    by default): the multi-core comparison."""

    def __init__(self, *, max_client_conn: int = 1000, usher_workers: int = 1,
                 multi_workers: int = 2,
                 keep: bool = False, pg_max_connections: int = 300,
                 extra_settings: dict[str, dict] | None = None):
        self.max_client_conn = max_client_conn
        self.usher_workers = usher_workers
        self.multi_workers = multi_workers
        self.keep = keep
        self.pg_max_connections = pg_max_connections
        self.extra_settings = extra_settings or {}  # kind -> {key: value}, for experiments
        self.pg: harness.PgCluster | None = None
        self.poolers: dict[str, harness.Pooler] = {}
        self.workdir = Path(tempfile.mkdtemp(prefix="usher-bench-"))
        os.chmod(self.workdir, 0o755)
        self.verifiers: dict[str, str] = {}
        self._generation = 0

    # -- PostgreSQL -------------------------------------------------------------------------

    def start_postgres(self) -> harness.PgCluster:
        pg = harness.PgCluster.create()
        self.pg = pg
        pg.init_and_start()
        # 200 direct pgbench clients + 20 servers per pooler + the observer: more than the
        # harness's 200.
        with open(pg.datadir / "postgresql.conf", "a") as conf:
            conf.write("\n# usher bench\n"
                       f"max_connections = {self.pg_max_connections}\n"
                       "shared_buffers = '256MB'\n")
        pg._run([str(harness.PG_BINDIR / "pg_ctl"), "-D", str(pg.datadir), "-l", str(pg.logfile),
                 "-m", "fast", "-w", "-t", "60", "restart"])
        pg.create_tenants()
        self.verifiers = {role: pg.scram_verifier(role) for role in harness.TENANTS}
        return pg

    def postgres_cpu_seconds(self) -> float | None:
        """All of PostgreSQL's CPU time so far (postmaster, backends, background processes)."""
        try:
            postmaster = int((self.pg.datadir / "postmaster.pid").read_text().splitlines()[0])
            return process_tree_ticks(postmaster) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return None

    def pgbench_init(self, scale: int) -> None:
        res = harness.pgbench(self.pg.port, USER, DB, self.pg.passwords[USER],
                              "-i", "-s", str(scale), "-q", timeout=600)
        if res.returncode != 0:
            raise BenchError(f"pgbench -i failed:\n{res.stdout}{res.stderr}")

    # -- poolers ----------------------------------------------------------------------------

    def start_pooler(self, kind: str) -> harness.Pooler:
        """Start a fresh pooler target, `usher`, `usher2` or `pgbouncer` (replacing a running one
        of that target)."""
        if kind in self.poolers:
            self.poolers.pop(kind).stop()
        self._generation += 1
        workdir = self.workdir / f"{kind}-{self._generation}"
        workdir.mkdir()
        port = harness.free_port()
        settings = dict(
            max_client_conn=self.max_client_conn,
            log_connections=False,
            log_disconnections=False,
            query_wait_timeout=120,
        )
        program = "usher" if kind in ("usher", "usher2") else kind
        if kind == "usher":
            settings["workers"] = self.usher_workers
        elif kind == "usher2":
            settings["workers"] = self.multi_workers
        # --set usher.KEY=VALUE applies to both usher targets; --set usher2.KEY=VALUE to usher2 only.
        settings.update(self.extra_settings.get(program, {}))
        if kind != program:
            settings.update(self.extra_settings.get(kind, {}))
        config = harness.write_pooler_config(program, workdir, self.pg, port, pool_size=POOL_SIZE,
                                             userlist=self.verifiers, **settings)
        if program == "usher":
            argv = [str(harness.usher_binary()), str(config)]
        else:
            # PgBouncer refuses to run as root: run it as the test user, who must read its files.
            os.chmod(workdir, 0o755)
            for p in [workdir, *workdir.rglob("*")]:
                self.pg.os_user.chown(p)
            argv = self.pg.os_user.argv([str(harness.pgbouncer_binary()), str(config)])
        pooler = harness.Pooler(kind=program, port=port, workdir=workdir, config_path=config,
                                log_path=workdir / f"{kind}.log", pg=self.pg, argv=argv)
        pooler.start()
        self.poolers[kind] = pooler
        return pooler

    def pooler_pid(self, kind: str) -> int:
        proc = self.poolers[kind].proc
        if proc is None or proc.poll() is not None:
            raise BenchError(f"{kind} is not running (exit status "
                             f"{None if proc is None else proc.returncode}).\n"
                             f"--- {kind} log (tail) ---\n"
                             + "\n".join(self.poolers[kind].log().splitlines()[-30:]))
        return proc.pid

    def alive(self, kind: str) -> bool:
        proc = self.poolers[kind].proc
        return proc is not None and proc.poll() is None

    def port_of(self, target: str) -> int:
        return self.pg.port if target == "direct" else self.poolers[target].port

    # -- lifetime ---------------------------------------------------------------------------

    def __enter__(self) -> "Stack":
        return self

    def __exit__(self, *exc) -> None:
        for pooler in self.poolers.values():
            pooler.stop()
        self.poolers.clear()
        if self.pg is not None:
            self.pg.stop()
            if not self.keep:
                self.pg.remove()
        if not self.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# Machine and versions, for the report


def describe_machine() -> dict:
    info: dict = {"cores": os.cpu_count()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem_kb = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                          if line.startswith("MemTotal:")))
        info["memory_gib"] = round(mem_kb / 1024 / 1024, 1)
    except (OSError, StopIteration, ValueError):
        pass
    info["kernel"] = os.uname().release
    try:
        info["debian"] = Path("/etc/debian_version").read_text().strip()
    except OSError:
        pass
    info["loadavg_at_start"] = Path("/proc/loadavg").read_text().split()[:3]

    def version(argv: list[str]) -> str:
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            return (out.stdout or out.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "unknown"

    info["postgres"] = version([str(harness.PG_BINDIR / "postgres"), "--version"])
    info["pgbouncer"] = version([str(harness.pgbouncer_binary()), "--version"])
    info["usher_binary"] = str(harness.usher_binary())
    info["usher_commit"] = version(["git", "-C", str(REPO_ROOT), "describe", "--always", "--dirty"])
    return info
