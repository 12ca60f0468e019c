"""Seeded randomized differential test of the extended query protocol in transaction pooling.

A seed makes a script: ~40 batches over 2-3 raw client connections, each batch a random pipeline
of Parse / Bind / Describe S|P / Execute / Close S|P / Flush / Sync and simple Query (SELECT,
BEGIN, COMMIT, ROLLBACK, DEALLOCATE name|ALL, DISCARD ALL, failing SQL). Statement names come from
a small pool (s0..s4 and the unnamed statement) that every client uses, so names collide between
clients; SQL comes from a small pool with SQL shared between clients, SQL unique to a client
(`SELECT $1::int + 1000 * (id + 1)` ...: a statement run for the wrong client is a wrong result),
SQL that fails at Parse (syntax, unknown table, undeterminable parameter type, two commands), at
Bind (wrong parameter count, bad input, constant division by zero) and at Execute (division by a
parameter that is zero). See `sql_pool`.

The script is made while it runs directly against PostgreSQL: the generator reads PostgreSQL's
answers to follow what exists (which statements, whether the client is in a transaction block,
whether a pipeline is open after a Flush). The recorded script then runs through the pooler in
transaction mode with pool sizes 1 and 2 and max_prepared_statements 2 and 200, and the
normalised message streams must be equal, client by client, batch by batch, exactly as in
test_prepared_protocol (errors by severity, SQLSTATE and message; no pooler statement names in
any error; no hang: every read has a deadline).

Pooling discipline. The clients act one at a time. A client that holds a server (in a
transaction block, or with a pipeline left open by a Flush) keeps acting until it gives it back,
so no client ever waits for a server another client holds: with a pool of 1 the script cannot
deadlock against PostgreSQL semantics. Open transactions are ended within a few batches.

A batch that ends with Flush (no Sync) reads a known number of messages: on the direct run, every
message PostgreSQL sends until it goes quiet; through the pooler, exactly that many (compared)
messages, within FLUSH_TIMEOUT.

Deviations documented in docs/prepared-statements.md ("Limits worth knowing") are not
generated, or tolerated:
- `DEALLOCATE` through the extended protocol comes only in the PQexecParams form (unnamed
  statement and portal: Parse/Bind/[Describe]/Execute/Sync), as a batch of its own: never
  pipelined with Parses or Closes of its names, and its unnamed statement is not bound again;
- in a failed transaction block, 25P02 for a statement usher has to prepare again, where
  PostgreSQL reports a wrong parameter count or describes a statement without result columns,
  is accepted (`tolerated`; batches in a transaction block never end with Flush, so that such
  answers always end with a ReadyForQuery);
- no DDL (no tables at all, so no "cached plan must not change result type").
Plan-time errors are avoided where the plan cache could move them: a statement shared by clients
runs more often on a server than on a client's own connection, and after 5 runs PostgreSQL may
switch to a generic plan, which would turn a Bind error into an Execute error. So a division by a
parameter is written to be never constant-folded (`random() * 0`).

Seeds: 0..11 by default. USHER_FUZZ_SEEDS=200 runs seeds 0..199; USHER_FUZZ_SEEDS=17,42 or
USHER_FUZZ_SEEDS=100-149 runs just those. USHER_FUZZ_MINIMISE=1 makes a failing case shrink its
script (delta debugging, each candidate checked against PostgreSQL and a fresh pooler) and print
it as Python, ready to be added to REGRESSIONS. USHER_FUZZ_AVOID (see AVOIDABLE) leaves out what
triggers a known open bug, to hunt for others meanwhile; never in CI.

REGRESSIONS are minimised scripts of what the fuzzer found, each run under the configurations it
lists (test_regression_matches_postgres).

Run: USHER_BIN=build/src/usher /usr/bin/python3 -m pytest tests/integration/test_prepared_fuzz.py -q
"""

from __future__ import annotations

import os
import random
import re
import time
from dataclasses import dataclass, field

import pytest

from pgwire import (bind_msg, close_msg, describe_msg, execute_msg, flush_msg, parse_msg,
                    query_msg, sync_msg)
from test_prepared_protocol import (FLUSH_TIMEOUT, USER, Aborted, Session, _fmt, differences,
                                    normalise)

INT4, TEXT = 23, 25
N_BATCHES = 40
QUIET = 0.1   # direct run, after a Flush: PostgreSQL has sent everything once quiet this long

CONFIGS = {
    "pool1-lru200": dict(pool_size=1, max_prepared_statements=200),
    "pool1-lru2": dict(pool_size=1, max_prepared_statements=2),
    "pool2-lru200": dict(pool_size=2, max_prepared_statements=200),
    "pool2-lru2": dict(pool_size=2, max_prepared_statements=2),
}


def pooler_settings(config: str) -> dict:
    c = CONFIGS[config]
    return dict(pool_mode="transaction", pool_size=c["pool_size"],
                default_pool_size=c["pool_size"],
                max_prepared_statements=c["max_prepared_statements"])


def fuzz_seeds() -> list[int]:
    raw = os.environ.get("USHER_FUZZ_SEEDS", "").strip()
    if not raw:
        return list(range(12))
    if "," in raw or "-" in raw:
        out = []
        for part in raw.split(","):
            if "-" in part:
                lo, hi = part.split("-")
                out += range(int(lo), int(hi) + 1)
            elif part.strip():
                out.append(int(part))
        return out
    return list(range(int(raw)))


MINIMISE = bool(os.environ.get("USHER_FUZZ_MINIMISE"))
# A development aid while a known bug is open: USHER_FUZZ_AVOID=a,b,... leaves out what triggers
# it, so that the fuzzer can find others meanwhile. Never set in CI.
AVOIDABLE = {
    # Nothing is sent after a Sync before its answers have arrived (one Sync segment or simple
    # query per batch).
    "pipelining",
    # No simple query DEALLOCATE that PostgreSQL does not run: after a failing statement of the
    # same query, or in a failed transaction block.
    "dealloc-not-run",
    # No DEALLOCATE through the extended protocol in a failed transaction block.
    "dealloc-extended-failed",
    # No named Parse that fails by itself (bad SQL, failed transaction block): the name may exist.
    "parse-existing",
    # No Close of a statement in a Sync segment that other segments follow in the same write.
    "close-pipelined",
    # Nothing after a simple query that may DEALLOCATE or DISCARD in the same write.
    "dealloc-pipelined",
    # No simple query that deallocates two names.
    "dealloc-twice",
    # In a failed transaction block, no Bind and no Describe of a statement (PostgreSQL checks
    # the parameter count, and whether there is a result, before it checks the block).
    "aborted-precedence",
    # No Bind/Describe of the unnamed statement after a message that may fail in its segment,
    # after an unnamed Parse that may have been skipped, or in a later segment of the same write
    # as an unnamed Parse.
    "unnamed-late",
    # Error messages compared without the statement name in "bind message supplies ...".
    "bind-count-name",
}
AVOID = {a.strip() for a in os.environ.get("USHER_FUZZ_AVOID", "").split(",") if a.strip()}
assert AVOID <= AVOIDABLE, f"USHER_FUZZ_AVOID: unknown {sorted(AVOID - AVOIDABLE)}"



# =============================================================================================
# Operations: frontend messages as data (printable as Python, encodable as bytes)


def P(name: str, sql: str, types=()):       # noqa: N802 - the scripts' vocabulary
    return ("P", name, sql, tuple(types))


def B(portal: str, stmt: str, params=()):  # noqa: N802
    return ("B", portal, stmt, tuple(params))


def D(kind: str, name: str):  # noqa: N802
    return ("D", kind, name)


def E(portal: str = "", max_rows: int = 0):  # noqa: N802
    return ("E", portal, max_rows)


def C(kind: str, name: str):  # noqa: N802
    return ("C", kind, name)


def Q(sql: str):  # noqa: N802
    return ("Q", sql)


S = ("S",)
H = ("H",)


def encode(op: tuple) -> bytes:
    k = op[0]
    if k == "P":
        return parse_msg(op[1], op[2], list(op[3]))
    if k == "B":
        return bind_msg(op[1], op[2], list(op[3]))
    if k == "D":
        return describe_msg(op[1], op[2])
    if k == "E":
        return execute_msg(op[1], op[2])
    if k == "C":
        return close_msg(op[1], op[2])
    if k == "Q":
        return query_msg(op[1])
    if k == "S":
        return sync_msg()
    if k == "H":
        return flush_msg()
    raise ValueError(op)


def op_code(op: tuple) -> str:
    k = op[0]
    if k == "P":
        return f"P({op[1]!r}, {op[2]!r}{', ' + repr(list(op[3])) if op[3] else ''})"
    if k == "B":
        return f"B({op[1]!r}, {op[2]!r}{', ' + repr(list(op[3])) if op[3] else ''})"
    if k in ("D", "C"):
        return f"{k}({op[1]!r}, {op[2]!r})"
    if k == "E":
        args = [repr(op[1])] if op[1] or op[2] else []
        if op[2]:
            args.append(str(op[2]))
        return f"E({', '.join(args)})"
    if k == "Q":
        return f"Q({op[1]!r})"
    return {"S": "S", "H": "H"}[k]


def script_code(steps) -> str:
    return "\n".join(f"    ({cid}, [{', '.join(op_code(o) for o in ops)}])," for cid, ops in steps)


# =============================================================================================
# SQL and names


@dataclass(frozen=True)
class Sql:
    text: str
    nparams: int = 0          # parameters a Bind must carry
    types: tuple = ()         # parameter types declared in the Parse
    kind: str = "int"         # what parameter values look like: int, text, series, div
    parse_error: bool = False  # the Parse fails


NAMES = ("s0", "s1", "s2", "s3", "s4")


def sql_pool(cid: int) -> list[tuple[int, Sql]]:
    """(weight, SQL) a client parses from. Shared SQL is the same text for every client (shared
    server-side statements); unique SQL carries the client id in its result."""
    return [
        # unique to the client
        (6, Sql(f"SELECT $1::int + {1000 * (cid + 1)} AS c{cid}_sum", 1)),
        (4, Sql(f"SELECT 'c{cid}'::text AS who_c{cid}")),
        (3, Sql(f"SELECT $1::text || '-c{cid}' AS c{cid}_t", 1, kind="text")),
        # shared
        (5, Sql("SELECT $1::int * 2 AS doubled", 1)),
        (4, Sql("SELECT 'shared'::text AS s")),
        (3, Sql("SELECT g FROM generate_series(1, $1::int) g", 1, kind="series")),
        (3, Sql("SELECT 10 / ($1::int + (random() * 0)::int) AS q", 1, kind="div")),  # 22012
        (2, Sql("SELECT $1 AS v", 1, (INT4,))),
        (2, Sql("SELECT $1 AS v", 1, (TEXT,), kind="text")),
        (2, Sql("SELECT $1::int + $2::int AS two", 2)),
        (1, Sql("SELECT 1/0 AS boom")),                  # 22012 at Bind (planning)
        (1, Sql("SELEC 1", parse_error=True)),                         # 42601
        (1, Sql("SELECT * FROM no_such_table_fz", parse_error=True)),  # 42P01
        (1, Sql("SELECT $1 AS v", 1, parse_error=True)),               # 42P18
        (1, Sql("SELECT 1; SELECT 2", parse_error=True)),              # 42601
        (1, Sql("DO $$BEGIN END$$")),                    # no result
        (1, Sql("BEGIN")),
        (1, Sql("COMMIT")),
        (1, Sql("ROLLBACK")),
    ]


def simple_queries(cid: int, names_in_use: list[str], status: str) -> list[tuple[int, str]]:
    n1 = names_in_use[0] if names_in_use else "s0"
    n2 = names_in_use[-1] if names_in_use else "s1"
    if "dealloc-not-run" in AVOID and status == "E":   # (may be) in a failed block
        return [(6, f"SELECT 'q c{cid}'::text AS q{cid}"), (2, "COMMIT"), (2, "ROLLBACK")]
    return [
        (6, f"SELECT 'q c{cid}'::text AS q{cid}"),
        (3, "BEGIN"),
        (2, "COMMIT"),
        (2, "ROLLBACK"),
        (3, f"DEALLOCATE {n1}"),
        (1, f"DEALLOCATE PREPARE {n2}"),
        (1, "DEALLOCATE ALL"),
        (2, "SELECT 1/0"),
        (1, "SELEC 2"),
        (2, f"SELECT 1 AS one; DEALLOCATE {n2}"),
        (0 if "dealloc-not-run" in AVOID else 2, f"SELECT 1/0; DEALLOCATE {n1}"),
        (0 if "dealloc-twice" in AVOID else 1, f"DEALLOCATE {n1}; DEALLOCATE {n2}"),
        (1, "DISCARD ALL"),
        (1, f"BEGIN; SELECT 'in block c{cid}'::text; COMMIT"),
    ]


_DEALLOC = re.compile(r"^\s*DEALLOCATE\s+(?:PREPARE\s+)?(\w+)\s*$", re.IGNORECASE)


# =============================================================================================
# What PostgreSQL did: the outcome of each frontend message, read off its answers


def outcomes(ops: list[tuple], msgs: list[tuple], skipping: bool) -> tuple[list, bool]:
    """For each op: 'ok', 'error', 'skipped' (after an error, before Sync), None (Flush) or
    'unknown' (answers missing). Returns (outcomes, skipping after the batch)."""
    stream = [m for m in msgs if m[0] not in ("NoticeResponse", "NotificationResponse")]
    pos = 0
    out: list = []

    def nxt():
        nonlocal pos
        if pos >= len(stream):
            return None
        pos += 1
        return stream[pos - 1]

    for op in ops:
        k = op[0]
        if k == "H":
            out.append(None)
            continue
        if k in ("S", "Q"):
            if k == "Q" and skipping:
                out.append("skipped")
                continue
            err = False
            while (m := nxt()) is not None and m[0] != "ReadyForQuery":
                err |= m[0] == "ErrorResponse"
            out.append("unknown" if m is None else "error" if err else "ok")
            skipping = False
            continue
        if skipping:
            out.append("skipped")
            continue
        m = nxt()
        if m is None:
            out.append("unknown")
            continue
        if m[0] == "ErrorResponse":
            out.append("error")
            skipping = True
            continue
        if k == "D" and op[1] == "S":
            m = nxt()   # RowDescription / NoData after ParameterDescription
        if k == "E":
            while m is not None and m[0] == "DataRow":
                m = nxt()
            if m is not None and m[0] == "ErrorResponse":
                out.append("error")
                skipping = True
                continue
        out.append("ok" if m is not None else "unknown")
    return out, skipping


def last_status(msgs: list[tuple], previous: str) -> str:
    for m in reversed(msgs):
        if m[0] == "ReadyForQuery":
            return m[1]
    return previous


# =============================================================================================
# The generator


@dataclass
class ClientModel:
    """What the generator believes about one client (from PostgreSQL's answers)."""
    cid: int
    pool: list[tuple[int, Sql]]
    status: str = "I"              # of the last ReadyForQuery
    open: bool = False             # a pipeline left open by a Flush (no Sync yet)
    skipping: bool = False         # that pipeline had an error
    names: dict[str, Sql | None] = field(default_factory=dict)
    unnamed: Sql | None = None
    unnamed_unsafe: bool = False   # a documented deviation if bound (skipped Parse, DEALLOCATE)
    held: int = 0                  # batches since it took a server

    @property
    def holding(self) -> bool:
        return self.open or self.status != "I"


class Generator:
    def __init__(self, seed: int, n_clients: int):
        self.rng = random.Random(seed)
        self.models = [ClientModel(i, sql_pool(i)) for i in range(n_clients)]

    # -- helpers ---------------------------------------------------------------------------

    def pick(self, weighted):
        total = sum(w for w, _ in weighted)
        x = self.rng.uniform(0, total)
        for w, v in weighted:
            x -= w
            if x <= 0:
                return v
        return weighted[-1][1]

    def params(self, sql: Sql | None, cid: int) -> list:
        r = self.rng
        n = 1 if sql is None else sql.nparams
        kind = "int" if sql is None else sql.kind
        if r.random() < 0.1:
            n = r.choice([k for k in (0, 1, 2, 3) if k != n])   # 08P01
        out = []
        for _ in range(n):
            if kind == "text":
                out.append(r.choice(["a", "bb", f"from c{cid}", ""]))
            elif kind == "series":
                out.append(r.choice([0, 1, 2, 3]))
            elif kind == "div":
                out.append(r.choice([0, 1, 2, 5]))
            else:
                out.append("x" if r.random() < 0.05 else r.choice([0, 1, 7, 42, -3]))
        return out

    # -- one batch -------------------------------------------------------------------------

    def batch(self, m: ClientModel) -> list[tuple]:
        r = self.rng
        if not m.open and m.status != "I" and (r.random() < 0.3 or m.held >= 6):
            return self.end_transaction(m)
        if not m.open and r.random() < 0.05 \
                and not ("dealloc-extended-failed" in AVOID and m.status != "I"):
            # DEALLOCATE through the extended protocol, in the form usher supports (PQexecParams:
            # a batch of its own; documented: not pipelined with Parses/Closes of its names).
            cands = sorted(m.names) or list(NAMES)
            sql = r.choice([f"DEALLOCATE {r.choice(cands)}", f"DEALLOCATE {r.choice(NAMES)}",
                            "DEALLOCATE ALL"])
            return [P("", sql), B("", "")] + ([D("P", "")] if r.random() < 0.5 else []) + [E(), S]
        ops: list[tuple] = []
        open_now = m.open
        unnamed_ok = m.unnamed is not None and not m.unnamed_unsafe
        unnamed_sql = m.unnamed
        parsed: dict[str, Sql] = {}          # names parsed earlier in this batch
        n_segments = 1 if "pipelining" in AVOID else self.pick([(6, 1), (3, 2), (2, 3)])
        # For USHER_FUZZ_AVOID: whether a transaction block may be failed at this point.
        began = m.status != "I"
        for k in range(n_segments):
            last = k == n_segments - 1
            failed = m.status == "E" or began
            if not open_now and r.random() < 0.2:
                sql = self.pick(simple_queries(m.cid, sorted(set(m.names) | set(parsed))
                                               or list(NAMES), "E" if failed else "I"))
                ops.append(Q(sql))
                began |= "BEGIN" in sql
                unnamed_ok = False          # a simple query drops the unnamed statement
                if "dealloc-pipelined" in AVOID and ("DEALLOCATE" in sql or "DISCARD" in sql):
                    break
                continue
            seg_first = not open_now
            taint = False
            unnamed_here = False   # an unnamed Parse earlier in this segment
            bound = None           # the portal of the last Bind in this segment
            for i in range(r.randint(1, 5)):
                first = seg_first and i == 0
                op_kind = self.pick([(24, "P"), (34, "B"), (6, "DS"), (3, "DP"), (3, "E"),
                                     (5, "CS"), (2, "CP"), (3, "H")])
                if op_kind == "P":
                    if r.random() < 0.3:
                        name = ""
                    else:
                        free = [n for n in NAMES if n not in m.names and n not in parsed]
                        name = r.choice(free if free and r.random() < 0.75 else NAMES)
                    sql = self.pick(m.pool)
                    if "parse-existing" in AVOID and name and (sql.parse_error or failed):
                        sql = m.pool[0][1]
                        if failed:
                            continue
                    ops.append(P(name, sql.text, sql.types))
                    began |= sql.text == "BEGIN"
                    if name:
                        parsed[name] = sql
                    else:
                        unnamed_ok, unnamed_sql, unnamed_here = True, sql, True
                        # (Not first in its segment, it may be skipped after an error.)
                        taint |= "unnamed-late" in AVOID
                elif op_kind in ("B", "DS"):
                    known = [n for n in NAMES if n in m.names or n in parsed]
                    if unnamed_ok and (first or unnamed_here or "unnamed-late" not in AVOID):
                        known.append("")
                    if known and r.random() < 0.9:
                        name = r.choice(known)
                    else:
                        name = r.choice(NAMES)
                    if name == "" and "unnamed-late" in AVOID and not (first or unnamed_here):
                        name = "s0"
                    sql = (parsed.get(name) or m.names.get(name)) if name else unnamed_sql
                    if op_kind == "DS":
                        if not ("aborted-precedence" in AVOID and failed):
                            ops.append(D("S", name))
                        continue
                    portal = "p0" if r.random() < 0.15 else ""
                    if "aborted-precedence" in AVOID and failed:
                        continue
                    ops.append(B(portal, name, self.params(sql, m.cid)))
                    began |= sql is not None and sql.text == "BEGIN"
                    bound = portal
                    if r.random() < 0.15:
                        ops.append(D("P", portal))
                    if r.random() < 0.8:
                        if r.random() < 0.15:
                            ops += [E(portal, 1), E(portal)]
                        else:
                            ops.append(E(portal))
                elif op_kind == "DP":
                    portal = bound if bound is not None and r.random() < 0.7 else r.choice(["", "p0"])
                    ops.append(D("P", portal))
                elif op_kind == "E":
                    portal = bound if bound is not None and r.random() < 0.7 else r.choice(["", "p0"])
                    ops.append(E(portal, r.choice([0, 0, 0, 1])))
                elif op_kind == "CS":
                    if "close-pipelined" in AVOID and not last:
                        continue
                    known = [n for n in NAMES if n in m.names or n in parsed]
                    if r.random() < 0.15:
                        name = ""
                    elif known and r.random() < 0.8:
                        name = r.choice(known)
                    else:
                        name = r.choice(NAMES)
                    ops.append(C("S", name))
                    if name:
                        parsed.pop(name, None)
                elif op_kind == "CP":
                    ops.append(C("P", "p0" if r.random() < 0.5 else ""))
                else:
                    ops.append(H)
            # Not in a transaction block: see tolerated() for why.
            if last and r.random() < 0.15 and not began:
                ops.append(H)
                open_now = True
            else:
                ops.append(S)
                open_now = False
            if taint:
                unnamed_ok = False
        return ops

    def end_transaction(self, m: ClientModel) -> list[tuple]:
        return self.pick([(4, [Q("COMMIT")]), (4, [Q("ROLLBACK")]),
                          (1, [P("", "COMMIT"), B("", ""), E(), S]),
                          (1, [P("", "ROLLBACK"), B("", ""), E(), S])])

    # -- learning from PostgreSQL's answers ------------------------------------------------

    def learn(self, m: ClientModel, ops: list[tuple], msgs: list[tuple]) -> None:
        was_holding = m.holding
        res, m.skipping = outcomes(ops, msgs, m.skipping)
        for op, outcome in zip(ops, res):
            k = op[0]
            if k == "P":
                name, sql = op[1], op[2]
                info = next((s for _, s in m.pool if s.text == sql and s.types == op[3]), None)
                if name == "":
                    if outcome == "ok":
                        m.unnamed = info or Sql(sql)
                        m.unnamed_unsafe = sql.upper().startswith("DEALLOCATE")
                    elif outcome == "error":
                        m.unnamed, m.unnamed_unsafe = None, False
                    elif m.unnamed is not None and "unnamed-late" in AVOID:
                        m.unnamed_unsafe = True   # skipped: PostgreSQL keeps the old one
                elif outcome == "ok":
                    m.names[name] = info
            elif k == "C" and op[1] == "S" and outcome == "ok":
                if op[2]:
                    m.names.pop(op[2], None)
                else:
                    m.unnamed, m.unnamed_unsafe = None, False
            elif k == "E" and outcome == "ok" and m.unnamed is not None \
                    and m.unnamed.text.upper().startswith("DEALLOCATE"):
                match = _DEALLOC.match(m.unnamed.text)
                if m.unnamed.text.upper() == "DEALLOCATE ALL":
                    m.names.clear()
                elif match:
                    m.names.pop(match.group(1).lower(), None)
            elif k == "Q":
                m.unnamed, m.unnamed_unsafe = None, False
                if outcome == "ok":
                    for part in op[1].split(";"):
                        up = part.strip().upper()
                        if up in ("DEALLOCATE ALL", "DISCARD ALL"):
                            m.names.clear()
                        elif (match := _DEALLOC.match(part)):
                            m.names.pop(match.group(1).lower(), None)
        m.status = last_status(msgs, m.status)
        m.open = ops[-1][0] == "H"
        if not m.open:
            m.skipping = False
        m.held = m.held + 1 if m.holding and was_holding else 0


# =============================================================================================
# Running a script


@dataclass
class Run:
    session: Session
    steps: list[tuple[int, list[tuple]]]
    counts: dict[int, int]            # step index -> messages to read (batches ending in Flush)
    discipline: str | None = None     # why the script is not valid (a client waits on another)


def _compared(raw_msgs) -> int:
    return sum(1 for tag, payload in raw_msgs if normalise(tag, payload) is not None)


class Runner:
    """Sends steps over a Session and reads their answers. On the direct run (counts=None) a
    batch that ends with Flush is read until PostgreSQL goes quiet, and the number of messages
    is recorded; through the pooler, exactly that many are read."""

    def __init__(self, session: Session, counts: dict[int, int] | None):
        self.s = session
        self.direct = counts is None
        self.counts: dict[int, int] = {} if counts is None else counts
        self.steps: list[tuple[int, list[tuple]]] = []
        self.last: int | None = None
        self.holding: dict[int, bool] = {}
        self.discipline: str | None = None

    def do(self, cid: int, ops: list[tuple]) -> list[tuple]:
        s = self.s
        idx = len(self.steps)
        self.steps.append((cid, ops))
        others = [o for o, h in self.holding.items() if h and o != cid]
        if others and self.discipline is None:
            self.discipline = f"step {idx}: c{cid} acts while c{others[0]} holds a server"
        c = s.clients[cid]
        s.send(c, b"".join(encode(op) for op in ops))
        if ops[-1][0] != "H":
            s.read(c)
        elif self.direct:
            self._read_quiet(c, idx)
        else:
            self._read_count(c, self.counts.get(idx, 0))
        msgs = c.segments[-1].msgs
        status = last_status(msgs, "?")
        prev = self.holding.get(cid, False)
        self.holding[cid] = ops[-1][0] == "H" or (status != "I" if status != "?" else prev)
        return msgs

    def _read_quiet(self, c, idx: int) -> None:
        n, c.pending = c.pending, 0
        raw_msgs, failure = [], None
        try:
            raw_msgs = c.raw.read_until_ready(n) if n else []
            while True:
                try:
                    m = c.raw.read_message(timeout=QUIET)
                except TimeoutError:
                    break
                if m is None:
                    failure = "<CONNECTION CLOSED>"
                    break
                raw_msgs.append(m)
        except TimeoutError as exc:
            raw_msgs, failure = exc.partial, f"<TIMEOUT: no ReadyForQuery #{n}>"
        except ConnectionError as exc:
            raw_msgs, failure = exc.partial, "<CONNECTION CLOSED>"
        self.counts[idx] = _compared(raw_msgs)
        self.s._record(c, raw_msgs, failure, False, None)

    def _read_count(self, c, n: int) -> None:
        c.pending = 0
        deadline = time.monotonic() + FLUSH_TIMEOUT
        raw_msgs, failure = [], None
        while _compared(raw_msgs) < n:
            try:
                m = c.raw.read_message(timeout=max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                failure = f"<TIMEOUT: {n} messages expected within {FLUSH_TIMEOUT}s>"
                break
            if m is None:
                failure = "<CONNECTION CLOSED>"
                break
            raw_msgs.append(m)
        self.s._record(c, raw_msgs, failure, False, None)


def open_session(host: str, port: int, password: str, n_clients: int, endpoint: str) -> Session:
    # pool_size=1: no holder clients (this test never places batches on a logical server).
    return Session(endpoint, host, port, password, n_clients, 1)


def generate(seed: int, pg) -> Run:
    """Make seed's script by running it directly against PostgreSQL."""
    rng = random.Random(seed * 7919 + 1)
    n_clients = rng.choice([2, 3, 3])
    gen = Generator(seed, n_clients)
    s = open_session(pg.host, pg.port, pg.passwords[USER], n_clients, "postgres")
    runner = Runner(s, None)
    try:
        try:
            cur = None
            for _ in range(N_BATCHES):
                if cur is None or not gen.models[cur].holding:
                    if cur is None or gen.rng.random() < 0.6:
                        cur = gen.rng.randrange(n_clients)
                m = gen.models[cur]
                ops = gen.batch(m)
                gen.learn(m, ops, runner.do(cur, ops))
            for m in gen.models:
                while m.holding:
                    ops = [S] if m.open else [Q("ROLLBACK")]
                    gen.learn(m, ops, runner.do(m.cid, ops))
        except Aborted:
            pass
    finally:
        s.close()
    return Run(s, runner.steps, runner.counts, runner.discipline)


def replay(steps, n_clients: int, host: str, port: int, password: str, endpoint: str,
           counts: dict[int, int] | None) -> Run:
    """Run recorded steps (direct when counts is None: the counts are measured)."""
    s = open_session(host, port, password, n_clients, endpoint)
    runner = Runner(s, counts)
    try:
        try:
            for cid, ops in steps:
                runner.do(cid, ops)
        except Aborted:
            pass
    finally:
        s.close()
    return Run(s, runner.steps, runner.counts, runner.discipline)


_BIND_COUNT = re.compile(r'(bind message supplies \d+ parameters, but prepared statement )"[^"]*"')


def _without_bind_count_names(session: Session) -> None:
    for c in session.all:
        for seg in c.segments:
            seg.msgs = [m[:4] + (_BIND_COUNT.sub(r'\1"?"', m[4]),) if m[0] == "ErrorResponse"
                        and m[4] else m for m in seg.msgs]


_FAILED = ("ReadyForQuery", "E")


def _chunks(msgs: list[tuple]) -> list[list[tuple]]:
    """A read's messages split after each ReadyForQuery."""
    out: list[list[tuple]] = [[]]
    for m in msgs:
        out[-1].append(m)
        if m[0] == "ReadyForQuery":
            out.append([])
    return out if out[-1] else out[:-1]


def tolerated(direct: list[tuple], pooled: list[tuple]) -> bool:
    """The deviation documented in docs/prepared-statements.md ("A failed transaction block
    with a tiny LRU"), for one Sync's worth of answers: in a failed transaction block, a
    statement usher has to prepare again on that server fails with 25P02 where PostgreSQL first
    reports a wrong parameter count (08P01) or describes a statement without result columns. The
    block stays failed either way. (Batches in a transaction block never end with Flush, so these
    answers always end with ReadyForQuery.)"""
    if direct[-1:] != [_FAILED] or pooled[-1:] != [_FAILED]:
        return False
    i = next((k for k, (a, b) in enumerate(zip(direct, pooled)) if a != b), None)
    if i is None or pooled[i:] != [("ErrorResponse", "ERROR", "ERROR", "25P02",
                                    "current transaction is aborted, commands ignored until end "
                                    "of transaction block"), _FAILED]:
        return False
    d = direct[i]
    return d[0] == "ParameterDescription" or (
        d[0] == "ErrorResponse" and d[3] == "08P01" and "bind message supplies" in d[4])


def _same(direct: list[tuple], pooled: list[tuple]) -> bool:
    if direct == pooled:
        return True
    cd, cp = _chunks(direct), _chunks(pooled)
    return len(cd) == len(cp) and all(a == b or tolerated(a, b) for a, b in zip(cd, cp))


def fuzz_differences(direct: Session, pooled: Session) -> list[str]:
    """As test_prepared_protocol.differences (the first differing batch of each client), with
    the documented deviation `tolerated`."""
    out = []
    for cd, cp in zip(direct.all, pooled.all):
        n = max(len(cd.segments), len(cp.segments))
        differing = [i for i in range(n)
                     if i >= len(cd.segments) or i >= len(cp.segments)
                     or not _same(cd.segments[i].msgs, cp.segments[i].msgs)]
        if not differing:
            continue
        i = differing[0]
        sd = cd.segments[i] if i < len(cd.segments) else None
        sp = cp.segments[i] if i < len(cp.segments) else None
        more = len(differing) - 1
        out.append(f"{cd.label}, batch #{i}: {(sd or sp).label}\n"
                   f"    postgres:\n{_fmt(sd.msgs) if sd else '      (batch not run)'}\n"
                   f"    pooler:\n{_fmt(sp.msgs) if sp else '      (batch not run)'}"
                   + (f"\n    (+{more} later batch{'es' if more > 1 else ''} of {cd.label} differ"
                      f" too: #{', #'.join(str(d) for d in differing[1:8])}"
                      f"{', ...' if more > 7 else ''})" if more else ""))
    return out


def compare(direct: Run, pooled: Run) -> list[str]:
    if "bind-count-name" in AVOID:
        _without_bind_count_names(direct.session)
        _without_bind_count_names(pooled.session)
    problems = fuzz_differences(direct.session, pooled.session)
    for c in pooled.session.all:
        problems += c.leaks
    if pooled.session.aborted:
        problems.append(f"the pooled run stopped early: {pooled.session.aborted}")
    return problems


def check_direct(run: Run, what: str) -> None:
    assert run.session.aborted is None, \
        f"{what}: the direct run against PostgreSQL stopped: {run.session.aborted}"
    assert run.discipline is None, f"{what}: generator bug: {run.discipline}"
    for c in run.session.all:
        assert not c.leaks, c.leaks


def n_clients_of(steps) -> int:
    return max(cid for cid, _ in steps) + 1


# =============================================================================================
# Minimising a failing script (USHER_FUZZ_MINIMISE=1)


def minimise(steps, config: str, pg, start_pooler, budget: float = 240) -> list:
    """Delta debugging: the smallest script (steps, then messages within steps) that still
    differs through the pooler. A candidate counts only if PostgreSQL runs it to the end and no
    client acts while another holds a server."""
    password = pg.passwords[USER]
    n_clients = n_clients_of(steps)
    deadline = time.monotonic() + budget

    def fails(cand) -> bool:
        # Every batch still ends as generated batches do: Sync, Flush or a simple query.
        if not cand or any(not ops or ops[-1][0] not in "SHQ" for _, ops in cand):
            return False
        if time.monotonic() > deadline:
            return False
        direct = replay(cand, n_clients, pg.host, pg.port, password, "postgres", None)
        if direct.session.aborted or direct.discipline:
            return False
        pooler = start_pooler(**pooler_settings(config))
        try:
            pooled = replay(cand, n_clients, pooler.host, pooler.port, password, "pooler",
                            direct.counts)
        finally:
            pooler.stop()
        return bool(compare(direct, pooled))

    def ddmin(items, test):
        n = 2
        while len(items) >= 2:
            chunk = max(1, len(items) // n)
            reduced = False
            for start in range(0, len(items), chunk):
                cand = items[:start] + items[start + chunk:]
                if test(cand):
                    items, n, reduced = cand, max(n - 1, 2), True
                    break
            if not reduced:
                if n >= len(items):
                    break
                n = min(len(items), n * 2)
        return items

    steps = ddmin(list(steps), fails)
    # Then messages within each step.
    i = 0
    while i < len(steps):
        cid, ops = steps[i]

        def test_ops(cand_ops, i=i, cid=cid):
            return bool(cand_ops) and fails(steps[:i] + [(cid, cand_ops)] + steps[i + 1:])

        steps[i] = (cid, ddmin(list(ops), test_ops))
        i += 1
    # Renumber clients in order of appearance.
    order: dict[int, int] = {}
    for cid, _ in steps:
        order.setdefault(cid, len(order))
    return [(order[cid], ops) for cid, ops in steps]


# =============================================================================================
# Regressions: minimised scripts of mismatches found by this fuzzer (usher bugs), run under the
# configurations listed. Each is (configs, steps); steps are (client, [ops]).

ALL = tuple(CONFIGS)
LRU2 = ("pool1-lru2", "pool2-lru2")

REGRESSIONS: dict[str, tuple[tuple[str, ...], list]] = {
    # -- Later Sync segments of one write must see what the server did with the earlier ones.
    # PostgreSQL skips the Parse (error before it): s2 does not exist at the next Sync.
    "pipelined_bind_after_skipped_parse": (ALL, [
        (0, [B("", "nope"), P("s2", "SELECT 'c0'::text AS c0"), S, B("", "s2"), E(), S]),
    ]),
    # PostgreSQL skips the Close: s1 still exists, the new Parse gets 42P05 and s1 stays 'old'.
    "pipelined_parse_after_skipped_close": (ALL, [
        (0, [P("s1", "SELECT 'old'::text AS a"), S]),
        (0, [B("", "nope"), C("S", "s1"), S, P("s1", "SELECT 'new'::text AS b"), S]),
        (0, [B("", "s1"), E(), S]),
    ]),
    # The Close is skipped: s2 still exists at the next Sync.
    "pipelined_bind_after_skipped_close": (ALL, [
        (0, [P("s2", "SELECT 'shared'::text AS s"), S]),
        (0, [B("", "nope"), C("S", "s2"), S, B("", "s2"), E(), S]),
    ]),
    # A Close, skipped, of a name whose Parse earlier in the same write failed or was skipped:
    # undoing the Close must not bring back a statement that never existed.
    "pipelined_close_of_skipped_parse_leaves_no_ghost": (ALL, [
        (0, [B("", "nope"), P("s0", "SELECT 'x'::text AS x"), S,
             P("", "SELECT * FROM no_such_table_fz"), C("S", "s0"), S]),
        (0, [B("", "s0"), E(), S]),
    ]),
    "pipelined_close_of_failed_parse_leaves_no_ghost": (ALL, [
        (0, [P("s0", "SELEC 1"), S, B("", "nope"), C("S", "s0"), S]),
        (0, [B("", "s0"), E(), S]),
    ]),
    # The Close of the unnamed statement is skipped: it still exists at the next Sync.
    "pipelined_bind_unnamed_after_skipped_close": (ALL, [
        (0, [P("", "SELECT 'u'::text AS u"), S]),
        (0, [B("", "nope"), C("S", ""), S, B("", ""), E(), S]),
    ]),
    # A simple-query DEALLOCATE of a name whose Close earlier in the write was skipped: the
    # statement still exists, PostgreSQL deallocates it.
    "pipelined_dealloc_after_skipped_close": (ALL, [
        (0, [P("s1", "SELECT 'c0'::text AS a"), S]),
        (0, [B("", "nope"), C("S", "s1"), S, Q("DEALLOCATE s1")]),
        (0, [B("", "s1"), E(), S]),
    ]),
    # The unnamed Parse failed, so the unnamed statement is gone (26000), even when a Parse of SQL
    # the server already has comes between.
    "pipelined_bind_unnamed_after_failed_parse": (ALL, [
        (0, [P("s3", "SELECT $1::int + 1000 AS c0_sum"), S]),
        (0, [P("", "SELECT * FROM no_such_table_fz"), S,
             P("s4", "SELECT $1::int + 1000 AS c0_sum"), B("", "", [1]), E(), S]),
    ]),
    # DEALLOCATE (PQexecParams form) of a name whose Parse was skipped: 26000.
    "pipelined_dealloc_pqexecparams_after_skipped_parse": (ALL, [
        (0, [B("", "nope"), P("s3", "SELECT 'c0'::text AS a"), S,
             P("", "DEALLOCATE s3"), B("", ""), E(), S]),
    ]),
    # ... and of a name a DEALLOCATE ALL earlier in the same write removed: 26000.
    "pipelined_dealloc_pqexecparams_after_dealloc_all": (ALL, [
        (0, [P("s3", "SELECT 'c0'::text AS a"), S]),
        (0, [Q("DEALLOCATE ALL"), P("", "DEALLOCATE s3"), B("", ""), E(), S]),
    ]),
    # A statement parsed after DEALLOCATE ALL in the same write exists (PostgreSQL ran the
    # DEALLOCATE ALL first); the CommandComplete of DEALLOCATE ALL must not remove it.
    "parse_after_dealloc_all_in_same_write": (ALL, [
        (0, [Q("DEALLOCATE ALL"), P("s1", "SELECT 'c0'::text AS a"), S]),
        (0, [B("", "s1"), E(), S]),
    ]),
    "parse_after_discard_all_in_same_write": (ALL, [
        (0, [Q("DISCARD ALL"), P("s1", "SELECT 'c0'::text AS a"), S]),
        (0, [B("", "s1"), E(), S]),
    ]),
    # The first Parse fails: the second Parse of the name, after its Sync, succeeds.
    "pipelined_parse_after_failed_parse": (ALL, [
        (0, [P("s2", "SELEC 1"), S, P("s2", "SELECT 3 AS c"), B("", "s2"), E(), S]),
    ]),
    # -- DEALLOCATE that PostgreSQL does not run leaves the statement in place.
    "dealloc_after_failing_statement_in_query": (ALL, [
        (0, [P("s3", "SELECT 'c0'::text AS a"), S]),
        (0, [Q("SELECT 1/0; DEALLOCATE s3")]),
        (0, [B("", "s3"), E(), S]),
    ]),
    "dealloc_in_failed_block": (ALL, [
        (0, [P("s1", "SELECT 'c0'::text AS a"), S]),
        (0, [Q("BEGIN")]),
        (0, [Q("SELECT 1/0")]),
        (0, [Q("DEALLOCATE s1")]),
        (0, [Q("ROLLBACK")]),
        (0, [B("", "s1"), E(), S]),
    ]),
    # The supported extended form (PQexecParams) in a failed block: PostgreSQL fails the Parse
    # with 25P02 (no ParseComplete) and s1 survives.
    "dealloc_pqexecparams_in_failed_block": (ALL, [
        (0, [P("s1", "SELECT 'c0'::text AS a"), S]),
        (0, [Q("BEGIN")]),
        (0, [Q("SELECT 1/0")]),
        (0, [P("", "DEALLOCATE s1"), B("", ""), E(), S]),
        (0, [Q("ROLLBACK")]),
        (0, [B("", "s1"), E(), S]),
    ]),
    # -- A Parse of a name the client has: PostgreSQL parses first, so its own error wins over
    # 42P05 (syntax error; 25P02 in a failed block).
    "parse_existing_name_bad_sql": (ALL, [
        (0, [P("s0", "SELECT 1 AS a"), S]),
        (0, [P("s0", "SELEC 1"), S]),
    ]),
    "parse_existing_name_in_failed_block": (ALL, [
        (0, [P("s0", "SELECT 1 AS a"), S]),
        (0, [Q("BEGIN")]),
        (0, [Q("SELECT 1/0")]),
        (0, [P("s0", "SELECT 1 AS a"), S]),
        (0, [Q("ROLLBACK")]),
    ]),
    # A duplicate Parse must not replace the client's unnamed statement (Bind '' runs 'unnamed').
    "duplicate_parse_keeps_unnamed_statement": (ALL, [
        (0, [P("", "SELECT 'unnamed'::text AS u"), P("s0", "SELECT 'x'::text AS x"),
             P("s0", "SELECT 'y'::text AS y"), B("p0", ""), S, B("", ""), E(), S]),
    ]),
    # Unnamed Parses skipped after an error leave the previous unnamed statement in place (two of
    # them: one alone is handled).
    "skipped_unnamed_parses_keep_previous": (ALL, [
        (0, [P("", "SELECT 'first'::text AS u"), S]),
        (0, [B("", "nope"), P("", "SELECT 'second'::text AS v"), P("", "SELECT 'third'::text AS w"),
             S]),
        (0, [D("S", ""), B("", ""), E(), S]),
    ]),
    # An unnamed Parse skipped after an error, followed in its segment by a Parse of a name the
    # client has: the unnamed statement was never made, Bind '' gets 26000 and must not run it.
    "skipped_unnamed_parse_never_runs": (ALL, [
        (0, [P("s4", "SELECT 1"), B("", "nope"), P("", "SELECT 'never parsed'::text AS u"),
             P("s4", "SELECT 'x'::text AS x"), S, B("", ""), E(), S]),
    ]),
    "skipped_unnamed_parse_never_runs_after_duplicate": (ALL, [
        (0, [P("s3", "SELECT 'shared'::text AS s"), S]),
        (0, [P("s3", "SELECT $1::int * 2 AS doubled"), P("", "SELECT 'shared'::text AS s"),
             P("s4", "SELECT 'shared'::text AS s"), S, B("", ""), E(), S]),
    ]),
    # ... also when the error that skips it is the Parse before it, and a simple query (which
    # drops the unnamed statement) came earlier in the same write as the previous unnamed Parse:
    # PostgreSQL has no unnamed statement at all.
    "skipped_unnamed_parse_after_simple_query": (ALL, [
        (0, [P("", "SELECT 'old'::text AS o"), Q("SELECT 1")]),
        (0, [P("s4", "SELECT 1; SELECT 2"), P("", "SELECT 'never parsed'::text AS u"), S,
             B("", ""), E(), S]),
    ]),
    # ... and when a Flush left the pipeline skipping (the error was in the previous write).
    "skipped_unnamed_parse_after_flushed_error": (ALL, [
        (0, [P("", "SELECT $1::text || '-c0' AS c0_t"), Q("SELECT 1 AS one; DEALLOCATE s4")]),
        (0, [B("", "s0", [42]), H]),
        (0, [P("", "SELECT 10 / ($1::int + (random() * 0)::int) AS q"), S,
             B("", "", [5]), E(), S]),
    ]),
    # A Close that ran, then a Parse of the same name that failed or was skipped: the name is
    # gone (26000); usher must not keep the skipped Parse's statement, or the closed one.
    "closed_then_skipped_parse_leaves_nothing": (ALL, [
        (0, [P("s1", "SELECT 'old'::text AS a"), S]),
        (0, [C("S", "s1"), B("", "nope"), P("s1", "SELECT 'skipped'::text AS b"), S,
             B("", "s1"), E(), S]),
    ]),
    "closed_then_failed_parse_leaves_nothing": (ALL, [
        (0, [P("s3", "SELECT 'c0'::text AS a"), S]),
        (0, [C("S", "s3"), P("s3", "SELEC 1"), S, Q("DEALLOCATE s3")]),
    ]),
    # -- Errors rewritten to the client's name must name the statement of the message.
    # a and b have the same SQL (one server statement): the error is about a.
    "bind_error_names_the_other_name": (ALL, [
        (0, [P("a", "SELECT $1::int AS x"), P("b", "SELECT $1::int AS x"), S]),
        (0, [B("", "a"), E(), S]),
    ]),
    # The Close later in the pipeline is skipped; the error is about s2, not "".
    "bind_error_after_close_later_in_pipeline": (ALL, [
        (0, [P("s2", "SELECT $1::int AS x"), S]),
        (0, [B("", "s2", [1, 2]), E(), C("S", "s2"), S]),
    ]),
    # -- The unnamed statement re-parsed for c0 on a server where c1's is current, in a segment
    # PostgreSQL skips after an error: c0's next Bind must not run c1's statement.
    "unnamed_reparse_skipped_runs_other_clients": (ALL, [
        (0, [P("", "SELECT 'c0'::text AS who"), S]),
        (1, [P("", "SELECT 'c1'::text AS who"), S]),
        (0, [B("", "nope"), B("", ""), S]),
        (0, [B("", ""), E(), S]),
    ]),
    # -- Two names of one server statement deallocated in one query: both succeed; no usher name
    # in an error.
    "dealloc_two_names_of_one_statement": (ALL, [
        (0, [P("s0", "SELECT 'c0'::text AS a"), P("s2", "SELECT 'c0'::text AS a"), S]),
        (0, [Q("DEALLOCATE s0; DEALLOCATE s2")]),
    ]),
    # -- With a full LRU, c is evicted and re-prepared within one segment; the segment fails
    # before the re-prepare. The server no longer has c: its next Bind must prepare it again
    # (usher confirms the re-prepare with the ParseComplete of the first Parse).
    "evicted_and_reprepared_in_failed_segment": (LRU2, [
        (0, [P("a", "SELECT 'a'::text AS a"), P("b", "SELECT 'b'::text AS b"), S]),
        (0, [P("c", "SELECT 'c'::text AS c"), B("", "a"), B("", "b"), E("nope"), B("", "c"), S]),
        (0, [B("", "c"), E(), S]),
    ]),
}


# =============================================================================================
# Tests

_DIRECT: dict[int, Run] = {}


def direct_run(seed: int, pg) -> Run:
    if seed not in _DIRECT:
        run = generate(seed, pg)
        check_direct(run, f"seed {seed}")
        _DIRECT[seed] = run
    return _DIRECT[seed]


def _describe_failure(title: str, problems: list[str], steps, direct: Run) -> str:
    return (f"{title}: the pooler's answers differ from PostgreSQL's\n\n" + "\n\n".join(problems)
            + f"\n\nscript ({len(steps)} batches, {n_clients_of(steps)} clients):\n"
            + script_code(steps))


@pytest.mark.timeout(900 if MINIMISE else 60)
@pytest.mark.parametrize("seed", fuzz_seeds())
@pytest.mark.parametrize("config", list(CONFIGS))
def test_fuzz_matches_postgres(pg, usher, seed, config):
    direct = direct_run(seed, pg)
    pooler = usher(**pooler_settings(config))
    pooled = replay(direct.steps, n_clients_of(direct.steps), pooler.host, pooler.port,
                    pg.passwords[USER], "pooler", direct.counts)
    problems = compare(direct, pooled)
    if not problems:
        return
    message = _describe_failure(f"seed {seed} under {config}", problems, direct.steps, direct)
    if MINIMISE:
        pooler.stop()
        small = minimise(direct.steps, config, pg, usher)
        d = replay(small, n_clients_of(small), pg.host, pg.port, pg.passwords[USER], "postgres",
                   None)
        p2 = usher(**pooler_settings(config))
        p = replay(small, n_clients_of(small), p2.host, p2.port, pg.passwords[USER], "pooler",
                   d.counts)
        message += ("\n\nminimised:\n" + script_code(small) + "\n\n"
                    + "\n\n".join(compare(d, p)))
    pytest.fail(message, pytrace=False)


def _regression_cases():
    for name, (configs, _) in REGRESSIONS.items():
        for config in configs:
            yield pytest.param(name, config, id=f"{name}-{config}")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name,config", list(_regression_cases()))
def test_regression_matches_postgres(pg, usher, name, config):
    _, steps = REGRESSIONS[name]
    n = n_clients_of(steps)
    direct = replay(steps, n, pg.host, pg.port, pg.passwords[USER], "postgres", None)
    check_direct(direct, name)
    pooler = usher(**pooler_settings(config))
    pooled = replay(steps, n, pooler.host, pooler.port, pg.passwords[USER], "pooler",
                    direct.counts)
    problems = compare(direct, pooled)
    if problems:
        pytest.fail(_describe_failure(f"{name} under {config}", problems, steps, direct),
                    pytrace=False)


@pytest.mark.parametrize("seed", [0, 1])
def test_fuzz_scripts_are_reproducible(pg, seed):
    """A seed makes the same script, and PostgreSQL answers it the same way, every time; a
    recorded script replayed directly gives the same answers as when it was made."""
    first = generate(seed, pg)
    second = generate(seed, pg)
    check_direct(first, f"seed {seed}")
    assert first.steps == second.steps, f"seed {seed} made two different scripts"
    assert first.counts == second.counts
    problems = differences(first.session, second.session, what="postgres again")
    again = replay(first.steps, n_clients_of(first.steps), pg.host, pg.port, pg.passwords[USER],
                   "postgres", None)
    problems += differences(first.session, again.session, what="postgres, replayed")
    assert not problems, "\n\n".join(problems)


def test_outcomes_reads_postgres_answers():
    """The generator's reading of PostgreSQL's answers (which decides what it may generate)."""
    err = ("ErrorResponse", "ERROR", "ERROR", "22012", "division by zero")
    z = ("ReadyForQuery", "I")
    ops = [P("a", "x"), B("", "a"), E(), P("", "y"), S, P("b", "z"), D("S", "b"), H]
    msgs = [("ParseComplete",), ("BindComplete",), ("DataRow", ("1",)), err, z,
            ("ParseComplete",), ("ParameterDescription", ()), ("NoData",)]
    res, skipping = outcomes(ops, msgs, False)
    assert res == ["ok", "ok", "error", "skipped", "ok", "ok", "ok", None]
    assert not skipping
    res, skipping = outcomes([B("", "nope"), E(), H], [err], False)
    assert res == ["error", "skipped", None] and skipping
    res, skipping = outcomes([P("", "q"), S], [z], True)
    assert res == ["skipped", "ok"] and not skipping
    # What the generator learns about the unnamed statement: a skipped Parse keeps it, an
    # executed DEALLOCATE is not bound again (not the supported form), a simple query drops it.
    gen = Generator(0, 1)
    m = gen.models[0]
    gen.learn(m, [P("", "SELECT 1"), S], [("ParseComplete",), z])
    assert m.unnamed == Sql("SELECT 1") and not m.unnamed_unsafe
    gen.learn(m, [B("", "nope"), P("", "SELECT 2"), S], [err, z])
    assert m.unnamed == Sql("SELECT 1") and m.unnamed_unsafe == ("unnamed-late" in AVOID)
    gen.learn(m, [P("", "DEALLOCATE s0"), B("", ""), E(), S],
              [("ParseComplete",), ("BindComplete",), ("CommandComplete", "DEALLOCATE"), z])
    assert m.unnamed_unsafe
    gen.learn(m, [Q("SELECT 1")], [("RowDescription", ()), ("DataRow", ("1",)),
                                   ("CommandComplete", "SELECT 1"), z])
    assert m.unnamed is None and not m.unnamed_unsafe


def test_tolerated_is_only_the_documented_deviation():
    """The comparison lets through 25P02 for 08P01 / a description in a failed block, and
    nothing else."""
    abort = ("ErrorResponse", "ERROR", "ERROR", "25P02",
             "current transaction is aborted, commands ignored until end of transaction block")
    count = ("ErrorResponse", "ERROR", "ERROR", "08P01",
             'bind message supplies 2 parameters, but prepared statement "s" requires 1')
    zE, zT, zI = ("ReadyForQuery", "E"), ("ReadyForQuery", "T"), ("ReadyForQuery", "I")
    pd, nd = ("ParameterDescription", ()), ("NoData",)
    assert _same([count, zE], [abort, zE])
    assert _same([pd, nd, abort, zE, ("BindComplete",), zI], [abort, zE, ("BindComplete",), zI])
    assert not _same([count, zI], [abort, zI])                     # not in a failed block
    assert not _same([pd, nd, ("BindComplete",), zT], [abort, zE])  # the block was fine
    assert not _same([("BindComplete",), zE], [abort, zE])          # PostgreSQL bound it
    assert not _same([count, zE], [("ErrorResponse", "ERROR", "ERROR", "26000", "x"), zE])
    assert not _same([pd, nd, abort, zE], [abort, zE, ("BindComplete",), zI])
