"""Aggregates the runs of bench/load/run and writes the Markdown table, the JSON file and the chart."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from idle_clients import IdleResult
from pgbench_runner import POOLERS, SCENARIO_BY_KEY, SCENARIOS, TARGETS, RunResult, StraceResult

TARGET_LABEL = {"direct": "direct", "pgbouncer": "PgBouncer", "usher": "usher",
                "usher2": "usher (2 workers)"}

# A thread "did real work" in a run when it used at least this share of the process's CPU.
WORKING_THREAD_SHARE = 0.05
# The 16-core host of the scaling estimate.
SCALE_TO_CORES = 16


def set_labels(meta: dict) -> None:
    """Name the usher targets after their worker counts (usher2's is --multi-workers)."""
    n1, n2 = meta.get("usher_workers", 1), meta.get("multi_workers", 2)
    TARGET_LABEL["usher"] = "usher" if n1 == 1 else f"usher ({n1} workers)"
    TARGET_LABEL["usher2"] = f"usher ({n2} worker{'s' if n2 != 1 else ''})"


@dataclass
class Summary:
    """All rounds of one (scenario, target), pooled."""

    scenario: str
    target: str
    rounds: int
    ok: bool
    errors: list[str]
    tps: float | None               # mean over the rounds that succeeded
    tps_rounds: list[float | None]
    lat_mean_ms: float | None
    lat_p99_ms: float | None
    transactions: int
    cpu_us_per_tx: float | None
    sys_share: float | None          # stime / (utime + stime)
    wakeups_per_tx: float | None
    instr_per_tx: float | None       # user + kernel
    instr_user_per_tx: float | None
    syscalls_per_tx: float | None
    syscalls_top: dict[str, float]   # the most frequent syscalls, per transaction
    cpu_us_per_tx_rounds: list[float | None]  # per round, for the noise between rounds
    # Per thread (threads ranked by CPU in each run, ranks pooled over the rounds):
    busiest_thread_us_per_tx: float | None   # the busiest thread's CPU ÷ all transactions
    thread_shares: list[float]       # each rank's share of the process's CPU, busiest first
    threads_working: int | None      # threads with ≥ WORKING_THREAD_SHARE of the CPU
    # Cores: CPU seconds ÷ wall seconds. mean = over a whole run (the highest round); peak = the
    # highest 0.2 s window of any round. Above 1.0 the pooler ran on more than one core at once.
    cores_mean: float | None
    cores_peak: float | None
    # The rest of the machine, same runs: PostgreSQL (postmaster + children) and pgbench.
    pg_us_per_tx: float | None
    client_us_per_tx: float | None
    all_cores: float | None          # (pooler + PostgreSQL + pgbench) CPU ÷ wall, mean of rounds
    machine_cores: float | None      # the whole machine's busy CPU ÷ wall (/proc/stat), mean

    def to_json(self) -> dict:
        return dict(self.__dict__)


def percentile(sorted_values: list[int], q: float) -> float:
    if not sorted_values:
        return math.nan
    k = max(0, min(len(sorted_values) - 1, math.ceil(q * len(sorted_values)) - 1))
    return float(sorted_values[k])


def summarize(runs: list[RunResult], straces: list[StraceResult]) -> list[Summary]:
    out: list[Summary] = []
    for scenario in SCENARIOS:
        for target in TARGETS:
            rs = [r for r in runs if r.scenario == scenario.key and r.target == target]
            if not rs:
                continue
            good = [r for r in rs if r.ok]
            lat = sorted(x for r in rs for x in r.latencies_us)
            tx = sum(r.transactions for r in rs)
            cpu = [r.cpu_s for r in rs if r.cpu_s is not None]
            sys = [r.sys_s for r in rs if r.sys_s is not None]
            wk = [r.wakeups for r in rs if r.wakeups is not None]
            iu = [r.instructions_user for r in rs if r.instructions_user is not None]
            ik = [r.instructions_kernel for r in rs if r.instructions_kernel is not None]
            st = next((s for s in straces if s.scenario == scenario.key and s.target == target), None)
            syscalls = st.per_tx() if st else None
            top: dict[str, float] = {}
            if st and st.ok:
                for name, n in sorted(st.calls.items(), key=lambda kv: -kv[1])[:5]:
                    top[name] = round(n / st.transactions, 2)
            per = (lambda total: total / tx if tx else None)
            threaded = [r for r in rs if r.thread_cpu_s is not None and r.cpu_s]
            ranks = max((len(r.thread_cpu_s) for r in threaded), default=0)
            by_rank = [sum(r.thread_cpu_s[i] for r in threaded if i < len(r.thread_cpu_s))
                       for i in range(ranks)]
            thread_total = sum(by_rank)
            shares = [x / thread_total for x in by_rank] if thread_total > 0 else []
            cores = [r.cpu_s / r.seconds for r in rs if r.cpu_s is not None and r.seconds > 0]
            peaks = [r.peak_cores for r in rs if r.peak_cores is not None]
            pg = [r.pg_cpu_s for r in rs if r.pg_cpu_s is not None]
            cl = [r.client_cpu_s for r in rs if r.client_cpu_s is not None]
            busy = [((r.cpu_s or 0) + r.pg_cpu_s + r.client_cpu_s) / r.seconds for r in rs
                    if r.pg_cpu_s is not None and r.client_cpu_s is not None and r.seconds > 0
                    and (r.cpu_s is not None or target == "direct")]
            out.append(Summary(
                scenario=scenario.key, target=target, rounds=len(rs), ok=len(good) == len(rs),
                errors=sorted({r.error for r in rs if r.error}),
                tps=(sum(r.tps for r in good) / len(good)) if good else None,
                tps_rounds=[r.tps for r in rs],
                lat_mean_ms=(sum(lat) / len(lat) / 1000) if lat else None,
                lat_p99_ms=(percentile(lat, 0.99) / 1000) if lat else None,
                transactions=tx,
                cpu_us_per_tx=per(sum(cpu) * 1e6) if len(cpu) == len(rs) else None,
                sys_share=(sum(sys) / sum(cpu)) if cpu and sum(cpu) > 0 else None,
                wakeups_per_tx=per(sum(wk)) if len(wk) == len(rs) else None,
                instr_per_tx=per(sum(iu) + sum(ik)) if len(iu) == len(ik) == len(rs) else None,
                instr_user_per_tx=per(sum(iu)) if len(iu) == len(rs) else None,
                syscalls_per_tx=syscalls,
                syscalls_top=top,
                cpu_us_per_tx_rounds=[r.cpu_s * 1e6 / r.transactions
                                      if r.cpu_s is not None and r.transactions else None
                                      for r in rs],
                busiest_thread_us_per_tx=(per(by_rank[0] * 1e6)
                                          if by_rank and len(threaded) == len(rs) else None),
                thread_shares=[round(x, 4) for x in shares],
                threads_working=(sum(1 for x in shares if x >= WORKING_THREAD_SHARE)
                                 if shares else None),
                cores_mean=max(cores) if cores else None,
                cores_peak=max(peaks) if peaks else None,
                pg_us_per_tx=per(sum(pg) * 1e6) if len(pg) == len(rs) else None,
                client_us_per_tx=per(sum(cl) * 1e6) if len(cl) == len(rs) else None,
                all_cores=sum(busy) / len(busy) if busy else None,
                machine_cores=(sum(r.machine_busy_s / r.seconds for r in rs) / len(rs)
                               if all(r.machine_busy_s is not None and r.seconds > 0 for r in rs)
                               else None),
            ))
    return out


def _find(summaries: list[Summary], scenario: str, target: str) -> Summary | None:
    return next((s for s in summaries if s.scenario == scenario and s.target == target), None)


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt(v: float | None, digits: int = 0, suffix: str = "") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if digits == 0:
        return f"{v:,.0f}{suffix}"
    return f"{v:,.{digits}f}{suffix}"


def approx(v: float | None) -> str:
    """An estimate to 3 significant figures: 689,778 -> 690,000."""
    if v is None or v <= 0:
        return "—"
    return f"{round(v, 2 - int(math.floor(math.log10(v)))):,.0f}"


def fmt_ratio(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}×"


def _ok(x: Summary | None) -> Summary | None:
    return x if x and x.ok else None


def _get(x: Summary | None, attr: str):
    return getattr(x, attr) if x else None


def multi_worker_rows(summaries: list[Summary]) -> list[dict]:
    """Per scenario, usher2 (N workers) against usher (1 worker): the issue's "one worker's cost
    per transaction" is the process's CPU time (all workers) ÷ transactions, so the ratio
    usher2/usher of CPU per transaction is that cost's change. Runs that failed give None."""
    rows = []
    for scenario in SCENARIOS:
        u1, u2 = _find(summaries, scenario.key, "usher"), _find(summaries, scenario.key, "usher2")
        if not (u1 and u2):
            continue
        o1, o2 = _ok(u1), _ok(u2)
        per_round = [ratio(b, a) for a, b in zip(u1.cpu_us_per_tx_rounds, u2.cpu_us_per_tx_rounds)]
        cpu = ratio(_get(o2, "cpu_us_per_tx"), _get(o1, "cpu_us_per_tx"))
        rows.append({
            "scenario": scenario.key,
            "cpu_per_tx_ratio": cpu,
            "cpu_per_tx_ratio_rounds": per_round,
            "within_10_percent": None if cpu is None else cpu <= 1.10,
            "tps_ratio": ratio(_get(o2, "tps"), _get(o1, "tps")),
            "p99_ratio": ratio(_get(o2, "lat_p99_ms"), _get(o1, "lat_p99_ms")),
            # the busiest worker's CPU per transaction against the whole single-worker process:
            # how much of one core a transaction takes on the worker that saturates first
            "busiest_thread_ratio": ratio(_get(o2, "busiest_thread_us_per_tx"),
                                          _get(o1, "cpu_us_per_tx")),
            "syscalls_per_tx_ratio": ratio(_get(o2, "syscalls_per_tx"), _get(o1, "syscalls_per_tx")),
            "wakeups_per_tx_ratio": ratio(_get(o2, "wakeups_per_tx"), _get(o1, "wakeups_per_tx")),
        })
    return rows


def scaling_rows(summaries: list[Summary], meta: dict) -> list[dict]:
    """Per scenario, what the measured CPU per transaction means for a bigger host. Pure
    arithmetic on measured figures, no model of PostgreSQL: a pooler thread at 100% of a core
    forwards 1e6 / (its µs per transaction) transactions a second."""
    n = meta.get("multi_workers", 2)
    rows = []
    for scenario in SCENARIOS:
        b = _ok(_find(summaries, scenario.key, "pgbouncer"))
        u1 = _ok(_find(summaries, scenario.key, "usher"))
        u2 = _ok(_find(summaries, scenario.key, "usher2"))
        if not (u1 or u2):
            continue
        c1, c2 = _get(u1, "cpu_us_per_tx"), _get(u2, "cpu_us_per_tx")
        busiest = _get(u2, "busiest_thread_us_per_tx")
        per_worker = c2 if c2 else c1  # the cost per transaction with several workers, if measured
        pg_us = _get(u2, "pg_us_per_tx") or _get(u1, "pg_us_per_tx")
        rows.append({
            "scenario": scenario.key,
            "pgbouncer_us_per_tx": _get(b, "cpu_us_per_tx"),
            "usher1_us_per_tx": c1,
            "usherN_us_per_tx": c2,
            "workers": n,
            "pgbouncer_ceiling_tps": 1e6 / b.cpu_us_per_tx if b and b.cpu_us_per_tx else None,
            "usher1_ceiling_tps": 1e6 / c1 if c1 else None,
            # N workers, with the balance between them measured in this run: the busiest saturates
            "usherN_ceiling_tps": 1e6 / busiest if busiest else None,
            f"usher{SCALE_TO_CORES}_ceiling_tps": (SCALE_TO_CORES * 1e6 / per_worker
                                                   if per_worker else None),
            "cores_per_100k_tps": per_worker * 1e5 / 1e6 if per_worker else None,
            # PostgreSQL's CPU per transaction through usher, and a host of SCALE_TO_CORES cores
            # shared by PostgreSQL and usher only (clients elsewhere), both scaling linearly:
            "pg_us_per_tx": pg_us,
            f"shared{SCALE_TO_CORES}_tps": (SCALE_TO_CORES * 1e6 / (pg_us + per_worker)
                                            if pg_us and per_worker else None),
            f"shared{SCALE_TO_CORES}_usher_cores": (SCALE_TO_CORES * per_worker / (pg_us + per_worker)
                                                    if pg_us and per_worker else None),
            "cores_mean": _get(u2, "cores_mean"),
            "cores_peak": _get(u2, "cores_peak"),
        })
    return rows


def _shares(s: Summary) -> str:
    shown = [x for x in s.thread_shares if x >= 0.01]
    return " / ".join(f"{x * 100:.0f}%" for x in shown) if shown else "—"


def workers_markdown(summaries: list[Summary], meta: dict) -> list[str]:
    """The multi-core section: per-thread CPU, cores used, usher2 vs usher, the scaling estimate."""
    lines: list[str] = []
    pooled = [s for s in summaries if s.target in POOLERS]
    if not any(s.target.startswith("usher") for s in pooled):
        return lines
    n = meta.get("multi_workers", 2)
    lines.append("Threads and cores (per-thread utime+stime from /proc/PID/task/*/stat; thread "
                 "shares = each thread's part of the process's CPU, busiest first; cores = CPU "
                 "seconds ÷ wall seconds, mean over a run (highest round) and highest 0.2 s window; "
                 "PostgreSQL = the postmaster and all its children; all three = pooler + "
                 "PostgreSQL + pgbench, cores busy, mean of the rounds; machine = every process's "
                 "busy time, /proc/stat):")
    lines.append("")
    lines.append("| scenario | target | TPS | CPU µs/tx, process | busiest thread µs/tx | thread shares "
                 "| threads working | cores, mean | cores, peak 0.2 s | PostgreSQL µs/tx | pgbench µs/tx "
                 "| all three, cores | machine, cores | status |")
    lines.append("|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for scenario in SCENARIOS:
        for target in POOLERS:
            s = _find(summaries, scenario.key, target)
            if not s:
                continue
            status = "ok" if s.ok else "FAIL"
            lines.append(
                f"| {scenario.title} | {TARGET_LABEL[target]} | {fmt(s.tps)} | "
                f"{fmt(s.cpu_us_per_tx, 1)} | {fmt(s.busiest_thread_us_per_tx, 1)} | {_shares(s)} | "
                f"{fmt(s.threads_working)} | {fmt(s.cores_mean, 2)} | {fmt(s.cores_peak, 2)} | "
                f"{fmt(s.pg_us_per_tx, 1)} | {fmt(s.client_us_per_tx, 1)} | {fmt(s.all_cores, 2)} | "
                f"{fmt(s.machine_cores, 2)} | {status} |")
    lines.append("")

    rows = multi_worker_rows(summaries)
    if rows:
        lines.append(f"{n} workers against 1 (usher2/usher, same run; CPU/tx = the process's CPU, all "
                     "workers, ÷ transactions: one worker's cost per transaction; target ≤ 1.10×; "
                     "busiest thread = the busiest worker's µs/tx ÷ the 1-worker process's):")
        lines.append("")
        lines.append("| scenario | CPU/tx | per round | ≤ 1.10× | TPS | p99 | busiest thread "
                     "| syscalls/tx | wakeups/tx |")
        lines.append("|---|---:|---|---|---:|---:|---:|---:|---:|")
        for r in rows:
            verdict = {None: "—", True: "yes", False: "**no**"}[r["within_10_percent"]]
            lines.append(
                f"| {SCENARIO_BY_KEY[r['scenario']].title} | {fmt_ratio(r['cpu_per_tx_ratio'])} | "
                + ", ".join(fmt_ratio(x) for x in r["cpu_per_tx_ratio_rounds"]) + " | "
                f"{verdict} | {fmt_ratio(r['tps_ratio'])} | {fmt_ratio(r['p99_ratio'])} | "
                f"{fmt_ratio(r['busiest_thread_ratio'])} | {fmt_ratio(r['syscalls_per_tx_ratio'])} | "
                f"{fmt_ratio(r['wakeups_per_tx_ratio'])} |")
        lines.append("")

    scale = scaling_rows(summaries, meta)
    if scale and any(r["usherN_us_per_tx"] for r in scale):
        lines.append(f"Scaling estimate (arithmetic on the CPU per transaction above: a pooler "
                     f"thread at 100% of a core forwards 10⁶ ÷ µs/tx transactions a second; "
                     f"'{SCALE_TO_CORES} workers' assumes the per-worker cost measured with {n} "
                     "workers holds and the clients spread evenly; see bench/README.md for what "
                     "this leaves out):")
        lines.append("")
        lines.append(f"| scenario | max tx/s: PgBouncer (1 core) | usher, 1 worker | usher, {n} workers "
                     f"(balance as measured) | usher, {SCALE_TO_CORES} workers on {SCALE_TO_CORES} cores "
                     f"| usher cores per 100k tx/s | PostgreSQL µs/tx | {SCALE_TO_CORES} cores for "
                     "PostgreSQL + usher: tx/s | … of which usher's cores |")
        lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in scale:
            lines.append(
                f"| {SCENARIO_BY_KEY[r['scenario']].title} | {approx(r['pgbouncer_ceiling_tps'])} | "
                f"{approx(r['usher1_ceiling_tps'])} | {approx(r['usherN_ceiling_tps'])} | "
                f"{approx(r[f'usher{SCALE_TO_CORES}_ceiling_tps'])} | {fmt(r['cores_per_100k_tps'], 2)} | "
                f"{fmt(r['pg_us_per_tx'], 1)} | {approx(r[f'shared{SCALE_TO_CORES}_tps'])} | "
                f"{fmt(r[f'shared{SCALE_TO_CORES}_usher_cores'], 1)} |")
        lines.append("")
        lines += scaling_paragraph(summaries, meta, rows, scale)
    return lines


def scaling_paragraph(summaries: list[Summary], meta: dict, rows: list[dict],
                      scale: list[dict]) -> list[str]:
    """A few sentences with this run's numbers: whether the per-worker cost held, how many cores
    the pooler used here, and what that gives on a 16-core host."""
    n = meta.get("multi_workers", 2)
    cores = meta.get("machine", {}).get("cores")
    out: list[str] = []
    measured = [r for r in rows if r["cpu_per_tx_ratio"] is not None]
    if measured:
        lo = min(r["cpu_per_tx_ratio"] for r in measured)
        hi = max(r["cpu_per_tx_ratio"] for r in measured)
        over = [r for r in measured if not r["within_10_percent"]]
        text = (f"- **Per-worker cost.** With {n} workers usher's CPU per transaction is "
                f"{lo:.2f}–{hi:.2f}× its 1-worker figure across {len(measured)} scenario(s); ")
        if not over:
            text += "all within 10%."
        else:
            parts = []
            for r in over:
                rounds = [x for x in r["cpu_per_tx_ratio_rounds"] if x is not None]
                every = rounds and all(x > 1.10 for x in rounds)
                why = ""
                if (r["syscalls_per_tx_ratio"] or 0) >= 1.5:
                    why = (f", with {r['syscalls_per_tx_ratio']:.2f}× the syscalls: cross-thread "
                           "traffic (see its strace line)")
                elif (r["wakeups_per_tx_ratio"] or 0) >= 1.3:
                    why = (f", with {r['wakeups_per_tx_ratio']:.2f}× the wakeups: each worker "
                           "batches fewer clients per epoll_wait")
                parts.append(f"{SCENARIO_BY_KEY[r['scenario']].title} "
                             f"{r['cpu_per_tx_ratio']:.2f}× ("
                             + ("every round" if every else "not every round: noise likely")
                             + why + ")")
            text += "above 1.10× in: " + "; ".join(parts) + "."
        out.append(text)
    u2 = [s for s in summaries if s.target == "usher2" and s.ok]
    if u2:
        mean = max((s.cores_mean for s in u2 if s.cores_mean is not None), default=None)
        peak = max((s.cores_peak for s in u2 if s.cores_peak is not None), default=None)
        working = max((s.threads_working for s in u2 if s.threads_working is not None), default=None)
        busiest = [s.thread_shares[0] for s in u2 if s.thread_shares]
        allc = [s.all_cores for s in u2 if s.all_cores is not None]
        mach = [s.machine_cores for s in u2 if s.machine_cores is not None]
        out.append(f"- **Cores used here.** usher with {n} workers had up to {fmt(working)} "
                   f"thread(s) doing work, the busiest carrying "
                   + (f"{min(busiest) * 100:.0f}–{max(busiest) * 100:.0f}%" if busiest else "—")
                   + f" of the CPU; it used at most {fmt(mean, 2)} core(s) averaged over a run and "
                   f"{fmt(peak, 2)} in its busiest 0.2 s. On this {cores}-core machine pgbench and "
                   "PostgreSQL share the cores with the pooler"
                   + (f" (the three kept {fmt(min(allc), 2)}–{fmt(max(allc), 2)} cores busy"
                      + (f", the whole machine {fmt(min(mach), 2)}–{fmt(max(mach), 2)}" if mach else "")
                      + ")" if allc else "")
                   + ", so the pooler is not the bottleneck "
                   "and TPS cannot grow with workers here: the test of scaling is that the cost per "
                   "transaction stays flat while the work spreads over the workers.")
    sel = next((r for r in scale if r["scenario"] == "select" and r["usherN_us_per_tx"]), None)         or next((r for r in scale if r["usherN_us_per_tx"]), None)
    if sel:
        title = SCENARIO_BY_KEY[sel["scenario"]].title
        c = sel["usherN_us_per_tx"]
        text = (f"- **A {SCALE_TO_CORES}-core host ({title}).** At {c:.1f} µs of CPU per "
                f"transaction and worker, one usher worker saturates a core at about "
                f"{approx(1e6 / c)} tx/s, and {SCALE_TO_CORES} workers with a core each at about "
                f"{approx(SCALE_TO_CORES * 1e6 / c)} tx/s if the per-worker cost stays as flat from "
                f"{n} to {SCALE_TO_CORES} workers as it did from 1 to {n}. Put the other way, usher "
                f"needs {c * 1e5 / 1e6:.1f} cores per 100,000 tx/s, and adding workers adds "
                "throughput until PostgreSQL, the NIC or the clients are the limit; on a 16-core "
                "host that also runs PostgreSQL, the cores the pooler takes are the ones "
                "PostgreSQL does not get.")
        if sel["pgbouncer_ceiling_tps"]:
            text += (f" PgBouncer, one process, stops at about {approx(sel['pgbouncer_ceiling_tps'])} "
                     "tx/s whatever the host.")
        shared = sel[f"shared{SCALE_TO_CORES}_tps"]
        if shared:
            usher_cores = sel[f"shared{SCALE_TO_CORES}_usher_cores"]
            text += (f" PostgreSQL spent {sel['pg_us_per_tx']:.1f} µs per transaction here; a "
                     f"{SCALE_TO_CORES}-core host running only PostgreSQL and usher (clients "
                     f"elsewhere) would, if both scaled linearly, top out near {approx(shared)} tx/s "
                     f"with usher on {usher_cores:.1f} of the cores"
                     + (" — more than one core, so there a single-threaded pooler is the limit "
                        "before PostgreSQL is" if usher_cores > 1 else "")
                     + ". PostgreSQL does not scale linearly to that many cores, so read this as an "
                     "upper bound.")
        out.append(text)
    if out:
        out.append("")
    return out


def markdown(summaries: list[Summary], idle: list[IdleResult], meta: dict) -> str:
    set_labels(meta)
    lines: list[str] = []
    m = meta["machine"]
    workers = f"workers = {meta['usher_workers']}"
    if "usher2" in meta.get("targets", []):
        workers += f"; usher2: workers = {meta.get('multi_workers', 2)}"
    lines.append(f"Measured {meta['date']} on {m.get('cpu', '?')} ({m.get('cores')} cores, "
                 f"{m.get('memory_gib')} GiB, Linux {m.get('kernel')}, Debian {m.get('debian', '?')}), "
                 f"load average at start {' '.join(m.get('loadavg_at_start', []))}; "
                 f"{m.get('postgres')}, {m.get('pgbouncer')}, usher {m.get('usher_commit')} "
                 f"({workers}).")
    lines.append(f"pgbench scale {meta['scale']}, {meta['rounds']} interleaved round(s) × "
                 f"{meta['seconds']} s per scenario and target; pool_size {meta['pool_size']}, "
                 "transaction mode, SCRAM (verifiers from pg_authid in both poolers).")
    if not meta.get("perf_ok"):
        lines.append(f"Instructions: not measured — {meta.get('perf_note')}.")
    lines.append("")

    if summaries:
        lines.append("| scenario | target | TPS | mean ms | p99 ms | pooler CPU µs/tx | of which user "
                     "| kernel share | wakeups/tx | instr/tx | syscalls/tx | status |")
        lines.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        for scenario in SCENARIOS:
            for target in TARGETS:
                s = _find(summaries, scenario.key, target)
                if not s:
                    continue
                status = "ok" if s.ok else "FAIL: " + "; ".join(s.errors)[:160].replace("|", "/")
                pooled = target != "direct"
                lines.append(
                    f"| {scenario.title} | {TARGET_LABEL[target]} | {fmt(s.tps)} | "
                    f"{fmt(s.lat_mean_ms, 2)} | {fmt(s.lat_p99_ms, 2)} | "
                    f"{fmt(s.cpu_us_per_tx, 1) if pooled else '—'} | "
                    f"{fmt(s.cpu_us_per_tx * (1 - s.sys_share) if s.cpu_us_per_tx is not None and s.sys_share is not None else None, 1) if pooled else '—'} | "
                    f"{fmt(s.sys_share * 100 if s.sys_share is not None else None, 0, '%') if pooled else '—'} | "
                    f"{fmt(s.wakeups_per_tx, 2) if pooled else '—'} | "
                    f"{fmt(s.instr_per_tx) if pooled else '—'} | "
                    f"{fmt(s.syscalls_per_tx, 2) if pooled else '—'} | {status} |")
        lines.append("")
        lines.append("Ratios (same run; TPS and p99 from the rounds above, a failed side gives —):")
        lines.append("")
        lines.append("| scenario | TPS usher/PgBouncer | TPS usher/direct | TPS PgBouncer/direct "
                     "| p99 usher/PgBouncer | CPU/tx usher/PgBouncer | syscalls/tx usher/PgBouncer |")
        lines.append("|---|---:|---:|---:|---:|---:|---:|")
        for scenario in SCENARIOS:
            d, b, u = (_find(summaries, scenario.key, t) for t in ("direct", "pgbouncer", "usher"))
            if not (b or u):
                continue
            ok, get = _ok, _get
            lines.append(
                f"| {scenario.title} | "
                f"{fmt_ratio(ratio(get(ok(u), 'tps'), get(ok(b), 'tps')))} | "
                f"{fmt_ratio(ratio(get(ok(u), 'tps'), get(ok(d), 'tps')))} | "
                f"{fmt_ratio(ratio(get(ok(b), 'tps'), get(ok(d), 'tps')))} | "
                f"{fmt_ratio(ratio(get(ok(u), 'lat_p99_ms'), get(ok(b), 'lat_p99_ms')))} | "
                f"{fmt_ratio(ratio(get(ok(u), 'cpu_us_per_tx'), get(ok(b), 'cpu_us_per_tx')))} | "
                f"{fmt_ratio(ratio(get(ok(u), 'syscalls_per_tx'), get(ok(b), 'syscalls_per_tx')))} |")
        lines.append("")
        tops = [(s, s.syscalls_top) for s in summaries if s.syscalls_top]
        if tops:
            lines.append("Most frequent syscalls per transaction (strace -c -f, separate run):")
            lines.append("")
            for s, top in tops:
                calls = ", ".join(f"{k} {v:g}" for k, v in top.items())
                lines.append(f"- {SCENARIO_BY_KEY[s.scenario].title}, {TARGET_LABEL[s.target]}: {calls}")
            lines.append("")
        lines += workers_markdown(summaries, meta)

    if idle:
        lines.append(f"Idle clients ({idle[0].clients:,} logged in with SCRAM, then each runs SELECT 1):")
        lines.append("")
        lines.append("| pooler | logged in | SELECT 1 ok | baseline RSS | RSS idle | bytes/idle client "
                     "| bytes/client after a query | logins took | status |")
        lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---|")
        for r in idle:
            lines.append(
                f"| {TARGET_LABEL[r.target]} | {r.logged_in:,} | {r.queried_ok:,} | "
                f"{r.baseline_rss_kb / 1024:.1f} MiB | {r.idle_rss_kb / 1024:.1f} MiB | "
                f"{fmt(r.bytes_per_idle_client)} | {fmt(r.bytes_per_client_after_query)} | "
                f"{r.login_seconds:.1f} s | {'ok' if r.ok else 'FAIL: ' + r.error[:160]} |")
        b = next((r for r in idle if r.target == "pgbouncer"), None)
        us = [r for r in idle if r.target.startswith("usher")]
        if b and us:
            lines.append("")
            lines.append("; ".join(
                f"{TARGET_LABEL[u.target]}/PgBouncer bytes per idle client: "
                f"{fmt_ratio(ratio(u.bytes_per_idle_client, b.bytes_per_idle_client))}" for u in us))
        lines.append("")
    return "\n".join(lines)


def write_json(path: Path, summaries, runs, straces, idle, meta) -> None:
    doc = {
        "meta": meta,
        "summary": [s.to_json() for s in summaries],
        "multi_worker": multi_worker_rows(summaries),
        "scaling": scaling_rows(summaries, meta),
        "runs": [r.to_json() for r in runs],
        "strace": [s.to_json() for s in straces],
        "idle": [r.to_json() for r in idle],
    }
    path.write_text(json.dumps(doc, indent=2) + "\n")


def write_chart(path: Path, summaries: list[Summary], idle: list[IdleResult], scratch: Path,
                meta: dict | None = None) -> str:
    """A PNG via gnuplot: TPS relative to direct per scenario, the poolers' CPU time per
    transaction (log scale: -C costs ten times -S; for usher2 also its busiest worker's share),
    and bytes per idle client. Returns "" or why no chart was drawn."""
    if meta:
        set_labels(meta)
    gnuplot = shutil.which("gnuplot")
    if not gnuplot:
        return "gnuplot not installed (apt-get install gnuplot-nox): no chart"

    def num(v: float | None) -> str:
        return "NaN" if v is None else f"{v:.4f}"

    present = [t for t in POOLERS if any(x.target == t for x in summaries)]
    colors = {"pgbouncer": "#1f77b4", "usher": "#d62728", "usher2": "#ff7f0e"}
    # columns: 1 label, then per pooler: TPS/direct, CPU µs/tx; then usher2's busiest thread
    rows = ["# scenario " + " ".join(f"tps_{t}/direct cpu_{t}" for t in present)
            + " cpu_usher2_busiest_thread"]
    for scenario in SCENARIOS:
        d = _ok(_find(summaries, scenario.key, "direct"))
        found = {t: _find(summaries, scenario.key, t) for t in present}
        if not any(found.values()):
            continue
        cols = []
        for t in present:
            x = _ok(found[t])
            cols += [num(ratio(_get(x, "tps"), _get(d, "tps"))), num(_get(x, "cpu_us_per_tx"))]
        cols.append(num(_get(_ok(found.get("usher2")), "busiest_thread_us_per_tx")))
        label = scenario.title.split(" (")[0].replace('"', "")
        rows.append(f'"{label}" ' + " ".join(cols))
    data = scratch / "chart.dat"
    data.write_text("\n".join(rows) + "\n")
    idle_data = scratch / "idle.dat"
    idle_data.write_text("# pooler bytes\n" + "".join(
        f'"{TARGET_LABEL[r.target]}" {r.bytes_per_idle_client or 0:.1f}\n' for r in idle))

    def series(offset: int) -> str:
        parts = []
        for i, t in enumerate(present):
            col = 2 + 2 * i + offset
            src = f"'{data}' using {col}:xtic(1)" if i == 0 else f"'' using {col}"
            parts.append(f"{src} title '{TARGET_LABEL[t]}' lc rgb '{colors[t]}'")
        return ", ".join(parts)

    busiest_col = 2 + 2 * len(present)
    busiest = (f", '' using {busiest_col} title '{TARGET_LABEL['usher2']}, busiest worker' "
               "lc rgb '#fdbf6f'" if "usher2" in present else "")
    panels = (2 if len(rows) > 1 else 0) + (1 if idle else 0)
    if panels == 0:
        return "nothing to chart"
    script = [
        f"set terminal pngcairo size 1200,{340 * panels} font 'DejaVu Sans,10'",
        f"set output '{path}'",
        f"set multiplot layout {panels},1",
        "set style data histograms",
        "set style histogram clustered gap 1",
        "set style fill solid 0.85 border -1",
        "set boxwidth 0.9",
        "set key outside right top vertical Left reverse noenhanced",
        "set rmargin at screen 0.76",  # the same plot width in every panel, keys beside
        "set grid ytics",
        "set xtics nomirror noenhanced",
        "set datafile missing 'NaN'",
    ]
    if len(rows) > 1:
        script += [
            "set title 'Throughput relative to PostgreSQL direct (1 = direct; higher is better; "
            "no bar = failed)'",
            f"set xrange [-0.6:{len(rows) - 2}.6]",
            "set yrange [0:*]",
            f"plot {series(0)}, 1 notitle dt 2 lc rgb '#555555'",
            "set title 'Pooler CPU time per transaction (µs, log scale; lower is better)'",
            "set logscale y",
            "set yrange [1:*]",
            f"plot {series(1)}{busiest}",
            "unset logscale y",
        ]
    if idle:
        script += [
            "set title 'Resident memory per idle client (bytes; lower is better)'",
            f"set xrange [-0.6:{len(idle) - 1}.6]",
            "set yrange [0:*]",
            f"plot '{idle_data}' using 2:xtic(1) notitle lc rgb '#2ca02c'",
        ]
    script.append("unset multiplot")
    gp = scratch / "chart.gp"
    gp.write_text("\n".join(script) + "\n")
    res = subprocess.run([gnuplot, str(gp)], capture_output=True, text=True, timeout=60)
    if res.returncode != 0:
        return f"gnuplot failed: {res.stderr.strip()[:300]}"
    return ""
