"""One pgbench run against one target, with the pooler observed from outside.

What is measured around a run (the pooler's, never pgbench's or PostgreSQL's):
  - /proc/PID/stat utime+stime before and after: CPU time per transaction, and its kernel share;
  - the same per thread (/proc/PID/task/TID/stat): how the work spread over usher's workers;
  - all threads' on-CPU time (schedstat) every 0.2 s during the run: the most cores the pooler
    used at once, in any 0.2 s window;
  - voluntary context switches of all the pooler's threads: how often it went to sleep in
    epoll_wait and had to be woken, per transaction;
  - `perf stat -e instructions:u,instructions:k -p PID` during the run, where the machine exposes
    hardware counters (many VMs do not: then it is reported as unavailable);
  - PostgreSQL's CPU time (postmaster and children) and pgbench's (RUSAGE_CHILDREN): where the
    machine's cores go, per transaction, for every target;
  - in a separate, shorter run (strace slows the traced process several-fold, so its TPS is not
    reported): `strace -c -f -p PID`, syscalls per transaction by name.
Latency comes from pgbench's per-transaction log (--log): mean and 99th percentile.
"""

from __future__ import annotations

import glob
import os
import re
import resource
import shutil
import signal
import struct
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from stack import (DB, USER, Stack, proc_sample,  # first: puts tests/integration on sys.path
                   run_ns_total, thread_cpu_seconds)

import harness  # noqa: E402
import pgwire  # noqa: E402


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    args: tuple[str, ...]
    clients: int


# The pgbench scenarios of issue 3, in report order. `idle` is not a pgbench scenario (see
# idle_clients.py) but is selected with the same --scenarios option.
SCENARIOS = [
    Scenario("select", "-S, 8 clients", ("-S",), 8),
    Scenario("tpcb", "TPC-B, 8 clients", (), 8),
    Scenario("select200", "-S, 200 clients", ("-S",), 200),
    Scenario("connect", "-C -S, 8 clients (SCRAM login per tx)", ("-C", "-S"), 8),
    Scenario("extended", "-M extended -S, 8 clients", ("-M", "extended", "-S"), 8),
    Scenario("prepared", "-M prepared -S, 8 clients", ("-M", "prepared", "-S"), 8),
]
SCENARIO_BY_KEY = {s.key: s for s in SCENARIOS}
# usher2 is usher with several workers (--multi-workers, default 2); usher keeps workers = 1.
TARGETS = ("direct", "pgbouncer", "usher", "usher2")
POOLERS = tuple(t for t in TARGETS if t != "direct")


@dataclass
class RunResult:
    scenario: str
    target: str
    round: int
    ok: bool
    error: str = ""
    tps: float | None = None
    transactions: int = 0
    failed_transactions: int = 0
    latencies_us: list[int] = field(default_factory=list, repr=False)
    cpu_s: float | None = None        # pooler utime+stime during the run
    sys_s: float | None = None        # ... of which kernel (stime)
    run_ns: int | None = None         # pooler on-CPU time from schedstat
    wakeups: int | None = None        # pooler voluntary context switches
    thread_cpu_s: list[float] | None = None  # utime+stime per thread during the run, busiest first
    peak_cores: float | None = None   # most on-CPU time per wall time in one 0.2 s window
    pg_cpu_s: float | None = None     # PostgreSQL's CPU during the run (all its processes)
    machine_busy_s: float | None = None  # all CPUs' non-idle time (/proc/stat), anyone's
    client_cpu_s: float | None = None  # pgbench's CPU during the run
    instructions_user: int | None = None
    instructions_kernel: int | None = None
    seconds: float = 0.0

    def to_json(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k != "latencies_us"}
        return d


# --------------------------------------------------------------------------------------------
# Tools


def perf_available() -> tuple[bool, str]:
    """True when `perf stat -e instructions` counts on this machine (not `<not supported>`)."""
    perf = shutil.which("perf")
    if not perf:
        return False, "perf not installed (apt-get install linux-perf)"
    res = subprocess.run([perf, "stat", "-x,", "-e", "instructions", "true"],
                         capture_output=True, text=True, timeout=30)
    out = res.stdout + res.stderr
    if res.returncode != 0 or "not supported" in out or "not counted" in out:
        return False, "perf stat -e instructions: <not supported> (no hardware counters in this VM)"
    return True, ""


def strace_available() -> tuple[bool, str]:
    if not shutil.which("strace"):
        return False, "strace not installed (apt-get install strace)"
    return True, ""


class CoreSampler:
    """Polls a pid's on-CPU time (all threads) every `interval` seconds in a background thread;
    `peak` is the largest on-CPU ÷ wall time of any window: above 1.0, the process ran on more
    than one core at once. schedstat of a running thread lags by up to a scheduler tick, so one
    window's figure is good to a few per cent."""

    def __init__(self, pid: int, interval: float = 0.2):
        self.pid, self.interval = pid, interval
        self.peak: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            last_ns, last_t = run_ns_total(self.pid), time.monotonic()
            while not self._stop.wait(self.interval):
                ns, t = run_ns_total(self.pid), time.monotonic()
                if t > last_t:
                    cores = (ns - last_ns) / 1e9 / (t - last_t)
                    self.peak = cores if self.peak is None else max(self.peak, cores)
                last_ns, last_t = ns, t
        except OSError:
            return  # the pooler exited

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=5)


class Attached:
    """A tracer attached to a pid (perf stat / strace -c) for the duration of a `with` block.
    It is stopped with SIGINT, on which both print their summary to the output file."""

    def __init__(self, argv: list[str], output: Path, ready_marker: str | None):
        self.argv, self.output, self.ready_marker = argv, output, ready_marker
        self.proc: subprocess.Popen | None = None
        self.stderr_path = output.with_suffix(output.suffix + ".stderr")

    def __enter__(self):
        self._stderr = open(self.stderr_path, "w")
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=self._stderr)
        if self.ready_marker:
            harness.wait_until(lambda: self.ready_marker in self.stderr_path.read_text()
                               or self.proc.poll() is not None,
                               20, f"{self.argv[0]} to attach")
        else:
            time.sleep(0.2)  # perf stat gives no sign; it attaches in well under this
        if self.proc.poll() is not None:
            raise RuntimeError(f"{' '.join(self.argv)} exited: {self.stderr_path.read_text()}")
        return self

    def __exit__(self, *exc):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._stderr.close()


def machine_busy_seconds() -> float:
    """Non-idle CPU time of the whole machine so far (/proc/stat: user, nice, system, irq,
    softirq; not idle, iowait or steal)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq = fields[:7]
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def parse_perf(path: Path) -> tuple[int | None, int | None]:
    user = kernel = None
    for line in path.read_text().splitlines():
        parts = line.split(",")
        if len(parts) < 3 or not parts[0].strip().isdigit():
            continue
        if parts[2].startswith("instructions:u"):
            user = int(parts[0])
        elif parts[2].startswith("instructions:k"):
            kernel = int(parts[0])
    return user, kernel


def parse_strace_summary(path: Path) -> dict[str, int]:
    """`strace -c` table -> {syscall: calls}."""
    calls: dict[str, int] = {}
    for line in path.read_text().splitlines():
        parts = line.split()
        # % time  seconds  usecs/call  calls  [errors]  syscall
        if len(parts) >= 5 and re.fullmatch(r"[\d.]+", parts[0]) and parts[-1] != "total":
            try:
                calls[parts[-1]] = int(parts[3])
            except ValueError:
                continue
    return calls


# --------------------------------------------------------------------------------------------
# pgbench


def pgbench_argv(scenario: Scenario, port: int, seconds: int, log_prefix: Path | None) -> list[str]:
    exe = harness.require_tool("pgbench", "postgresql-15 (pgbench)")
    argv = [exe, "-h", "127.0.0.1", "-p", str(port), "-U", USER, "-n",
            "-c", str(scenario.clients), "-j", str(min(scenario.clients, os.cpu_count() or 2)),
            "-T", str(seconds), *scenario.args]
    if log_prefix is not None:
        argv += ["--log", f"--log-prefix={log_prefix}"]
    return argv + [DB]


def first_error(output: str) -> str:
    for line in output.splitlines():
        if "ERROR" in line or "FATAL" in line or "aborted" in line or "error" in line:
            line = re.sub(r"^pgbench: (error: )?", "", line.strip())
            return line[:200]
    return output.strip().splitlines()[-1][:200] if output.strip() else "no output"


def read_latencies(prefix: Path) -> list[int]:
    """Per-transaction latencies (µs) from pgbench --log files; failed/skipped lines are skipped."""
    out: list[int] = []
    for path in glob.glob(f"{prefix}.*"):
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[2].isdigit():
                    out.append(int(parts[2]))
        os.unlink(path)
    return out


def run_pgbench(stack: Stack, scenario: Scenario, target: str, seconds: int, round_no: int,
                scratch: Path, *, perf: bool, log_latency: bool = True) -> RunResult:
    """One measured run. Never raises for a pgbench failure: it is recorded in the result."""
    port = stack.port_of(target)
    tag = f"{scenario.key}-{target}-r{round_no}"
    log_prefix = scratch / tag if log_latency else None
    argv = pgbench_argv(scenario, port, seconds, log_prefix)
    env = harness.clean_env(PGPASSWORD=stack.pg.passwords[USER])
    result = RunResult(scenario.key, target, round_no, ok=False)

    pid = stack.pooler_pid(target) if target != "direct" else None
    before = proc_sample(pid) if pid else None
    perf_out = scratch / f"{tag}.perf"
    tracer = (Attached(["perf", "stat", "-x,", "-e", "instructions:u,instructions:k",
                        "-p", str(pid), "-o", str(perf_out)], perf_out, None)
              if perf and pid else None)
    sampler = CoreSampler(pid) if pid else None
    pg_before = stack.postgres_cpu_seconds()
    machine_before = machine_busy_seconds()
    started = time.monotonic()
    try:
        if tracer:
            tracer.__enter__()
        if sampler:
            sampler.__enter__()
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        res = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                             env=env, timeout=seconds + 120)
        ru2 = resource.getrusage(resource.RUSAGE_CHILDREN)
        result.client_cpu_s = (ru2.ru_utime + ru2.ru_stime) - (ru.ru_utime + ru.ru_stime)
        output = res.stdout + res.stderr
        returncode = res.returncode
    except subprocess.TimeoutExpired as exc:
        output = f"pgbench did not finish within {seconds + 120}s: {exc}"
        returncode = -1
    finally:
        if sampler:
            sampler.__exit__(None, None, None)
        if tracer:
            tracer.__exit__(None, None, None)
    result.seconds = time.monotonic() - started
    after = proc_sample(pid) if pid and stack.alive(target) else None
    pg_after = stack.postgres_cpu_seconds()
    result.machine_busy_s = machine_busy_seconds() - machine_before
    if pg_before is not None and pg_after is not None:
        result.pg_cpu_s = pg_after - pg_before

    m = re.search(r"number of transactions actually processed: (\d+)", output)
    result.transactions = int(m.group(1)) if m else 0
    m = re.search(r"number of failed transactions: (\d+)", output)
    result.failed_transactions = int(m.group(1)) if m else 0
    m = re.search(r"^tps = ([\d.]+)", output, re.M)
    result.tps = float(m.group(1)) if m else None
    aborted = re.search(r"client \d+ aborted", output) is not None
    result.ok = (returncode == 0 and result.tps is not None and not aborted
                 and result.failed_transactions == 0 and result.transactions > 0)
    if not result.ok:
        result.error = first_error(output)
        if result.transactions == 0 and "ERROR" not in output and "aborted" not in output:
            m = re.search(r"initial connection time = ([\d.]+) ms", output)
            result.error = ("no transaction completed in the run"
                            + (f" (initial connection time {m.group(1)} ms)" if m else ""))
        if pid and not stack.alive(target):
            result.error = f"{target} DIED during the run; " + result.error
    if log_prefix is not None:
        result.latencies_us = read_latencies(log_prefix)
    if before and after:
        result.cpu_s = after.cpu_seconds - before.cpu_seconds
        result.sys_s = (after.stime_ticks - before.stime_ticks) / os.sysconf("SC_CLK_TCK")
        result.run_ns = after.run_ns - before.run_ns
        result.wakeups = after.voluntary_switches - before.voluntary_switches
        result.thread_cpu_s = thread_cpu_seconds(before, after)
        result.peak_cores = sampler.peak if sampler else None
    if tracer and perf_out.exists():
        result.instructions_user, result.instructions_kernel = parse_perf(perf_out)
    (scratch / f"{tag}.out").write_text(" ".join(argv) + "\n" + output)
    return result


@dataclass
class StraceResult:
    scenario: str
    target: str
    ok: bool
    transactions: int
    calls: dict[str, int]
    error: str = ""

    def per_tx(self) -> float | None:
        if not self.ok or not self.transactions:
            return None
        return sum(self.calls.values()) / self.transactions

    def to_json(self) -> dict:
        d = dict(self.__dict__)
        d["syscalls_per_tx"] = self.per_tx()
        return d


def console_rows(stack: Stack, target: str, command: str) -> list[dict[str, str | None]]:
    """Rows of a console SHOW command, as {column: text}: columns found by name, since
    PgBouncer 1.18 and usher (PgBouncer 1.25's console) order and name some differently."""
    with pgwire.RawConnection("127.0.0.1", stack.port_of(target), timeout=10) as conn:
        conn.login("platform_admin", "pgbouncer", stack.pg.passwords["platform_admin"])
        messages = conn.simple_query(command)
    columns: list[str] = []
    rows: list[dict[str, str | None]] = []
    for tag, payload in messages:
        if tag == b"T":
            (n,) = struct.unpack("!h", payload[:2])
            at = 2
            for _ in range(n):
                end = payload.index(b"\0", at)
                columns.append(payload[at:end].decode())
                at = end + 1 + 18
        elif tag == b"D":
            (n,) = struct.unpack("!h", payload[:2])
            at, values = 2, []
            for _ in range(n):
                (length,) = struct.unpack("!i", payload[at:at + 4])
                at += 4
                values.append(None if length < 0 else payload[at:at + length].decode())
                at += max(length, 0)
            rows.append(dict(zip(columns, values)))
        elif tag == b"E":
            raise RuntimeError(f"{command} on {target}: {pgwire.parse_error_fields(payload)}")
    return rows


def xact_count(stack: Stack, target: str) -> int:
    for row in console_rows(stack, target, "SHOW STATS_TOTALS"):
        if row.get("database") == DB:
            return int(row["xact_count"])
    raise RuntimeError(f"SHOW STATS_TOTALS on {target}: no row for {DB}")


def pool_clients(stack: Stack, target: str) -> int:
    for row in console_rows(stack, target, "SHOW POOLS"):
        if row.get("database") == DB and row.get("user") == USER:
            return int(row["cl_active"]) + int(row["cl_waiting"])
    return 0


def run_strace(stack: Stack, scenario: Scenario, target: str, seconds: int,
               scratch: Path) -> StraceResult:
    """A separate run with `strace -c -f -p PID` attached for `seconds` in its middle: syscall
    counts per transaction by name. The window opens once every pgbench client is connected and
    transactions flow (logins of long-lived clients are not per-transaction work; -C's are, and
    stay in); the transactions in it are the pooler's own count (SHOW STATS_TOTALS before and
    after, on a console connection that is idle while strace is attached)."""
    pid = stack.pooler_pid(target)
    out = scratch / f"{scenario.key}-{target}.strace"
    env = harness.clean_env(PGPASSWORD=stack.pg.passwords[USER])
    argv = pgbench_argv(scenario, stack.port_of(target), seconds + 60, None)
    bench = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True, env=env)
    try:
        wanted = 1 if "-C" in scenario.args else scenario.clients

        def flowing() -> bool:
            if bench.poll() is not None:
                raise RuntimeError(f"pgbench exited early: {first_error(bench.stderr.read())}")
            if pool_clients(stack, target) < wanted:
                return False
            a = xact_count(stack, target)
            time.sleep(0.2)
            return xact_count(stack, target) > a

        harness.wait_until(flowing, 60, f"pgbench transactions through {target}", interval=0.2)
        # The two console logins fall inside the window: some 60 syscalls against thousands of
        # transactions, where reading outside it would miss the transactions of the attach time.
        with Attached(["strace", "-c", "-f", "-p", str(pid), "-o", str(out)], out, "attached"):
            before = xact_count(stack, target)
            time.sleep(seconds)
            after = xact_count(stack, target)
    except (RuntimeError, TimeoutError, OSError) as exc:
        return StraceResult(scenario.key, target, False, 0, {}, f"strace run failed: {exc}")
    finally:
        if bench.poll() is None:
            bench.terminate()  # SIGINT would only cancel pgbench's running queries
            try:
                bench.wait(timeout=30)
            except subprocess.TimeoutExpired:
                bench.kill()
                bench.wait()
    calls = parse_strace_summary(out) if out.exists() else {}
    transactions = after - before
    ok = transactions > 0 and bool(calls)
    return StraceResult(scenario.key, target, ok, transactions, calls,
                        "" if ok else "no transaction completed in the strace window")
