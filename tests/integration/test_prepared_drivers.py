"""Real drivers that prepare statements by name, many clients sharing a transaction pool of 2.

Every driver here names its server-side statements per connection (psycopg `_pg3_0`, asyncpg
`__asyncpg_stmt_1__`, PgJDBC `S_1`, node-postgres with the application's own names, pgbench
`P_0`), so clients sharing two servers collide on names unless the pooler maps them; postgres.js
draws random names, which do not collide but exist only on the server that prepared them. Each
client runs the same workload (`python_iteration` below; its ports in clients/java, clients/node):

- a statement whose text is unique to the client (its id is a literal in the SQL); a statement
  run on behalf of the wrong client returns the wrong id, which is a failure, not just an error;
- a statement whose text is shared by every client, with different parameters, result checked;
- every 7th iteration, a prepared statement that fails (100 / 0), after which the client carries
  on (the failed execution leaves the mapping consistent);
- an explicit transaction: insert a row, count the client's rows (must be the iteration number
  + 1: every earlier commit happened), the client's unique statement again; all on one server;
- enough iterations (50) to cross every driver's prepare threshold (PgJDBC's and psycopg's 5) and,
  every statement in autocommit being a transaction of its own, to move between the 2 servers
  many times: the test asserts that clients really did run on both servers.

While the clients run, pg_stat_activity is sampled: a pooled run never has more than 2 server
connections. Each test runs through the pooler ("pooled"), through the pooler with a tiny
per-server statement LRU ("pooled-lru4": max_prepared_statements = 4, so statements are evicted
and re-prepared all the time), and straight against PostgreSQL ("direct") with the same client
programs: the direct run shows the clients and their checks are right, so a pooled failure is
the pooler's.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import psycopg
import pytest

import harness

USER, DB = "trading_app_user", "trading_db"
POOL_SIZE = 2
ITERATIONS = 50
CLIENTS = 12  # concurrent client connections per driver run (the asyncpg pool: 20)
CLIENTS_DIR = Path(__file__).resolve().parent / "clients"
NODE_DIR = CLIENTS_DIR / "node"
JAVA_CLIENT = CLIENTS_DIR / "java" / "PreparedClients.java"
JDBC_JAR = Path("/usr/share/java/postgresql.jar")
CLIENT_TIMEOUT = 90  # seconds, for one run of a Java or Node client program

# The workload's SQL, in psycopg's placeholder style (psycopg sends $1, $2, ... on the wire, so
# the server sees the same text as from the other drivers).
SHARED = "SELECT %s::int * 1000 + %s::int AS v, %s::text AS t"
DIVIDE = "SELECT 100 / %s::int AS q"
INSERT = "INSERT INTO prep_rows (driver, client, seq) VALUES (%s, %s, %s)"
COUNT = ("SELECT count(*)::int AS n, max(seq) AS last, pg_backend_pid() AS pid"
         " FROM prep_rows WHERE driver = %s AND client = %s")


def unique(me: int) -> str:
    return f"SELECT {me}::int AS me, %s::int AS i, pg_backend_pid() AS pid"


def dollar(sql: str) -> str:
    """psycopg's %s placeholders as $1, $2, ... (for asyncpg)."""
    n = 0

    def number(_):
        nonlocal n
        n += 1
        return f"${n}"

    return re.sub(r"%s", number, sql)


class WrongResult(AssertionError):
    pass


def expect(ok: bool, what: str) -> None:
    if not ok:
        raise WrongResult(what)


# --------------------------------------------------------------------------------------------
# Where the clients connect, and what every test checks afterwards


@dataclass
class Endpoint:
    host: str
    port: int
    password: str
    pooled: bool

    @property
    def conninfo(self) -> str:
        return f"host={self.host} port={self.port} user={USER} dbname={DB} password={self.password}"


@pytest.fixture(scope="module")
def prep_table(pg):
    with pg.connect(USER, DB) as conn:
        conn.execute("DROP TABLE IF EXISTS prep_rows")
        conn.execute("CREATE TABLE prep_rows (driver text, client int, seq int,"
                     " PRIMARY KEY (driver, client, seq))")
    yield
    with pg.connect(USER, DB) as conn:
        conn.execute("DROP TABLE IF EXISTS prep_rows")


ENDPOINTS = {
    # name: max_prepared_statements of the pool (None: PostgreSQL directly, no pooler)
    "pooled": 200,
    # An LRU of 4 statements per server for the 5 to 35 distinct statements of a run: the
    # pooler evicts and re-prepares all the time, also while a driver pipelines several.
    "pooled-lru4": 4,
    "direct": None,
}


@pytest.fixture(params=list(ENDPOINTS))
def endpoint(request, pg, usher, prep_table) -> Endpoint:
    max_prepared = ENDPOINTS[request.param]
    if max_prepared is None:
        return Endpoint(pg.host, pg.port, pg.passwords[USER], pooled=False)
    pooler = usher(pool_mode="transaction", pool_size=POOL_SIZE,
                   max_prepared_statements=max_prepared)
    return Endpoint(pooler.host, pooler.port, pg.passwords[USER], pooled=True)


@pytest.fixture
def tag(request) -> str:
    """This test's rows in prep_rows (removed first, should a previous run have left some)."""
    name = re.sub(r"[^A-Za-z0-9]+", "-", request.node.name)
    return name


def clear_rows(pg, tag: str) -> None:
    with pg.connect(USER, DB) as conn:
        conn.execute("DELETE FROM prep_rows WHERE driver = %s", (tag,))


def check_run(pg, endpoint: Endpoint, tag: str, reports: list[dict], ids: list[int],
              watch: harness.ServerConnectionWatch, dedicated: bool = True) -> None:
    """What every driver's run must show once its clients have finished without an error.
    dedicated: each client has a connection of its own (not a driver-side pool)."""
    assert sorted(r["client"] for r in reports) == sorted(ids), \
        f"reports for clients {sorted(r['client'] for r in reports)}, expected {sorted(ids)}"
    assert all(r["iterations"] == ITERATIONS for r in reports), reports
    # Every commit reported by a client really happened, exactly once, for that client.
    with pg.connect(USER, DB) as conn:
        rows = conn.execute("SELECT client, count(*), sum(seq) FROM prep_rows WHERE driver = %s"
                            " GROUP BY client ORDER BY client", (tag,)).fetchall()
    assert rows == [(me, ITERATIONS, sum(range(ITERATIONS))) for me in sorted(ids)]

    assert watch.error is None, f"pg_stat_activity sampling failed: {watch.error!r}"
    assert watch.samples > 0, "pg_stat_activity was never sampled"
    pids = set().union(*(set(r["pids"]) for r in reports))
    if endpoint.pooled:
        assert 1 <= watch.peak <= POOL_SIZE, \
            f"pg_stat_activity showed {watch.peak} server connections for a pool of {POOL_SIZE}"
        assert len(pids) <= POOL_SIZE, f"clients ran on {len(pids)} backends: {sorted(pids)}"
        movers = sum(1 for r in reports if len(r["pids"]) > 1)
        # Statements prepared on one server must have been run on the other: otherwise this
        # test exercised no re-preparing at all (as in session mode, where each client keeps
        # its server).
        assert movers >= 1, f"no client ran on both servers: {reports}"
    elif dedicated:
        assert all(len(r["pids"]) == 1 for r in reports), reports
        assert len(pids) == len(reports), f"direct clients shared backends: {reports}"
    else:
        assert len(pids) > 1, f"a driver-side pool used one backend only: {reports}"


def describe(exc: BaseException) -> str:
    """One line per error: the type, SQLSTATE when there is one, and the message's first line
    (asyncpg appends a long hint about PgBouncer to "prepared statement ... does not exist")."""
    state = getattr(exc, "sqlstate", None) or getattr(getattr(exc, "diag", None), "sqlstate", None)
    lines = str(exc).strip().splitlines() or [""]
    return f"{type(exc).__name__}{f' [{state}]' if state else ''}: {lines[0]}"


def fail_with_output(what: str, res: subprocess.CompletedProcess) -> str:
    return (f"{what} exited with status {res.returncode}\n--- stderr ---\n{res.stderr[-6000:]}"
            f"\n--- stdout ---\n{res.stdout[-3000:]}")


def parse_reports(res: subprocess.CompletedProcess) -> list[dict]:
    return [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]


# --------------------------------------------------------------------------------------------
# psycopg 3


def python_iteration(conn: psycopg.Connection, me: int, i: int, tag: str, pids: set, **kw) -> None:
    me_, i_, pid = conn.execute(unique(me), (i,), **kw).fetchone()
    expect((me_, i_) == (me, i),
           f"client {me} iteration {i}: unique select returned me={me_} i={i_}")
    pids.add(pid)
    v, t = conn.execute(SHARED, (me, i, f"{tag}-{me}"), **kw).fetchone()
    expect((v, t) == (me * 1000 + i, f"{tag}-{me}"),
           f"client {me} iteration {i}: shared select returned v={v} t={t}")
    if i % 7 == 3:
        try:
            conn.execute(DIVIDE, (0,), **kw)
            expect(False, f"client {me}: 100 / 0 did not fail")
        except psycopg.errors.DivisionByZero:
            pass
    with conn.transaction():
        conn.execute(INSERT, (tag, me, i), **kw)
        n, last, pid_a = conn.execute(COUNT, (tag, me), **kw).fetchone()
        expect((n, last) == (i + 1, i),
               f"client {me} iteration {i}: count returned n={n} last={last}")
        me_, i_, pid_b = conn.execute(unique(me), (i + 1000,), **kw).fetchone()
        expect((me_, i_) == (me, i + 1000),
               f"client {me} iteration {i}: unique select (tx) returned me={me_} i={i_}")
        expect(pid_a == pid_b,
               f"client {me}: one transaction ran on two servers ({pid_a}, {pid_b})")
        pids.add(pid_b)


PSYCOPG_MODES = {
    # name: (connect() keywords, execute() keywords, prepared_max)
    "prepare_threshold=0": ({"prepare_threshold": 0}, {}, None),
    "prepare=True": ({}, {"prepare": True}, None),
    # A cache of 3 for 5 statements: psycopg evicts all the time, sending `DEALLOCATE _pg3_N`
    # as SQL, and then prepares the same SQL again under a new name.
    "prepare_threshold=0,prepared_max=3": ({"prepare_threshold": 0}, {}, 3),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("mode", list(PSYCOPG_MODES))
def test_psycopg(pg, endpoint, tag, mode):
    connect_kw, execute_kw, prepared_max = PSYCOPG_MODES[mode]
    clients = CLIENTS
    ids = list(range(100, 100 + clients))
    clear_rows(pg, tag)
    reports: list[dict] = []
    errors: list[str] = []
    start = threading.Barrier(clients)

    def client(me: int):
        pids: set[int] = set()
        try:
            with psycopg.connect(endpoint.conninfo, autocommit=True, connect_timeout=10,
                                 **connect_kw) as conn:
                if prepared_max is not None:
                    conn.prepared_max = prepared_max
                start.wait(timeout=30)
                for i in range(ITERATIONS):
                    python_iteration(conn, me, i, tag, pids, **execute_kw)
            reports.append({"client": me, "iterations": ITERATIONS, "pids": sorted(pids)})
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(f"client {me}: {describe(exc)}")
            start.abort()

    with harness.ServerConnectionWatch(pg, USER, DB) as watch:
        threads = [threading.Thread(target=client, args=(me,), daemon=True) for me in ids]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 50
        for t in threads:
            t.join(timeout=max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), \
        "psycopg clients still running after 50s (a hang)"
    assert not errors, f"{len(errors)} of {clients} psycopg clients failed:\n" + "\n".join(errors)
    check_run(pg, endpoint, tag, reports, ids, watch)


# --------------------------------------------------------------------------------------------
# asyncpg


async def asyncpg_iteration(con: asyncpg.Connection, me: int, i: int, tag: str, pids: set) -> None:
    me_, i_, pid = await con.fetchrow(dollar(unique(me)), i)
    expect((me_, i_) == (me, i),
           f"client {me} iteration {i}: unique select returned me={me_} i={i_}")
    pids.add(pid)
    v, t = await con.fetchrow(dollar(SHARED), me, i, f"{tag}-{me}")
    expect((v, t) == (me * 1000 + i, f"{tag}-{me}"),
           f"client {me} iteration {i}: shared select returned v={v} t={t}")
    if i % 7 == 3:
        try:
            await con.fetchval(dollar(DIVIDE), 0)
            expect(False, f"client {me}: 100 / 0 did not fail")
        except asyncpg.exceptions.DivisionByZeroError:
            pass
    async with con.transaction():
        await con.execute(dollar(INSERT), tag, me, i)
        n, last, pid_a = await con.fetchrow(dollar(COUNT), tag, me)
        expect((n, last) == (i + 1, i),
               f"client {me} iteration {i}: count returned n={n} last={last}")
        # Prepared explicitly (asyncpg's cache hands back the same named statement each time).
        stmt = await con.prepare(dollar(unique(me)))
        me_, i_, pid_b = await stmt.fetchrow(i + 1000)
        expect((me_, i_) == (me, i + 1000),
               f"client {me} iteration {i}: unique select (tx) returned me={me_} i={i_}")
        expect(pid_a == pid_b,
               f"client {me}: one transaction ran on two servers ({pid_a}, {pid_b})")
        pids.add(pid_b)


def run_asyncpg(pg, endpoint: Endpoint, tag: str, ids: list[int], pool_size: int | None):
    """pool_size None: one asyncpg connection per client; else an asyncpg pool of that size shared
    by all clients, each iteration on whichever pooled connection it acquires. Default statement
    cache everywhere."""
    clear_rows(pg, tag)
    kwargs = dict(host=endpoint.host, port=endpoint.port, user=USER, database=DB,
                  password=endpoint.password, timeout=10)
    reports: list[dict] = []
    errors: list[str] = []

    async def single(me: int, attempted: list, start: asyncio.Event):
        try:
            con = await asyncpg.connect(**kwargs)
        finally:
            # Everyone starts together, once every client has connected (or failed to).
            attempted.append(me)
            if len(attempted) == len(ids):
                start.set()
        try:
            await start.wait()
            pids: set[int] = set()
            for i in range(ITERATIONS):
                await asyncpg_iteration(con, me, i, tag, pids)
            return {"client": me, "iterations": ITERATIONS, "pids": sorted(pids)}
        finally:
            await con.close()

    async def pooled(me: int, pool):
        pids: set[int] = set()
        for i in range(ITERATIONS):
            async with pool.acquire() as con:
                await asyncpg_iteration(con, me, i, tag, pids)
        return {"client": me, "iterations": ITERATIONS, "pids": sorted(pids)}

    async def main():
        if pool_size is None:
            start, attempted = asyncio.Event(), []
            results = await asyncio.gather(*(single(me, attempted, start) for me in ids),
                                           return_exceptions=True)
        else:
            async with asyncpg.create_pool(min_size=pool_size, max_size=pool_size,
                                           **kwargs) as pool:
                results = await asyncio.gather(*(pooled(me, pool) for me in ids),
                                               return_exceptions=True)
        for me, r in zip(ids, results):
            if isinstance(r, BaseException):
                errors.append(f"client {me}: {describe(r)}")
            else:
                reports.append(r)

    with harness.ServerConnectionWatch(pg, USER, DB) as watch:
        asyncio.run(asyncio.wait_for(main(), timeout=50))
    assert not errors, f"{len(errors)} of {len(ids)} asyncpg clients failed:\n" + "\n".join(errors)
    check_run(pg, endpoint, tag, reports, ids, watch, dedicated=pool_size is None)


@pytest.mark.timeout(60)
def test_asyncpg_connections(pg, endpoint, tag):
    """12 clients, each its own asyncpg connection with the default statement cache."""
    run_asyncpg(pg, endpoint, tag, list(range(200, 200 + CLIENTS)), pool_size=None)


@pytest.mark.timeout(60)
def test_asyncpg_pool_of_20(pg, endpoint, tag):
    """An asyncpg pool of 20 connections (default statement cache) shared by 30 clients."""
    run_asyncpg(pg, endpoint, tag, list(range(300, 330)), pool_size=20)


# --------------------------------------------------------------------------------------------
# PgJDBC (Debian's libpostgresql-jdbc-java) and the Node.js drivers: separate programs


def run_client_program(argv: list[str], what: str, cwd: Path,
                       password: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=CLIENT_TIMEOUT,
                              stdin=subprocess.DEVNULL, env=harness.clean_env(PGPASSWORD=password))
    except subprocess.TimeoutExpired as exc:
        def text(b):
            return b.decode(errors="replace") if isinstance(b, bytes) else (b or "")
        pytest.fail(f"{what} still running after {CLIENT_TIMEOUT}s (a hang)\n--- stderr ---\n"
                    f"{text(exc.stderr)}\n--- stdout ---\n{text(exc.stdout)}", pytrace=False)


def run_program_clients(pg, endpoint: Endpoint, tag: str, argv_prefix: list[str], what: str,
                        cwd: Path, first_id: int, clients: int,
                        dedicated: bool = True) -> list[dict]:
    clear_rows(pg, tag)
    ids = list(range(first_id, first_id + clients))
    argv = argv_prefix + [endpoint.host, str(endpoint.port), USER, DB, tag, str(first_id),
                          str(clients), str(ITERATIONS)]
    with harness.ServerConnectionWatch(pg, USER, DB) as watch:
        res = run_client_program(argv, what, cwd, endpoint.password)
    assert res.returncode == 0, fail_with_output(what, res)
    check_run(pg, endpoint, tag, parse_reports(res), ids, watch, dedicated)
    return parse_reports(res)


@pytest.fixture(scope="module")
def java():
    java_bin = harness.require_tool("java", "default-jdk-headless")
    harness.require_tool("javac", "default-jdk-headless")  # the source launcher compiles with it
    if not JDBC_JAR.is_file():
        pytest.fail(f"PgJDBC not found at {JDBC_JAR}: apt-get install libpostgresql-jdbc-java",
                    pytrace=False)
    return java_bin


@pytest.mark.timeout(120)
def test_pgjdbc(pg, endpoint, tag, java):
    """12 PgJDBC connections with the default prepareThreshold (5)."""
    reports = run_program_clients(
        pg, endpoint, tag, [java, "-cp", str(JDBC_JAR), str(JAVA_CLIENT)], "PgJDBC clients",
        JAVA_CLIENT.parent, 400, CLIENTS)
    # Past the threshold the driver really used named server-side statements.
    assert all(r["server_prepared"] for r in reports), reports


@pytest.fixture(scope="module")
def node():
    node_bin = harness.require_tool("node", "nodejs")
    npm = shutil.which("npm")
    if not npm:
        pytest.fail("`npm` not found on PATH: install Node.js with npm (Debian: apt-get install "
                    "nodejs npm)", pytrace=False)
    lock = NODE_DIR / "package-lock.json"
    stamp = NODE_DIR / "node_modules" / ".package-lock.json"  # written by npm on every install
    installed = all((NODE_DIR / "node_modules" / p / "package.json").is_file()
                    for p in ("pg", "postgres"))
    if not installed or not stamp.is_file() or stamp.stat().st_mtime < lock.stat().st_mtime:
        res = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                             cwd=NODE_DIR, capture_output=True, text=True, timeout=300,
                             stdin=subprocess.DEVNULL)
        if res.returncode != 0:
            pytest.fail(f"`npm ci` in {NODE_DIR} failed (status {res.returncode}): the npm "
                        f"registry must be reachable to install pg and postgres.\n{res.stderr}"
                        f"{res.stdout}", pytrace=False)
    return node_bin


@pytest.mark.timeout(120)
def test_node_postgres_named_queries(pg, endpoint, tag, node):
    """12 node-postgres clients; every statement a named query, with the same names in every
    client and, for one of them, a different text in each."""
    run_program_clients(pg, endpoint, tag, [node, str(NODE_DIR / "clients.js"), "pg"],
                        "node-postgres clients", NODE_DIR, 500, CLIENTS)


@pytest.mark.timeout(120)
def test_postgres_js_defaults(pg, endpoint, tag, node):
    """15 clients on 5 postgres.js instances with default options (prepare: true, max: 10)."""
    run_program_clients(pg, endpoint, tag, [node, str(NODE_DIR / "clients.js"), "postgres"],
                        "postgres.js clients", NODE_DIR, 600, 15, dedicated=False)


# --------------------------------------------------------------------------------------------
# pgbench -M prepared


@pytest.fixture(scope="module")
def pgbench_tables(pg):
    res = harness.pgbench(pg.port, USER, DB, pg.passwords[USER], "-i", "-s", "1", "-q")
    assert res.returncode == 0, res.stderr
    return pg


PGBENCH_CLIENTS, PGBENCH_TX = 8, 150
PGBENCH_THREADS = {
    "select-only": 2,
    # 4 clients per thread on 2 servers. pgbench prepares with a blocking PQprepare() (Parse +
    # Sync), which stops every client of its thread while it waits. Were that wait for a server
    # while the thread's other clients hold both servers inside BEGIN ... END, none would move
    # again. usher answers a Parse + Sync of SQL the pool has already prepared without a server.
    "tpcb-like": 2,
}


@pytest.mark.timeout(90)
@pytest.mark.parametrize("script", list(PGBENCH_THREADS))
def test_pgbench_prepared(pgbench_tables, endpoint, script):
    """pgbench -M prepared: every client prepares the script's statements under the same names
    (P_0, P_1, ...). Select-only: one statement, no transaction block. TPC-B: BEGIN, 3 UPDATEs,
    a SELECT and an INSERT, END, in one transaction on one server."""
    pg = pgbench_tables
    with pg.connect(USER, DB) as conn:
        (history_before,) = conn.execute("SELECT count(*) FROM pgbench_history").fetchone()
    with harness.ServerConnectionWatch(pg, USER, DB) as watch:
        res = harness.pgbench(endpoint.port, USER, DB, endpoint.password, "-M", "prepared",
                              "-b", script, "-c", str(PGBENCH_CLIENTS),
                              "-j", str(PGBENCH_THREADS[script]),
                              "-t", str(PGBENCH_TX), "-n", host=endpoint.host, timeout=80)
    output = res.stdout + res.stderr
    assert res.returncode == 0, output
    assert "ERROR" not in output and "aborted" not in output, output
    processed = re.search(r"number of transactions actually processed: (\d+)/(\d+)", output)
    assert processed, output
    expected_tx = PGBENCH_CLIENTS * PGBENCH_TX
    assert int(processed.group(1)) == int(processed.group(2)) == expected_tx, output
    failed = re.search(r"number of failed transactions: (\d+)", output)
    assert failed is None or int(failed.group(1)) == 0, output
    with pg.connect(USER, DB) as conn:
        (history_after,) = conn.execute("SELECT count(*) FROM pgbench_history").fetchone()
    # tpcb-like inserts one history row per transaction; select-only none.
    expected_rows = expected_tx if script == "tpcb-like" else 0
    assert history_after - history_before == expected_rows
    assert watch.error is None, watch.error
    if endpoint.pooled:
        assert 1 <= watch.peak <= POOL_SIZE, \
            f"pg_stat_activity showed {watch.peak} server connections for a pool of {POOL_SIZE}"


# --------------------------------------------------------------------------------------------
# Statement pooling: every statement may land on another server


@pytest.mark.timeout(60)
def test_psycopg_statement_mode(pg, usher):
    """Statement mode with prepared statements: each execution is a transaction of its own, so a
    client's statements move between the servers at every step and must still be its own."""
    pooler = usher(pool_mode="statement", pool_size=POOL_SIZE, default_pool_size=POOL_SIZE)
    errors: list[str] = []
    pids: set[int] = set()

    def client(me: int) -> None:
        try:
            with psycopg.connect(pooler.conninfo(USER, DB), autocommit=True,
                                 prepare_threshold=0) as conn:
                for i in range(ITERATIONS):
                    got_me, got_i, pid = conn.execute(unique(me), (i,)).fetchone()
                    expect((got_me, got_i) == (me, i), f"client {me} got {got_me}/{got_i}")
                    pids.add(pid)
                    v, t = conn.execute(SHARED, (me, i, f"c{me}")).fetchone()
                    expect((v, t) == (me * 1000 + i, f"c{me}"), f"client {me} shared got {v}/{t}")
        except Exception as exc:  # noqa: BLE001 - reported below with the client's id
            errors.append(f"client {me}: {describe(exc)}")

    threads = [threading.Thread(target=client, args=(me,)) for me in range(1, 9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:5]
    assert len(pids) == POOL_SIZE, f"clients ran on {len(pids)} servers"


@pytest.mark.timeout(60)
def test_large_parameters_through_a_named_statement(pg, usher):
    """A Bind far larger than usher's read buffer: only its header and names are rewritten, the
    parameters stream through. Checked by the server's md5 of what it received."""
    pooler = usher(pool_mode="transaction", pool_size=1, default_pool_size=1)
    with psycopg.connect(pooler.conninfo(USER, DB), autocommit=True, prepare_threshold=0) as conn:
        for size in (100, 70_000, 3_000_000):
            blob = ("usher-" * (size // 6 + 1))[:size]
            got = conn.execute("SELECT md5(%s::text), length(%s::text)", (blob, blob)).fetchone()
            assert got == (hashlib.md5(blob.encode()).hexdigest(), size)
