"""Aggregates the runs of bench/load/run and writes the Markdown table, the JSON file and the chart."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from idle_clients import IdleResult
from pgbench_runner import SCENARIO_BY_KEY, SCENARIOS, TARGETS, RunResult, StraceResult

TARGET_LABEL = {"direct": "direct", "pgbouncer": "PgBouncer", "usher": "usher"}


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


def fmt_ratio(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}×"


def markdown(summaries: list[Summary], idle: list[IdleResult], meta: dict) -> str:
    lines: list[str] = []
    m = meta["machine"]
    lines.append(f"Measured {meta['date']} on {m.get('cpu', '?')} ({m.get('cores')} cores, "
                 f"{m.get('memory_gib')} GiB, Linux {m.get('kernel')}, Debian {m.get('debian', '?')}), "
                 f"load average at start {' '.join(m.get('loadavg_at_start', []))}; "
                 f"{m.get('postgres')}, {m.get('pgbouncer')}, usher {m.get('usher_commit')} "
                 f"(workers = {meta['usher_workers']}).")
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
            d, b, u = (_find(summaries, scenario.key, t) for t in TARGETS)
            if not (b or u):
                continue

            def ok(x):
                return x if x and x.ok else None

            def get(x, attr):
                return getattr(x, attr) if x else None

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
        if len(idle) == 2:
            u = next((r for r in idle if r.target == "usher"), None)
            b = next((r for r in idle if r.target == "pgbouncer"), None)
            if u and b:
                lines.append("")
                lines.append(f"usher/PgBouncer bytes per idle client: "
                             f"{fmt_ratio(ratio(u.bytes_per_idle_client, b.bytes_per_idle_client))}")
        lines.append("")
    return "\n".join(lines)


def write_json(path: Path, summaries, runs, straces, idle, meta) -> None:
    doc = {
        "meta": meta,
        "summary": [s.to_json() for s in summaries],
        "runs": [r.to_json() for r in runs],
        "strace": [s.to_json() for s in straces],
        "idle": [r.to_json() for r in idle],
    }
    path.write_text(json.dumps(doc, indent=2) + "\n")


def write_chart(path: Path, summaries: list[Summary], idle: list[IdleResult], scratch: Path) -> str:
    """A PNG via gnuplot: TPS relative to direct per scenario, the poolers' CPU time per
    transaction (log scale: -C costs ten times -S), and bytes per idle client.
    Returns "" or why no chart was drawn."""
    gnuplot = shutil.which("gnuplot")
    if not gnuplot:
        return "gnuplot not installed (apt-get install gnuplot-nox): no chart"

    def val(s: Summary | None, attr: str) -> str:
        v = getattr(s, attr) if s and s.ok else None
        return "NaN" if v is None else f"{v:.4f}"

    rows = ["# scenario tps_pgbouncer/direct tps_usher/direct cpu_pgbouncer cpu_usher"]
    for scenario in SCENARIOS:
        d, b, u = (_find(summaries, scenario.key, t) for t in TARGETS)
        if not (b or u):
            continue
        rb = ratio(b.tps if b and b.ok else None, d.tps if d and d.ok else None)
        ru = ratio(u.tps if u and u.ok else None, d.tps if d and d.ok else None)
        label = scenario.title.split(" (")[0].replace('"', "")
        rows.append(f'"{label}" ' + " ".join([
            "NaN" if rb is None else f"{rb:.4f}", "NaN" if ru is None else f"{ru:.4f}",
            val(b, "cpu_us_per_tx"), val(u, "cpu_us_per_tx")]))
    data = scratch / "chart.dat"
    data.write_text("\n".join(rows) + "\n")
    idle_data = scratch / "idle.dat"
    idle_data.write_text("# pooler bytes\n" + "".join(
        f'"{TARGET_LABEL[r.target]}" {r.bytes_per_idle_client or 0:.1f}\n' for r in idle))

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
        "set key top right noenhanced",
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
            f"plot '{data}' using 2:xtic(1) title 'PgBouncer' lc rgb '#1f77b4', "
            "'' using 3 title 'usher' lc rgb '#d62728', 1 notitle dt 2 lc rgb '#555555'",
            "set title 'Pooler CPU time per transaction (µs, log scale; lower is better)'",
            "set logscale y",
            "set yrange [1:*]",
            f"plot '{data}' using 4:xtic(1) title 'PgBouncer' lc rgb '#1f77b4', "
            "'' using 5 title 'usher' lc rgb '#d62728'",
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
