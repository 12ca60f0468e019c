"""Differential wire-level tests of the extended query protocol in transaction pooling mode.

Each named script is a deterministic sequence of frontend messages sent over raw sockets (after a
SCRAM login) by a few clients, often pipelined in a single write. The script runs once directly
against PostgreSQL and once through the pooler in transaction mode; every backend message each
client receives is normalised (see `normalise`) and the two streams must be equal, client by
client, batch by batch. PostgreSQL is the oracle: nothing here hard-codes what it answers, except
a few `codes=` checks that keep a script honest (they assert, on the direct run, that the error
the step is about really happens).

Server placement. With a pool of 2, `Session.place(k)` makes the next batch run on logical server
k (0 or 1): a *holder* client keeps the other server busy in an open transaction (BEGIN ... COMMIT),
so the pooler has exactly one server to give. Logical servers stay the same until `release()`.
That makes "prepared on one server, used on the other" deterministic instead of likely. With a
pool of 1 there are no holders: every client shares the one server, which exercises name
collisions instead. The holders' own BEGIN/COMMIT are compared like any other traffic.

Also checked for the pooler's streams: no ErrorResponse/NoticeResponse mentions a prepared
statement or portal name that the client did not use itself (the pooler's server-side names must
never leak), and the pooler never hangs (every read has a deadline; a Flush without Sync must be
answered without the Sync).

Not differential, by nature: SQL-level PREPARE in one transaction and EXECUTE in a later one.
PostgreSQL runs it in one session; a transaction pooler cannot promise that, so the issue only
asks that it works or fails clearly, never on another client's statement. That is
test_sql_level_prepare_never_runs_another_clients_statement, a property test. (PREPARE, EXECUTE
and DEALLOCATE within one transaction is differential: sql_prepare_in_one_transaction.)

Where the issue allows the pooler a choice, the comparison allows it too: a batch marked
`lenient` may get a clean ERROR (not FATAL, same ReadyForQuery status, no rows) instead of
PostgreSQL's answer: the unnamed statement bound after a Sync. cached_plan_result_type does not run
with a tiny LRU, where re-preparing an evicted statement may legitimately avoid the error.

test_direct_runs_are_reproducible runs every script twice against PostgreSQL: the scripts and the
normaliser are deterministic. test_checkers_catch_what_they_are_for checks the leak check and the
lenient comparison on made-up messages.

Run: USHER_BIN=build/src/usher /usr/bin/python3 -m pytest tests/integration/test_prepared_protocol.py -q
"""

from __future__ import annotations

import re
import struct
import threading
from dataclasses import dataclass, field
from typing import Callable

import pytest

from pgwire import (RawConnection, bind_msg, close_msg, copy_data_msg, copy_done_msg,
                    copy_fail_msg, count_ready_expected, describe_msg, execute_msg, flush_msg,
                    frontend_messages, function_call_msg, parse_data_row, parse_error_fields,
                    parse_parameter_description, parse_msg, parse_row_description, query_msg,
                    sync_msg)

USER, DB = "trading_app_user", "trading_db"
READ_TIMEOUT = 3.0    # a batch that takes longer is a hang
FLUSH_TIMEOUT = 2.0   # the answer to a Flush must come without a Sync

# Short names for the scripts.
P, B, D, E, C, Q = parse_msg, bind_msg, describe_msg, execute_msg, close_msg, query_msg
SYNC, FLUSH = sync_msg(), flush_msg()
INT4, TEXT, INT8 = 23, 25, 20

# Pooler configurations every script runs under (unless it opts out, see `script`).
CONFIGS = {
    "pool2": dict(pool_mode="transaction", pool_size=2, default_pool_size=2),
    "pool1": dict(pool_mode="transaction", pool_size=1, default_pool_size=1),
    # Tiny server-side LRU: statements are evicted and re-prepared all the time.
    "pool2-lru2": dict(pool_mode="transaction", pool_size=2, default_pool_size=2,
                       max_prepared_statements=2),
}


# =============================================================================================
# Normalisation


_TAG_NAMES = {
    "1": "ParseComplete", "2": "BindComplete", "3": "CloseComplete", "n": "NoData",
    "s": "PortalSuspended", "I": "EmptyQueryResponse", "c": "CopyDone", "t": "ParameterDescription",
    "T": "RowDescription", "D": "DataRow", "C": "CommandComplete", "Z": "ReadyForQuery",
    "E": "ErrorResponse", "N": "NoticeResponse", "G": "CopyInResponse", "H": "CopyOutResponse",
    "W": "CopyBothResponse", "d": "CopyData", "A": "NotificationResponse",
    "V": "FunctionCallResponse",
}


def normalise(tag: bytes, payload: bytes, relname: Callable[[int], str] = str) -> tuple | None:
    """A comparable form of one backend message; None for messages that are not compared:
    ParameterStatus (the pooler replays and filters them by design) and BackendKeyData (the
    pooler's own key). ErrorResponse/NoticeResponse keep severity (S, V), SQLSTATE and message;
    everything else is kept whole, except that a RowDescription names its columns' table by
    name, not OID (scripts recreate their tables before each run)."""
    t = tag.decode(errors="replace")
    name = _TAG_NAMES.get(t, f"?{t}")
    if t in ("S", "K"):
        return None
    if t in ("E", "N"):
        f = parse_error_fields(payload)
        return (name, f.get("S"), f.get("V"), f.get("C"), f.get("M"))
    if t == "T":
        return (name, tuple((col, relname(table) if table else 0, *rest)
                            for col, table, *rest in parse_row_description(payload)))
    if t == "D":
        return (name, tuple(None if v is None else v.decode(errors="replace")
                            for v in parse_data_row(payload)))
    if t == "t":
        return (name, tuple(parse_parameter_description(payload)))
    if t == "C":
        return (name, payload.rstrip(b"\0").decode())
    if t == "Z":
        return (name, payload.decode())
    if t == "d":
        return (name, payload.decode(errors="replace"))
    if t == "V":
        (length,) = struct.unpack("!i", payload[:4])
        return (name, None if length < 0 else payload[4:4 + length].decode(errors="replace"))
    if t == "A":
        # Process id differs by design; channel and payload must not.
        return (name, payload[4:].decode(errors="replace"))
    return (name, payload.hex()) if payload else (name,)


# Statement names a script's SQL mentions (PREPARE x, EXECUTE x, DEALLOCATE [PREPARE] x).
_SQL_NAME = re.compile(r'\b(?:PREPARE|EXECUTE|DEALLOCATE(?:\s+PREPARE)?)\s+("(?:[^"]|"")*"|\w+)',
                       re.IGNORECASE)


def sql_statement_names(sql: str) -> set[str]:
    out = set()
    for word in _SQL_NAME.findall(sql):
        out.add(word[1:-1].replace('""', '"') if word.startswith('"') else word.lower())
    return out - {"all", "prepare"}


_NAME_PATTERNS = [re.compile(r'prepared statement "([^"]*)"'), re.compile(r'portal "([^"]*)"')]


def mentioned_names(fields: dict[str, str]) -> set[str]:
    """Statement/portal names quoted in an ErrorResponse/NoticeResponse (any text field)."""
    out: set[str] = set()
    for code, value in fields.items():
        if code in ("M", "D", "H", "W", "q"):
            for pat in _NAME_PATTERNS:
                out.update(pat.findall(value))
    return out


def _cstr_at(payload: bytes, skip: int = 0) -> str:
    return payload[skip:].split(b"\0", 1)[0].decode(errors="replace")


def describe_frontend(data: bytes) -> str:
    """'Parse('s') Bind(''<-'s') Execute Sync': a label for a batch in failure reports."""
    parts = []
    for tag, payload in frontend_messages(data):
        t = tag.decode()
        if t == "P":
            parts.append(f"Parse({_cstr_at(payload)!r})")
        elif t == "B":
            portal = _cstr_at(payload)
            stmt = _cstr_at(payload, len(portal.encode()) + 1)
            parts.append(f"Bind({portal!r}<-{stmt!r})")
        elif t in ("D", "C"):
            what = "Describe" if t == "D" else "Close"
            parts.append(f"{what}({chr(payload[0])}:{_cstr_at(payload, 1)!r})")
        elif t == "E":
            rows = int.from_bytes(payload[-4:], "big")
            parts.append(f"Execute({_cstr_at(payload)!r}{f', {rows}' if rows else ''})")
        elif t == "Q":
            parts.append(f"Query({_cstr_at(payload)[:48]!r})")
        elif t == "F":
            parts.append(f"FunctionCall({int.from_bytes(payload[:4], 'big')})")
        else:
            parts.append({"S": "Sync", "H": "Flush", "d": "CopyData", "c": "CopyDone",
                          "f": "CopyFail"}.get(t, t))
    if len(parts) > 12:
        parts = parts[:6] + [f"... ({len(parts) - 10} more) ..."] + parts[-4:]
    return " ".join(parts)


# =============================================================================================
# Running a script


class Aborted(Exception):
    """The run stopped: a read timed out or a connection closed (recorded in the stream)."""


@dataclass
class Segment:
    """What one client received for one read."""
    label: str
    msgs: list[tuple]
    lenient: bool = False     # a clean ERROR instead of PostgreSQL's answer is acceptable
    codes: tuple | None = None  # SQLSTATEs the direct run must show (script self-check)


@dataclass(eq=False)
class Client:
    label: str
    raw: RawConnection
    segments: list[Segment] = field(default_factory=list)
    pending: int = 0                      # ReadyForQuery still expected
    names: set[str] = field(default_factory=set)  # statement/portal names this client used
    sent: list[str] = field(default_factory=list)  # batches since the last read
    leaks: list[str] = field(default_factory=list)


class Session:
    """One execution of a script against one endpoint (PostgreSQL or the pooler)."""

    def __init__(self, endpoint: str, host: str, port: int, password: str, n_clients: int,
                 pool_size: int, relname: Callable[[int], str] = str):
        assert pool_size in (1, 2)
        self.relname = relname
        self.endpoint = endpoint
        self.pool_size = pool_size
        self.aborted: str | None = None
        self.lock = threading.Lock()
        self.all: list[Client] = []
        n_holders = 2 if pool_size == 2 else 0
        try:
            for i in range(n_clients + n_holders):
                raw = RawConnection(host, port, timeout=READ_TIMEOUT)
                self.all.append(Client(f"c{i}" if i < n_clients else f"holder{i - n_clients}", raw))
                raw.login(USER, DB, password)
        except BaseException:
            self.close()
            raise
        self.clients = self.all[:n_clients]
        self.holders = self.all[n_clients:]
        self.held: tuple[int, Client] | None = None  # (logical server, holder keeping it busy)

    def close(self) -> None:
        for c in self.all:
            try:
                c.raw.close()
            except OSError:
                pass

    # -- primitives ------------------------------------------------------------------------

    def _check(self) -> None:
        if self.aborted:
            raise Aborted(self.aborted)

    def send(self, c: Client, *msgs: bytes) -> None:
        self._check()
        data = b"".join(msgs)
        for tag, payload in frontend_messages(data):
            t = tag.decode()
            if t == "P":
                name = _cstr_at(payload)
                c.names.add(name)
                c.names |= sql_statement_names(_cstr_at(payload, len(name.encode()) + 1))
            elif t == "Q":
                c.names |= sql_statement_names(_cstr_at(payload))
            elif t == "B":
                portal, stmt = payload.split(b"\0")[:2]
                c.names.update((portal.decode(), stmt.decode()))
            elif t in ("D", "C"):
                c.names.add(payload[1:].rstrip(b"\0").decode())
            elif t == "E":
                c.names.add(payload.split(b"\0", 1)[0].decode())
        c.pending += count_ready_expected(data)
        c.sent.append(describe_frontend(data))
        try:
            c.raw.send(data)
        except OSError as exc:
            self._record(c, [], f"<send failed: {exc!r}>", False, None)

    def read(self, c: Client, lenient: bool = False, codes: tuple | None = None) -> None:
        """Everything up to the ReadyForQuery of every Query/Sync sent since the last read."""
        self._check()
        n, c.pending = c.pending, 0
        try:
            raw_msgs = c.raw.read_until_ready(n)
            failure = None
        except TimeoutError as exc:
            raw_msgs = exc.partial
            failure = f"<TIMEOUT: no ReadyForQuery #{n} within {READ_TIMEOUT}s>"
        except ConnectionError as exc:
            raw_msgs, failure = exc.partial, "<CONNECTION CLOSED>"
        self._record(c, raw_msgs, failure, lenient, codes)

    def read_n(self, c: Client, n: int, codes: tuple | None = None) -> None:
        """Exactly n messages, without waiting for a ReadyForQuery (after a Flush)."""
        self._check()
        try:
            raw_msgs = c.raw.read_n_messages(n, timeout=FLUSH_TIMEOUT)
            failure = None
        except TimeoutError as exc:
            raw_msgs = exc.partial
            failure = f"<TIMEOUT: {n} messages expected within {FLUSH_TIMEOUT}s>"
        except ConnectionError as exc:
            raw_msgs, failure = exc.partial, "<CONNECTION CLOSED>"
        self._record(c, raw_msgs, failure, False, codes)

    def _record(self, c: Client, raw_msgs, failure: str | None, lenient: bool, codes) -> None:
        msgs = []
        for tag, payload in raw_msgs:
            if tag in (b"E", b"N"):
                fields = parse_error_fields(payload)
                for name in sorted(mentioned_names(fields) - c.names):
                    c.leaks.append(f"{c.label}: {fields.get('M')!r} names {name!r}, which the "
                                   f"client never used")
            norm = normalise(tag, payload, self.relname)
            if norm is not None:
                msgs.append(norm)
        if failure:
            msgs.append((failure,))
        label = " | ".join(c.sent) or "(nothing sent)"
        c.sent = []
        c.segments.append(Segment(label, msgs, lenient, codes))
        if failure:
            with self.lock:
                if not self.aborted:
                    self.aborted = f"{c.label}: {failure} after {label}"
            raise Aborted(self.aborted)

    # -- composites ------------------------------------------------------------------------

    def exchange(self, c: Client, *msgs: bytes, lenient: bool = False, codes=None) -> None:
        self.send(c, *msgs)
        self.read(c, lenient=lenient, codes=codes)

    def step(self, server: int, c: Client, *msgs: bytes, lenient: bool = False, codes=None) -> None:
        """Send a batch on logical server `server` and read its answers."""
        self.place(server)
        self.exchange(c, *msgs, lenient=lenient, codes=codes)

    def place(self, server: int) -> None:
        """Make logical server `server` the only free one (pool of 2), by keeping the other busy
        with a holder's open transaction. The caller must not leave a transaction open."""
        assert server in (0, 1)
        if self.pool_size == 1:
            return
        busy = 1 - server
        if self.held is not None and self.held[0] == busy:
            return
        holder = self.holders[0] if self.held is None or self.held[1] is self.holders[1] \
            else self.holders[1]
        self.exchange(holder, Q("BEGIN"))   # gets the only free server: that one is `busy`
        if self.held is not None:
            self.exchange(self.held[1], Q("COMMIT"))
        self.held = (busy, holder)

    def release(self) -> None:
        """Free both servers; logical server numbers start afresh at the next place()."""
        if self.held is not None:
            self.exchange(self.held[1], Q("COMMIT"))
            self.held = None

    def concurrently(self, work: dict[Client, Callable[[Client], None]]) -> None:
        """Each client's work in its own thread (it must use only its own client)."""
        self.release()
        errors: list[BaseException] = []

        def run(c, fn):
            try:
                fn(c)
            except Aborted:
                pass
            except BaseException as exc:  # noqa: BLE001 - re-raised below
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(c, fn), daemon=True)
                   for c, fn in work.items()]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        if errors:
            raise errors[0]
        self._check()


@dataclass
class Script:
    name: str
    fn: Callable[[Session], None]
    clients: int
    setup: tuple[str, ...]
    configs: tuple[str, ...]


SCRIPTS: dict[str, Script] = {}


def script(clients: int = 1, setup: tuple[str, ...] = (),
           configs: tuple[str, ...] = tuple(CONFIGS)):
    def register(fn):
        SCRIPTS[fn.__name__] = Script(fn.__name__, fn, clients, setup, configs)
        return fn
    return register


def run_script(sc: Script, pg, host: str, port: int, pool_size: int, endpoint: str) -> Session:
    if sc.setup:
        with pg.connect(USER, DB) as conn:
            for sql in sc.setup:
                conn.execute(sql)
    admin = pg.admin(DB)
    lock = threading.Lock()
    cache: dict[int, str] = {}

    def relname(oid: int) -> str:
        with lock:
            if oid not in cache:
                row = admin.execute("SELECT relname FROM pg_class WHERE oid = %s",
                                    (oid,)).fetchone()
                cache[oid] = row[0] if row else f"<oid {oid}>"
            return cache[oid]

    try:
        s = Session(endpoint, host, port, pg.passwords[USER], sc.clients, pool_size, relname)
    except BaseException:
        admin.close()
        raise
    try:
        try:
            sc.fn(s)
            s.release()
        except Aborted:
            pass
    finally:
        s.close()
        admin.close()
    return s


def _fmt(msgs: list[tuple]) -> str:
    return "\n".join(f"      {m}" for m in msgs) or "      (nothing)"


def clean_error(got: list[tuple], expected: list[tuple]) -> bool:
    """A lenient batch: an ERROR (not FATAL) and nothing that looks like a result, ending in the
    same ReadyForQuery as PostgreSQL's."""
    if not got or not expected or got[-1] != expected[-1] or got[-1][0] != "ReadyForQuery":
        return False
    kinds = [m[0] for m in got]
    if "DataRow" in kinds or "CommandComplete" in kinds:
        return False
    errors = [m for m in got if m[0] == "ErrorResponse"]
    return bool(errors) and all(m[2] == "ERROR" for m in errors)


def differences(direct: Session, pooled: Session, what: str = "pooler") -> list[str]:
    """The first differing batch of each client (later ones often follow from it), with a count
    of the others."""
    out = []
    for cd, cp in zip(direct.all, pooled.all):
        differing = []
        for i in range(max(len(cd.segments), len(cp.segments))):
            sd = cd.segments[i] if i < len(cd.segments) else None
            sp = cp.segments[i] if i < len(cp.segments) else None
            if sd is not None and sp is not None and sd.msgs == sp.msgs:
                continue
            if sd is not None and sp is not None and sd.lenient and clean_error(sp.msgs, sd.msgs):
                continue
            differing.append((i, sd, sp))
        if not differing:
            continue
        i, sd, sp = differing[0]
        more = len(differing) - 1
        out.append(f"{cd.label}, batch #{i}: {(sd or sp).label}\n"
                   f"    postgres:\n{_fmt(sd.msgs) if sd else '      (batch not run)'}\n"
                   f"    {what}:\n{_fmt(sp.msgs) if sp else '      (batch not run)'}"
                   + (f"\n    (+{more} later batch{'es' if more > 1 else ''} of {cd.label} differ"
                      f" too: #{', #'.join(str(d[0]) for d in differing[1:8])}"
                      f"{', ...' if more > 7 else ''})" if more else ""))
    return out


def check_script_intent(s: Session) -> None:
    """The direct run must be complete and show the errors the script is written around."""
    assert s.aborted is None, f"script bug: the direct run against PostgreSQL stopped: {s.aborted}"
    for c in s.all:
        for seg in c.segments:
            if seg.codes is None:
                continue
            got = tuple(m[3] for m in seg.msgs if m[0] == "ErrorResponse")
            assert got == tuple(seg.codes), (f"script bug: {c.label} {seg.label}: PostgreSQL "
                                             f"answered SQLSTATEs {got}, the script expects "
                                             f"{seg.codes}:\n{_fmt(seg.msgs)}")


# =============================================================================================
# Scripts


def select_sum(i: int) -> str:
    return f"SELECT $1::int + {i * 1000} AS c{i}_sum"


@script(clients=2)
def named_statement_follows_client(s):
    """Parse once, Bind on the other server (re-prepare), several statements per pipeline."""
    a, b = s.clients
    s.step(0, a, P("s", select_sum(1)), B("", "s", [1]), E(), SYNC, codes=())
    s.step(1, a, B("", "s", [2]), E(), SYNC, codes=())
    s.step(1, b, Q("SELECT 'noise from c1'"))
    s.step(0, a, B("", "s", [3]), E(), SYNC)
    s.step(1, a, P("t", "SELECT $1::text || '-from-c0' AS c0_text"), B("", "t", ["x"]), E(), SYNC)
    s.step(0, a, B("", "s", [4]), E(), B("", "t", ["y"]), E(), SYNC)
    s.step(1, a, B("", "t", ["z"]), E(), SYNC, B("", "s", [5]), E(), SYNC)
    s.step(0, b, P("s", select_sum(2)), B("", "s", [6]), E(), SYNC)
    s.step(1, b, B("", "s", [7]), E(), SYNC)
    s.step(1, a, B("", "s", [8]), E(), SYNC)
    s.step(0, a, P("u", "SELECT $1::int * 3 + 10000 AS c0_u"), SYNC)
    s.step(1, a, B("", "u", [9]), E(), B("", "t", ["w"]), E(), B("", "s", [10]), E(), SYNC)
    s.step(0, b, B("", "s", [11]), E(), SYNC)


@script(clients=3)
def same_name_different_sql(s):
    """Every client has its own "s", "q" and unnamed statement: names are private per client."""
    cs = s.clients
    sqls = [
        ("SELECT $1::int + 1000 AS c0_v", "SELECT 'c0'::text AS who, $1::text AS arg"),
        ("SELECT $1::text || '-c1' AS c1_v, 42 AS c1_extra", "SELECT 'c1'::text AS who"),
        ("SELECT ($1::int8 * 3)::text AS c2_v", "SELECT 'c2'::text AS who, $1::int + $2::int AS s"),
    ]
    qparams = [["a"], [], [1, 2]]
    for i, c in enumerate(cs):
        s.step(i % 2, c, P("s", sqls[i][0]), P("q", sqls[i][1]), D("S", "s"), D("S", "q"), SYNC)
    for rnd in range(3):
        for i, c in enumerate(cs):
            s.step((i + rnd + 1) % 2, c, B("", "s", [rnd + 7]), E(), B("p", "q", qparams[i]),
                   D("P", "p"), E("p"), SYNC, codes=())
    for i, c in enumerate(cs):
        s.step(i % 2, c, P("", f"SELECT 'unnamed of c{i}'::text AS u{i}"), B("", ""), E(), SYNC)
        s.step((i + 1) % 2, c, P("", f"SELECT 'again c{i}'::text AS v{i}, $1::int AS n",
                                 [INT4]), D("S", ""), B("", "", [i]), E(), SYNC)


@script(clients=3)
def same_sql_different_names(s):
    """Identical SQL under different names (shareable server-side), one client closes its copy;
    the same text with different declared parameter types is a different statement."""
    a, b, c = s.clients
    sql = "SELECT $1 AS v"
    s.step(0, a, P("a1", sql, [INT4]), D("S", "a1"), B("", "a1", [1]), E(), SYNC)
    s.step(0, b, P("b1", sql, [INT4]), D("S", "b1"), B("", "b1", [2]), E(), SYNC)
    s.step(1, c, P("c1", sql, [TEXT]), D("S", "c1"), B("", "c1", ["text for c2"]), E(), SYNC)
    s.step(0, c, B("", "c1", ["c2 on server 0"]), E(), D("S", "c1"), SYNC)
    s.step(1, a, B("", "a1", [3]), E(), SYNC)
    s.step(1, b, B("", "b1", [4]), E(), SYNC)
    # a closes its copy; b's must live on, on both servers.
    s.step(0, a, C("S", "a1"), SYNC)
    s.step(0, b, B("", "b1", [5]), E(), SYNC)
    s.step(1, b, B("", "b1", [6]), E(), SYNC)
    s.step(1, a, B("", "a1", [7]), E(), SYNC, codes=("26000",))
    s.step(1, a, P("a1", sql, [INT4]), B("", "a1", [8]), E(), SYNC)
    s.step(0, a, B("", "a1", [9]), E(), SYNC)
    # The same name in a and b for the same text with different types: private all the same.
    s.step(0, a, P("same", sql, [INT8]), D("S", "same"), SYNC)
    s.step(1, b, P("same", sql, [TEXT]), D("S", "same"), SYNC)
    s.step(1, a, B("", "same", ["9000000000"]), E(), SYNC)
    s.step(0, b, B("", "same", ["b text"]), E(), SYNC)
    s.step(0, c, B("", "c1", ["not an int"]), E(), SYNC, codes=())


@script(clients=2)
def duplicate_parse(s):
    """42P05 for a name the client has, wherever the statement is prepared; the pipeline is
    discarded to Sync; the original statement stays; the unnamed statement may be replaced."""
    a, b = s.clients
    s.step(0, a, P("x", "SELECT 'x first'::text AS x"), SYNC)
    s.step(0, a, P("x", "SELECT 'x first'::text AS x"), B("", "x"), E(), SYNC, codes=("42P05",))
    s.step(1, a, P("x", "SELECT 'x second'::text AS x"), B("", "x"), E(), SYNC, codes=("42P05",))
    s.step(1, a, B("", "x"), E(), SYNC, codes=())
    s.step(0, a, P("y", "SELECT 2 AS y"), P("y", "SELECT 2 AS y"), B("", "y"), E(), SYNC,
           codes=("42P05",))
    s.step(1, a, B("", "y"), E(), SYNC, codes=())
    # b may use the names a has.
    s.step(0, b, P("x", "SELECT 'x of c1'::text AS bx"), B("", "x"), E(), SYNC, codes=())
    s.step(1, b, P("x", "SELECT 1"), SYNC, codes=("42P05",))
    # Unnamed: a second Parse replaces it, no error.
    s.step(0, a, P("", "SELECT 'u1'::text"), P("", "SELECT 'u2'::text AS u"), B("", ""), E(), SYNC,
           codes=())
    # After the error, a Query works and so does the statement.
    s.step(1, a, P("x", "SELECT 3"), SYNC, Q("SELECT 'still fine'"), B("", "x"), E(), SYNC,
           codes=("42P05",))


@script(clients=1)
def unknown_names(s):
    """26000 for an unknown statement, 34000 for an unknown portal; closing an unknown name is
    not an error."""
    (a,) = s.clients
    s.step(0, a, B("", "nope"), E(), SYNC, codes=("26000",))
    s.step(1, a, D("S", "nope"), SYNC, codes=("26000",))
    s.step(0, a, D("P", "nope"), SYNC, codes=("34000",))
    s.step(1, a, E("nope"), SYNC, codes=("34000",))
    s.step(0, a, C("S", "nope"), C("P", "nope"), C("S", ""), C("P", ""), SYNC, codes=())
    s.step(1, a, B("", ""), SYNC, codes=("26000",))
    s.step(0, a, D("S", ""), SYNC, codes=("26000",))
    s.step(1, a, C("S", "nope"), B("", "nope"), C("S", "nope2"), SYNC, codes=("26000",))
    s.step(0, a, Q("SELECT 'usable'"), codes=())
    s.step(0, a, P("known", "SELECT 1 AS k"), SYNC, B("", "nope2"), SYNC, B("", "known"), E(), SYNC,
           codes=("26000",))


@script(clients=2)
def describe_statement_and_portal(s):
    """Describe 'S' and 'P' in every position, including a Describe of a statement prepared on
    the other server, binary result formats, NoData, and a portal run in pieces (max_rows)."""
    a, b = s.clients
    s.step(0, a, P("s", "SELECT $1::int4 + 1 AS x, $2::text AS y"), D("S", "s"), SYNC)
    s.step(1, a, D("S", "s"), SYNC, codes=())
    s.step(0, a, B("p1", "s", [1, "one"]), D("P", "p1"), E("p1"), SYNC)
    s.step(1, a, B("p2", "s", [2, "two"], result_formats=[1]), D("P", "p2"), E("p2"), SYNC)
    s.step(0, a, P("typed", "SELECT $1 AS a, $2 AS b", [INT8, TEXT]), SYNC)
    s.step(1, a, D("S", "typed"), B("", "typed", ["7", "seven"]), D("P", ""), E(), SYNC)
    s.step(0, a, P("nodata", "DO $$ BEGIN RAISE NOTICE 'notice from c0'; END $$"), D("S", "nodata"),
           B("", "nodata"), D("P", ""), E(), SYNC)
    s.step(1, a, D("S", "nodata"), B("", "nodata"), E(), SYNC)
    s.step(0, a, P("series", "SELECT g, 'row ' || g AS label FROM generate_series(1, $1::int) g"),
           SYNC)
    s.step(1, a, B("cur", "series", [5]), D("P", "cur"), E("cur", 2), E("cur", 2), E("cur", 2),
           SYNC)
    s.step(0, a, B("cur", "series", [3]), E("cur", 1), C("P", "cur"), E("cur", 1), SYNC,
           codes=("34000",))
    s.step(1, b, P("s", "SELECT 'c1'::text AS other_shape"), D("S", "s"), SYNC)
    s.step(0, b, D("S", "s"), B("", "s"), D("P", ""), E(), SYNC)
    s.step(0, a, D("S", "s"), D("S", "series"), D("S", "typed"), SYNC)


@script(clients=2)
def close_statement(s):
    """Close then Bind → 26000; Close then re-Parse the same name with other SQL; a Close that
    an earlier error in the pipeline skips removes nothing."""
    a, b = s.clients
    s.step(0, a, P("s", "SELECT 'first ' || $1::text AS v1"), B("", "s", ["a"]), E(), SYNC)
    s.step(1, a, B("", "s", ["b"]), E(), SYNC)   # now prepared for it on both servers
    s.step(1, a, C("S", "s"), SYNC)
    s.step(0, a, B("", "s", ["c"]), E(), SYNC, codes=("26000",))
    s.step(1, a, B("", "s", ["c"]), E(), SYNC, codes=("26000",))
    s.step(0, a, P("s", "SELECT 'second'::text AS v2, $1::int AS n"), B("", "s", [2]), E(), SYNC)
    s.step(1, a, B("", "s", [3]), E(), SYNC, codes=())
    # Close and re-Parse in one pipeline.
    s.step(0, a, C("S", "s"), P("s", "SELECT 'third'::text AS v3"), B("", "s"), E(), SYNC)
    s.step(1, a, B("", "s"), E(), SYNC)
    # Close skipped after an error: the statement survives.
    s.step(0, a, B("", "nope"), C("S", "s"), SYNC, codes=("26000",))
    s.step(1, a, B("", "s"), E(), SYNC, codes=())
    s.step(0, a, B("", "s"), E(), SYNC, codes=())
    # Parse + Close in one pipeline, then Bind on the other server.
    s.step(1, a, P("t", "SELECT 't'"), C("S", "t"), B("", "t"), SYNC, codes=("26000",))
    s.step(0, a, B("", "t"), SYNC, codes=("26000",))
    # Close a portal, and the unnamed statement.
    s.step(1, a, P("", "SELECT 'unnamed'"), B("por", ""), C("P", "por"), E("por"), SYNC,
           codes=("34000",))
    s.step(0, a, P("", "SELECT 'unnamed 2'"), C("S", ""), B("", ""), SYNC, codes=("26000",))
    # Another client's statement of the same name is untouched by all this.
    s.step(1, b, P("s", "SELECT 'c1 s'::text AS b_s"), SYNC)
    s.step(1, a, C("S", "s"), SYNC)
    s.step(1, b, B("", "s"), E(), SYNC, codes=())
    s.step(0, b, B("", "s"), E(), SYNC, codes=())


@script(clients=2)
def flush_without_sync(s):
    """Flush after Parse/Bind/Describe/Execute is answered at once, without a Sync: also when the
    statement is already prepared on that server (the pooler answers itself) and when it has to
    be re-prepared first."""
    a, b = s.clients
    shared = "SELECT $1::int * 2 AS doubled"
    s.step(0, b, P("bx", shared), B("", "bx", [1]), E(), SYNC)   # shared SQL now on server 0
    s.place(0)
    s.send(a, P("ax", shared), FLUSH)
    s.read_n(a, 1)                                     # ParseComplete
    s.send(a, B("", "ax", [21]), E(), FLUSH)
    s.read_n(a, 3)                                     # BindComplete, DataRow, CommandComplete
    s.send(a, D("S", "ax"), FLUSH)
    s.read_n(a, 2)                                     # ParameterDescription, RowDescription
    s.send(a, SYNC)
    s.read(a)
    # A new statement, never prepared anywhere.
    s.place(1)
    s.send(a, P("ay", "SELECT 'ay'::text || $1 AS ay"), FLUSH)
    s.read_n(a, 1)
    s.send(a, B("", "ay", ["!"]), E(), FLUSH)
    s.read_n(a, 3)
    s.send(a, SYNC)
    s.read(a)
    # Describe/Bind of a statement known only on the other server, answered on Flush.
    s.place(0)
    s.send(a, D("S", "ay"), FLUSH)
    s.read_n(a, 2)
    s.send(a, B("", "ay", ["?"]), E(), FLUSH)
    s.read_n(a, 3)
    s.send(a, SYNC)
    s.read(a)
    # Two Parses, the second a duplicate: the error is flushed at once too.
    s.place(1)
    s.send(a, P("az", "SELECT 'az'"), FLUSH)
    s.read_n(a, 1)
    s.send(a, P("az", "SELECT 'az'"), FLUSH)
    s.read_n(a, 1, codes=("42P05",))
    s.send(a, SYNC)
    s.read(a)
    # Close + Flush.
    s.place(0)
    s.send(a, C("S", "az"), FLUSH)
    s.read_n(a, 1)
    s.send(a, P("az", "SELECT 'az again'"), B("", "az"), E(), FLUSH)
    s.read_n(a, 4)
    s.send(a, SYNC)
    s.read(a)
    s.step(1, a, B("", "ax", [22]), E(), SYNC)


@script(clients=2)
def error_mid_pipeline(s):
    """An error mid-pipeline discards to Sync: later Parses are not done (b must not exist), the
    statement parsed before the error does exist; a failed Parse leaves no ghost."""
    a, b = s.clients
    s.step(0, a, P("a", "SELECT 10 / $1::int AS q"), B("", "a", [0]), E(),
           P("b", "SELECT 'b'::text"), B("", "b"), E(), SYNC, codes=("22012",))
    s.step(1, a, B("", "b"), E(), SYNC, codes=("26000",))
    s.step(0, a, B("", "b"), E(), SYNC, codes=("26000",))
    s.step(1, a, B("", "a", [5]), E(), SYNC, codes=())
    s.step(0, a, P("b", "SELECT 'b now'::text"), B("", "b"), E(), SYNC, codes=())
    # A failed Parse (syntax, unknown table) leaves nothing; re-Parse with good SQL works.
    s.step(1, a, P("c", "SELEC 1"), SYNC, codes=("42601",))
    s.step(0, a, B("", "c"), E(), SYNC, codes=("26000",))
    s.step(1, a, P("c", "SELECT * FROM no_such_table_here"), B("", "c"), E(), SYNC,
           codes=("42P01",))
    s.step(0, a, P("c", "SELECT 'c ok'::text"), B("", "c"), E(), SYNC, codes=())
    # Error in Bind: wrong parameter count / bad input (the message names the statement).
    s.step(1, a, P("two", "SELECT $1::int + $2::int AS t"), SYNC)
    s.step(0, a, B("", "two", [1]), E(), SYNC, codes=("08P01",))
    s.step(1, a, B("", "two", ["x", "1"]), E(), SYNC, codes=("22P02",))
    s.step(0, a, B("", "two", [1, 2]), E(), SYNC, codes=())
    # Several Syncs: only the failing one's segment is discarded.
    s.step(1, a, P("d", "SELECT 'd'::text"), SYNC, B("", "a", [0]), E(), P("e", "SELECT 'e'"), SYNC,
           B("", "d"), E(), P("f", "SELECT 'f'::text"), B("", "f"), E(), SYNC, codes=("22012",))
    s.step(0, a, B("", "e"), SYNC, codes=("26000",))
    s.step(1, a, B("", "f"), E(), B("", "d"), E(), SYNC, codes=())
    # Another client parsing the same name meanwhile is unaffected.
    s.step(0, b, P("b", "SELECT 'b of c1'::text"), B("", "b"), E(), SYNC, codes=())
    s.step(1, b, B("", "b"), E(), SYNC, codes=())
    # Messages the pooler could answer itself (a Parse of SQL already prepared on the server, a
    # Close) are skipped after an error like any other: no ParseComplete/CloseComplete, no ghost.
    s.step(0, a, P("known", "SELECT 'known'::text AS k"), SYNC)
    s.step(0, a, B("", "nope"), P("known2", "SELECT 'known'::text AS k"), B("", "known2"), E(),
           C("S", "known"), SYNC, codes=("26000",))
    s.step(0, a, B("", "a", [0]), E(), P("known3", "SELECT 'known'::text AS k"), C("S", "known"),
           SYNC, codes=("22012",))
    s.step(1, a, B("", "known2"), SYNC, B("", "known3"), SYNC, B("", "known"), E(), SYNC,
           codes=("26000", "26000"))
    s.step(0, a, B("", "known"), E(), SYNC, codes=())
    # Error in Execute after a re-prepare on the other server.
    s.step(1, a, B("", "a", [0]), E(), B("", "b"), E(), SYNC, codes=("22012",))
    s.step(0, a, B("", "b"), E(), SYNC, codes=())


@script(clients=3)
def many_syncs_in_flight(s):
    """50 × (Bind/Execute/Sync) in one write; 30 × (Parse/Bind/Execute/Sync) with failures;
    then three clients doing it at once."""
    a = s.clients[0]
    s.step(0, a, P("s", select_sum(7)), SYNC)
    s.step(1, a, *[m for i in range(50) for m in (B("", "s", [i]), E(), SYNC)])
    batch = []
    for i in range(30):
        sql = f"SELECT 100 / $1::int AS q{i}"
        batch += [P(f"p{i}", sql), B("", f"p{i}", [0 if i % 7 == 3 else i + 1]), E(), SYNC]
    s.step(0, a, *batch)
    # Every p{i} whose Sync did not fail exists; the failed ones do not.
    s.step(1, a, *[m for i in range(30) for m in (B("", f"p{i}", [1]), E(), SYNC)])
    s.step(0, a, *[m for i in range(30) for m in (D("S", f"p{i}"), SYNC)])

    def work(c):
        idx = s.clients.index(c)
        s.exchange(c, P("w", select_sum(idx + 20)), SYNC)
        for rnd in range(5):
            msgs = []
            for i in range(10):
                msgs += [B("", "w", [rnd * 10 + i]), E(), SYNC]
                if i == 4:
                    msgs += [P(f"w{rnd}", f"SELECT {idx} * 100 + {rnd} AS c{idx}_r"),
                             B("", f"w{rnd}"), E(), SYNC]
            s.exchange(c, *msgs)
        s.exchange(c, *[m for rnd in range(5) for m in (B("", f"w{rnd}"), E())], SYNC)

    s.concurrently({c: work for c in s.clients})


@script(clients=3)
def unnamed_statement_across_sync(s):
    """The unnamed statement survives a Sync; binding it later must give this client's statement
    (or a clean error), never another client's."""
    cs = s.clients
    for i, c in enumerate(cs):
        s.step(0, c, P("", f"SELECT 'c{i}:' || $1::text AS from_c{i}"), SYNC)
    for i, c in enumerate(cs):
        s.step(0, c, B("", "", ["late"]), E(), SYNC, lenient=True)
        s.step(0, c, Q(f"SELECT 'c{i} after'"))
    for i, c in enumerate(cs):
        s.step(1, c, P("", f"SELECT 'c{i} second:' || $1::text AS again_c{i}"), SYNC)
    for i, c in enumerate(reversed(cs)):
        s.step(i % 2, c, D("S", ""), B("", "", ["x"]), E(), SYNC, lenient=True)
    # The unnamed portal does not survive a Sync.
    for i, c in enumerate(cs):
        s.step(i % 2, c, P("", f"SELECT 'portal c{i}'"), B("", ""), SYNC, E(""), SYNC,
               codes=("34000",))

    def work(c):
        idx = cs.index(c)
        for rnd in range(15):
            s.exchange(c, P("", f"SELECT 'c{idx}/{rnd}:' || $1::text AS c{idx}"), SYNC)
            s.exchange(c, B("", "", [rnd]), E(), SYNC, lenient=True)
            s.exchange(c, Q("SELECT 1"))

    s.concurrently({c: work for c in cs})


@script(clients=2)
def sql_deallocate_and_discard(s):
    """DEALLOCATE name / ALL and DISCARD ALL sent as SQL drop this client's protocol-level
    statements (26000 after) and only this client's; re-Parse works."""
    a, b = s.clients
    s.step(0, b, P("s", "SELECT 'c1 s'::text AS b_s"), SYNC)
    s.step(1, b, B("", "s"), E(), SYNC)
    s.step(0, a, P("s", "SELECT 'c0 s'::text AS a_s"), B("", "s"), E(), SYNC)
    s.step(1, a, Q("DEALLOCATE s"), codes=())
    s.step(0, a, B("", "s"), E(), SYNC, codes=("26000",))
    s.step(1, a, B("", "s"), E(), SYNC, codes=("26000",))
    s.step(1, b, B("", "s"), E(), SYNC, codes=())
    s.step(0, b, B("", "s"), E(), SYNC, codes=())
    s.step(0, a, P("s", "SELECT 'c0 s again'::text AS a_s2"), B("", "s"), E(), SYNC, codes=())
    s.step(1, a, Q("DEALLOCATE PREPARE s"), B("", "s"), SYNC, codes=("26000",))
    s.step(0, a, Q("DEALLOCATE s"), codes=("26000",))
    # ALL
    s.step(0, a, P("p1", "SELECT 'p1'::text"), P("p2", "SELECT 'p2'::text"), SYNC)
    s.step(1, a, B("", "p1"), E(), SYNC)
    s.step(1, a, Q("DEALLOCATE ALL"), codes=())
    s.step(0, a, B("", "p1"), E(), SYNC, codes=("26000",))
    s.step(1, a, B("", "p2"), E(), SYNC, codes=("26000",))
    s.step(0, b, B("", "s"), E(), SYNC, codes=())
    s.step(0, a, P("p1", "SELECT 'p1 again'::text"), B("", "p1"), E(), SYNC, codes=())
    s.step(1, a, B("", "p1"), E(), SYNC, codes=())
    # DISCARD ALL
    s.step(0, a, P("p3", "SELECT 'p3'::text"), SYNC)
    s.step(1, a, Q("DISCARD ALL"), codes=())
    s.step(1, a, B("", "p1"), E(), SYNC, codes=("26000",))
    s.step(0, a, B("", "p3"), E(), SYNC, codes=("26000",))
    s.step(1, b, B("", "s"), E(), SYNC, codes=())
    s.step(0, b, B("", "s"), E(), SYNC, codes=())
    s.step(0, a, P("p3", "SELECT 'p3 again'::text"), B("", "p3"), E(), SYNC, codes=())
    # In the extended protocol, and inside a transaction that rolls back (not transactional).
    s.step(1, a, P("", "DEALLOCATE p3"), B("", ""), E(), SYNC, codes=())
    s.step(0, a, B("", "p3"), SYNC, codes=("26000",))
    s.step(0, a, P("p4", "SELECT 'p4'::text"), SYNC)
    s.step(1, a, Q("BEGIN; DEALLOCATE p4; ROLLBACK"), codes=())
    s.step(0, a, B("", "p4"), SYNC, codes=("26000",))
    # Identifier case: the SQL name is folded unless quoted.
    s.step(1, a, P("MixedCase", "SELECT 'mc'::text"), SYNC)
    s.step(0, a, Q("DEALLOCATE MixedCase"), codes=("26000",))
    s.step(1, a, B("", "MixedCase"), E(), SYNC, codes=())
    s.step(0, a, Q('DEALLOCATE "MixedCase"'), codes=())
    s.step(1, a, B("", "MixedCase"), SYNC, codes=("26000",))
    # DISCARD ALL cannot run in a transaction block; nothing is dropped then.
    s.step(0, a, P("p5", "SELECT 'p5'::text"), SYNC)
    s.step(1, a, Q("BEGIN"), Q("DISCARD ALL"), Q("ROLLBACK"), codes=None)
    s.step(0, a, B("", "p5"), E(), SYNC, codes=())


@script(clients=2)
def sql_prepare_in_one_transaction(s):
    """SQL-level PREPARE/EXECUTE/DEALLOCATE within one transaction (the only differential form;
    see the module docstring). Names collide with the other client's protocol-level names."""
    a, b = s.clients
    s.step(0, b, P("q", "SELECT 'c1 protocol q'::text"), SYNC)
    s.step(0, a, Q("PREPARE q(int) AS SELECT $1 + 5000 AS c0_q; EXECUTE q(1); DEALLOCATE q"),
           codes=())
    s.step(1, a, Q("BEGIN"), Q("PREPARE q AS SELECT 'c0 sql q'::text"), Q("EXECUTE q"),
           Q("DEALLOCATE q"), Q("COMMIT"), codes=())
    s.step(0, b, B("", "q"), E(), SYNC, codes=())
    s.step(1, b, B("", "q"), E(), SYNC, codes=())


@script(clients=2, setup=("DROP TABLE IF EXISTS pp_tx",
                          "CREATE TABLE pp_tx (id int PRIMARY KEY, who text)"))
def explicit_transactions(s):
    """BEGIN; error → 25P02 for everything until ROLLBACK; ReadyForQuery T/E/I as PostgreSQL;
    statements parsed in a transaction outlive its rollback; Parse fails in an aborted one."""
    a, b = s.clients
    s.step(0, a, P("ins", "INSERT INTO pp_tx VALUES ($1::int, $2::text)"), SYNC)
    s.step(1, a, P("cnt", "SELECT count(*) AS n FROM pp_tx"), P("closeme", "SELECT 'closeme'"),
           SYNC)
    s.step(0, a, B("", "cnt"), E(), SYNC)   # cnt's SQL is now prepared on server 0 too
    # One transaction; the client stays on its server throughout (it holds it).
    s.place(0)
    s.exchange(a, Q("BEGIN"), codes=())
    s.exchange(a, B("", "ins", [1, "c0"]), E(), SYNC, codes=())
    s.exchange(a, P("intx", "SELECT 'parsed in tx'::text AS t"), B("", "intx"), E(), SYNC)
    s.exchange(a, B("", "ins", [1, "dup"]), E(), SYNC, codes=("23505",))
    s.exchange(a, B("", "cnt"), E(), SYNC, codes=("25P02",))
    s.exchange(a, Q("SELECT 1"), codes=("25P02",))
    s.exchange(a, P("ghost", "SELECT 'ghost'"), SYNC, codes=("25P02",))
    # The same SQL as a statement prepared on this server: still no ParseComplete, no statement.
    s.exchange(a, P("ghost2", "SELECT count(*) AS n FROM pp_tx"), SYNC, codes=("25P02",))
    s.exchange(a, D("S", "cnt"), SYNC, codes=("25P02",))
    s.exchange(a, C("S", "closeme"), P("", "SELECT 1"), SYNC)   # Close works, Parse does not
    s.exchange(a, SYNC, codes=())
    s.exchange(a, P("rb", "ROLLBACK"), B("", "rb"), E(), SYNC, codes=())
    # After the rollback: intx and rb exist, ghost does not, the insert is gone.
    s.step(1, a, B("", "intx"), E(), B("", "cnt"), E(), SYNC, codes=())
    s.step(0, a, B("", "ghost"), SYNC, B("", "ghost2"), SYNC, B("", "closeme"), SYNC,
           codes=("26000", "26000", "26000"))
    s.step(1, a, B("", "rb"), E(), SYNC, codes=())    # WARNING: no transaction in progress
    # Extended-protocol BEGIN, an error in a pipeline inside it, COMMIT → ROLLBACK.
    s.place(1)
    s.exchange(a, P("", "BEGIN"), B("", ""), E(), B("", "ins", [2, "c0"]), E(), SYNC, codes=())
    s.exchange(a, B("", "ins", [3, "c0"]), E(), B("", "ins", [2, "again"]), E(), B("", "cnt"), E(),
               SYNC, codes=("23505",))
    s.exchange(a, Q("COMMIT"), codes=())
    s.step(0, a, B("", "cnt"), E(), SYNC)
    # Implicit transaction of one Sync: rolled back as a whole on error.
    s.step(1, a, B("", "ins", [4, "c0"]), E(), B("", "ins", [4, "dup"]), E(), SYNC,
           codes=("23505",))
    s.step(0, a, B("", "cnt"), E(), SYNC)
    # A committed transaction using statements prepared elsewhere.
    s.place(0)
    s.exchange(b, Q("BEGIN"))
    s.exchange(b, P("bins", "INSERT INTO pp_tx VALUES ($1::int, 'c1') RETURNING id, who"),
               B("", "bins", [10]), E(), SYNC)
    s.exchange(b, B("", "bins", [11]), E(), Q("COMMIT"), B("", "bins", [12]), E(), SYNC)
    s.step(1, b, Q("SELECT id, who FROM pp_tx ORDER BY id"))
    s.step(1, b, B("", "bins", [13]), E(), SYNC)


@script(clients=1, setup=("DROP TABLE IF EXISTS pp_copy",
                          "CREATE TABLE pp_copy (a int, b text)"))
def copy_simple_and_extended(s):
    """COPY FROM STDIN / TO STDOUT in the simple and the extended protocol, CopyFail, bad data,
    and a named COPY statement bound on the other server."""
    (a,) = s.clients
    d = copy_data_msg
    s.step(0, a, Q("COPY pp_copy FROM STDIN"), d("1\tone\n"), d("2\ttwo\n"), copy_done_msg(),
           codes=())
    s.step(1, a, Q("COPY pp_copy TO STDOUT"), codes=())
    s.step(0, a, Q("COPY pp_copy FROM STDIN"), d("3\tthree\n"), copy_fail_msg("client gave up"),
           codes=("57014",))
    s.step(1, a, Q("COPY pp_copy FROM STDIN"), d("x\tbad\n"), copy_done_msg(), codes=("22P02",))
    s.step(0, a, P("", "COPY pp_copy FROM STDIN"), B("", ""), E(), d("4\tfour\n"), copy_done_msg(),
           SYNC, codes=())
    s.step(1, a, P("cin", "COPY pp_copy FROM STDIN"), B("", "cin"), D("P", ""), E(),
           d("5\tfive\n"), d("6\tsix\n"), copy_done_msg(), SYNC, codes=())
    s.step(0, a, B("", "cin"), E(), d("7\tseven\n"), copy_done_msg(), SYNC, codes=())
    s.step(1, a, B("", "cin"), E(), d("8\teight\n"), copy_fail_msg("no"), SYNC, codes=("57014",))
    s.step(0, a, B("", "cin"), E(), d("nine\t9\n"), copy_done_msg(), SYNC, codes=("22P02",))
    s.step(1, a, P("cout", "COPY (SELECT a, b FROM pp_copy ORDER BY a) TO STDOUT"), B("", "cout"),
           E(), SYNC, codes=())
    s.step(0, a, B("", "cout"), E(), SYNC, codes=())
    s.step(1, a, P("", "COPY (SELECT count(*) FROM pp_copy) TO STDOUT (FORMAT csv)"), B("", ""),
           E(), SYNC, Q("SELECT 'after copy'"), codes=())


@script(clients=2, configs=("pool2", "pool1"),
        setup=("DROP TABLE IF EXISTS pp_shape", "CREATE TABLE pp_shape (a int)",
               "INSERT INTO pp_shape VALUES (1)"))
def cached_plan_result_type(s):
    """After ALTER TABLE, executing a statement prepared before it gives 0A000 "cached plan must
    not change result type", once per execution as PostgreSQL does; Close + re-Parse of the same
    SQL works on every server. (Not run with a tiny LRU: an evicted statement is re-prepared with
    the new shape, which the issue allows — "at most the one error".)"""
    a, b = s.clients
    sql = "SELECT * FROM pp_shape"
    s.step(0, a, P("s", sql), B("", "s"), E(), SYNC)
    s.step(1, a, B("", "s"), E(), SYNC)               # prepared on both servers now
    s.step(1, b, P("bs", sql), D("S", "bs"), SYNC)
    s.step(0, a, Q("ALTER TABLE pp_shape ADD COLUMN b int DEFAULT 7"), codes=())
    s.step(1, a, B("", "s"), E(), SYNC, codes=("0A000",))
    s.step(0, a, C("S", "s"), P("s", sql), B("", "s"), E(), SYNC, codes=())
    s.step(1, a, B("", "s"), E(), SYNC, codes=())
    s.step(0, a, D("S", "s"), B("", "s"), E(), SYNC, codes=())
    # b's statement is stale too; Close + re-Parse recovers it, on both servers.
    s.step(0, b, C("S", "bs"), P("bs", sql), D("S", "bs"), B("", "bs"), E(), SYNC, codes=())
    s.step(1, b, B("", "bs"), E(), SYNC, codes=())
    s.step(0, b, B("", "bs"), E(), SYNC, codes=())


@script(clients=4)
def concurrent_clients_unique_sql(s):
    """Four clients, the same statement names, each with SQL unique to it, at full speed on the
    shared servers: a wrong result means another client's statement ran."""
    def work(c):
        idx = s.clients.index(c)
        s.exchange(c, P("s", select_sum(idx + 1)), P("t", f"SELECT 'c{idx}'::text AS who_c{idx}"),
                   SYNC)
        for rnd in range(12):
            s.exchange(c, B("", "s", [rnd]), E(), B("", "t"), E(), SYNC)
            if rnd % 4 == 3:
                s.exchange(c, C("S", "s"), P("s", select_sum(idx + 1 + rnd)), SYNC)
            if rnd % 3 == 2:
                s.exchange(c, P(f"r{rnd}", f"SELECT {idx} AS c{idx}_r{rnd}"), B("", f"r{rnd}"), E(),
                           SYNC, B("", "t"), E(), SYNC)
            if rnd % 5 == 4:
                s.exchange(c, D("S", "s"), D("S", "t"), SYNC)
        s.exchange(c, *[m for r in (2, 5, 8, 11) for m in (B("", f"r{r}"), E())], SYNC)

    s.concurrently({c: work for c in s.clients})


@script(clients=2)
def named_portals_in_transaction(s):
    """Named portals in an explicit transaction survive Syncs; fetch in pieces; Close 'P'."""
    a, b = s.clients
    s.step(1, a, P("series", "SELECT g FROM generate_series(1, $1::int) g"), SYNC)
    s.place(0)
    s.exchange(a, Q("BEGIN"))
    s.exchange(a, B("cur", "series", [5]), SYNC, codes=())
    s.exchange(a, E("cur", 2), SYNC)
    s.exchange(a, D("P", "cur"), E("cur", 2), SYNC)
    s.exchange(a, C("P", "cur"), SYNC)
    s.exchange(a, E("cur", 1), SYNC, codes=("34000",))
    s.exchange(a, Q("ROLLBACK"))
    s.step(1, a, B("cur", "series", [2]), SYNC, E("cur"), SYNC, codes=("34000",))
    s.step(1, b, P("series", "SELECT 'c1 ' || $1::text AS not_a_series"), B("cur", "series", ["x"]),
           E("cur"), SYNC, codes=())


# Built-in function OIDs (fixed in the catalog): abs(int4), lo_create(oid), lo_open(oid, int4),
# lo_close(int4), loread(int4, int4), lowrite(int4, bytea), lo_lseek(int4, int4, int4), lo_unlink.
F_ABS, F_LO_CREATE, F_LO_OPEN, F_LO_CLOSE = 1397, 715, 952, 953
F_LOREAD, F_LOWRITE, F_LO_LSEEK, F_LO_UNLINK = 954, 955, 956, 964
LO_OID, INV_READWRITE = 424242, 0x60000


@script(clients=1, setup=(f"SELECT lo_unlink({LO_OID}) FROM pg_largeobject_metadata "
                          f"WHERE oid = {LO_OID}",))
def function_call_between_statements(s):
    """FunctionCall (fast-path, large objects) between and inside extended-protocol batches."""
    (a,) = s.clients
    fc = function_call_msg
    s.step(0, a, P("s", select_sum(3)), SYNC)
    s.step(1, a, fc(F_ABS, ["-5"]), codes=())
    s.step(1, a, B("", "s", [1]), E(), SYNC, fc(F_ABS, ["-6"]), B("", "s", [2]), E(), SYNC,
           codes=())
    s.step(0, a, fc(1, ["1"]), B("", "s", [3]), E(), SYNC, codes=("42883",))
    s.place(1)
    s.exchange(a, Q("BEGIN"))
    s.exchange(a, fc(F_LO_CREATE, [LO_OID]), fc(F_LO_OPEN, [LO_OID, INV_READWRITE]),
               fc(F_LOWRITE, ["0", "hello"]), codes=())
    s.exchange(a, B("", "s", [4]), E(), SYNC, fc(F_LO_LSEEK, [0, 0, 0]), fc(F_LOREAD, [0, 5]),
               codes=())
    s.exchange(a, fc(F_LO_CLOSE, [0]), fc(F_LO_UNLINK, [LO_OID]), Q("COMMIT"), codes=())
    s.place(0)
    s.exchange(a, Q("BEGIN"), B("", "s", [1]), E(), SYNC)
    s.exchange(a, fc(F_LO_OPEN, [LO_OID, INV_READWRITE]), codes=("42704",))
    s.exchange(a, fc(F_ABS, ["-7"]), B("", "s", [5]), E(), SYNC, codes=("25P02", "25P02"))
    s.exchange(a, Q("ROLLBACK"))
    s.step(1, a, B("", "s", [6]), E(), SYNC, fc(F_ABS, ["-8"]), codes=())


# =============================================================================================
# Tests


def _pooler_config(config: str) -> dict:
    return dict(CONFIGS[config])


def _cases():
    for name, sc in SCRIPTS.items():
        for config in sc.configs:
            yield pytest.param(name, config, id=f"{name}-{config}")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name,config", list(_cases()))
def test_script_matches_postgres(pg, usher, name, config):
    sc = SCRIPTS[name]
    settings = _pooler_config(config)
    pool_size = settings["pool_size"]
    direct = run_script(sc, pg, pg.host, pg.port, pool_size, "postgres")
    check_script_intent(direct)
    pooler = usher(**settings)
    pooled = run_script(sc, pg, pooler.host, pooler.port, pool_size, "pooler")
    problems = differences(direct, pooled)
    for c in pooled.all:
        problems += c.leaks
    if pooled.aborted:
        problems.append(f"the pooled run stopped early: {pooled.aborted}")
    if problems:
        pytest.fail(f"{name} under {config}: the pooler's answers differ from PostgreSQL's\n\n"
                    + "\n\n".join(problems), pytrace=False)


@pytest.mark.parametrize("name", list(SCRIPTS))
def test_direct_runs_are_reproducible(pg, name):
    """The normaliser and the scripts are deterministic: two direct runs compare equal."""
    sc = SCRIPTS[name]
    first = run_script(sc, pg, pg.host, pg.port, 2, "postgres")
    second = run_script(sc, pg, pg.host, pg.port, 2, "postgres")
    check_script_intent(first)
    problems = differences(first, second, what="postgres again")
    if problems:
        pytest.fail("two direct runs differ:\n\n" + "\n\n".join(problems), pytrace=False)
    # The name check itself: PostgreSQL quotes only names the client used.
    for c in first.all:
        assert not c.leaks, c.leaks


def test_checkers_catch_what_they_are_for():
    """The leak check flags a statement name the client never used; the lenient comparison
    accepts a clean ERROR but not another client's row or a FATAL."""
    c = Client("c0", raw=None)  # type: ignore[arg-type]
    c.names = {"s", ""}
    sess = Session.__new__(Session)
    sess.relname, sess.aborted, sess.lock = str, None, threading.Lock()

    def error(msg, severity="ERROR"):
        return (b"E", b"".join(k + v.encode() + b"\0" for k, v in
                                ((b"S", severity), (b"V", severity), (b"C", "26000"),
                                 (b"M", msg))) + b"\0")

    sess._record(c, [error('prepared statement "s" does not exist'), (b"Z", b"I")], None, False,
                 None)
    assert c.leaks == []
    sess._record(c, [error('prepared statement "usher_0000002a" does not exist'), (b"Z", b"I")],
                 None, False, None)
    assert len(c.leaks) == 1 and "usher_0000002a" in c.leaks[0]
    sess._record(c, [error('bind message supplies 1 parameters, but prepared statement "S_1" '
                           'requires 2'), (b"Z", b"I")], None, False, None)
    assert len(c.leaks) == 2
    c.names.add("S_1")
    sess._record(c, [error('portal "S_1" does not exist'), (b"Z", b"I")], None, False, None)
    assert len(c.leaks) == 2

    direct = [("BindComplete",), ("DataRow", ("c0:late",)), ("CommandComplete", "SELECT 1"),
              ("ReadyForQuery", "I")]
    err = ("ErrorResponse", "ERROR", "ERROR", "26000", "unnamed prepared statement does not exist")
    assert clean_error([err, ("ReadyForQuery", "I")], direct)
    assert not clean_error([("BindComplete",), ("DataRow", ("c2:late",)),
                            ("CommandComplete", "SELECT 1"), ("ReadyForQuery", "I")], direct)
    assert not clean_error([("ErrorResponse", "FATAL", "FATAL", "08P01", "x"),
                            ("ReadyForQuery", "I")], direct)
    assert not clean_error([err, ("ReadyForQuery", "E")], direct)
    assert not clean_error([err, ("<CONNECTION CLOSED>",)], direct)
    assert sql_statement_names('DEALLOCATE PREPARE Foo; deallocate "Bar"; EXECUTE q(1); '
                               "DEALLOCATE ALL") == {"foo", "Bar", "q"}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("pool_size", [1, 2])
def test_sql_level_prepare_never_runs_another_clients_statement(pg, usher, pool_size):
    """PREPARE in one transaction, EXECUTE in later ones (not differential: PostgreSQL runs it in
    one session). Through the pooler each EXECUTE must give the client's own row or an ERROR (not
    FATAL, connection usable), never another client's row. With a pool of 2 the clients prepare
    on alternate servers and execute on both."""
    pooler = usher(pool_mode="transaction", pool_size=pool_size, default_pool_size=pool_size)
    s = Session("pooler", pooler.host, pooler.port, pg.passwords[USER], 3, pool_size)
    try:
        for i, c in enumerate(s.clients):
            s.step(i % 2, c, Q(f"PREPARE q AS SELECT 'c{i}'::text AS c{i}"))
        for rnd in range(4):
            for i, c in enumerate(s.clients):
                s.step((i + rnd + 1) % 2, c, Q("EXECUTE q"))
                s.step((i + rnd + 1) % 2, c, Q("SELECT 'usable'"))
        s.release()
    except Aborted:
        pass
    finally:
        s.close()
    bad = [f"stopped: {s.aborted}"] if s.aborted else []
    usable = [("RowDescription", (("?column?", 0, 0, 25, -1, -1, 0),)), ("DataRow", ("usable",)),
              ("CommandComplete", "SELECT 1"), ("ReadyForQuery", "I")]
    for i, c in enumerate(s.clients):
        for k, seg in enumerate(c.segments):
            kinds = [m[0] for m in seg.msgs]
            errors = [m for m in seg.msgs if m[0] == "ErrorResponse"]
            if any(m[2] != "ERROR" for m in errors) or seg.msgs[-1:] != [("ReadyForQuery", "I")]:
                bad.append(f"c{i} #{k} {seg.label}: {seg.msgs}")
            elif k == 0:
                continue  # PREPARE: done or a clean error
            elif k % 2 == 0:
                if seg.msgs != usable:
                    bad.append(f"c{i} #{k}: the connection is not usable after EXECUTE: {seg.msgs}")
            elif "DataRow" in kinds:
                rows = [m[1] for m in seg.msgs if m[0] == "DataRow"]
                if rows != [(f"c{i}",)]:
                    bad.append(f"c{i} #{k}: EXECUTE q returned {rows}: another client's statement")
            elif not errors:
                bad.append(f"c{i} #{k}: EXECUTE q gave neither its row nor an error: {seg.msgs}")
    assert not bad, "\n".join(bad)
