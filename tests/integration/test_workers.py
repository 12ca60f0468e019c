"""Several workers (`workers = N`): N event-loop threads in one process on one SO_REUSEPORT port.

From outside the process the workers are invisible, which is the point: every limit, queue,
console view, cancel request and shutdown must behave as with one worker. The kernel spreads
connections over the workers by hashing the source port, so each test opens enough connections
that (with overwhelming probability) both workers hold some of them. The important tests run
with workers = 1 and 2: the first is the reference the second must match.

Under USHER_TEST_TARGET=pgbouncer the `workers` key is left out of the config and the workers=2
variants of parametrised tests are skipped (they would repeat the workers=1 run).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time

import psycopg
import pytest

import harness

USER, DB = "trading_app_user", "trading_db"

# workers=2 is usher's multi-worker case; under PgBouncer it would only repeat workers=1.
WORKERS = pytest.mark.parametrize(
    "workers", [1, pytest.param(2, marks=pytest.mark.usher_only)], ids=["w1", "w2"])


def start(usher, workers: int, **overrides) -> harness.Pooler:
    """Start the pooler under test with `workers` event loops (PgBouncer: the key is left out)."""
    if harness.target() == "usher":
        overrides["workers"] = workers
    return usher(**overrides)


def connect(pooler, **kwargs):
    """pooler.connect() that gives up after 10 s instead of hanging the test."""
    kwargs.setdefault("connect_timeout", 10)
    return pooler.connect(**kwargs)


def console(pooler, pg, user="platform_admin"):
    # The console speaks only the simple protocol: no server-side prepared statements.
    return psycopg.connect(pooler.conninfo(user, "pgbouncer", pg.passwords[user]),
                           autocommit=True, prepare_threshold=None, connect_timeout=10)


def rows(conn, command) -> list[dict]:
    cur = conn.execute(command)
    names = [d.name for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def pool_row(admin, db=DB, user=USER) -> dict:
    matches = [r for r in rows(admin, "SHOW POOLS") if (r["database"], r["user"]) == (db, user)]
    assert len(matches) == 1, matches
    return matches[0]


def stats_row(admin, db=DB) -> dict:
    matches = [r for r in rows(admin, "SHOW STATS") if r["database"] == db]
    assert len(matches) == 1, matches
    return matches[0]


def backend_pids(pg) -> set[int]:
    return {pid for pid, _state, _port in pg.backends(USER, DB)}


def no_leftover_backends(pg):
    harness.wait_until(lambda: not pg.backends(USER, DB), 10,
                       f"no leftover backends of {USER} on {DB}")


def run_in_thread(fn, *args):
    """Run fn(*args) in a daemon thread; returns (thread, box) where box gets 'value' or 'error'
    and box['done'] is an Event set when fn returned or raised."""
    box: dict = {"done": threading.Event()}

    def body():
        try:
            box["value"] = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - inspected by the test
            box["error"] = exc
        finally:
            box["done"].set()

    t = threading.Thread(target=body, daemon=True)
    t.start()
    return t, box


def result_of(box, timeout: float, what: str):
    assert box["done"].wait(timeout), f"{what}: not finished within {timeout}s"
    if "error" in box:
        raise AssertionError(f"{what} failed: {box['error']!r}") from box["error"]
    return box["value"]


def results_within(boxes, timeout: float, what: str) -> list:
    """The values of several run_in_thread boxes, all due within one deadline."""
    deadline = time.monotonic() + timeout
    for b in boxes:
        b["done"].wait(max(0.0, deadline - time.monotonic()))
    late = [i for i, b in enumerate(boxes) if not b["done"].is_set()]
    assert not late, f"{what}: {late} not finished within {timeout}s"
    return [result_of(b, 0, f"{what} [{i}]") for i, b in enumerate(boxes)]


def close_all(conns):
    for c in conns:
        try:
            c.close()
        except Exception:  # noqa: BLE001 - best effort in cleanup
            pass


@pytest.fixture
def load_table(pg):
    with pg.connect(USER, DB) as conn:
        conn.execute("DROP TABLE IF EXISTS wk_rows")
        conn.execute("CREATE TABLE wk_rows (thread int, seq int, PRIMARY KEY (thread, seq))")
    yield "wk_rows"
    with pg.connect(USER, DB) as conn:
        conn.execute("DROP TABLE IF EXISTS wk_rows")


# ---------------------------------------------------------------------------------------------
# 1. Limits are exact over all workers


LIMITS = {
    # id: (config overrides, the limit on backends of USER on DB, concurrent clients)
    "pool_size": (dict(pool_size=3), 3, 60),
    "max_db_connections": (dict(pool_size=5, max_db_connections=2), 2, 20),
}


@pytest.mark.timeout(60)
@WORKERS
@pytest.mark.parametrize("limit", sorted(LIMITS))
def test_server_limits_hold_under_load(pg, usher, load_table, workers, limit):
    """Many clients hammer a small pool for a few seconds while pg_stat_activity is sampled every
    20 ms: never more backends than the limit (and the limit is reached: the load is real). Every
    transaction sees exactly its own client's rows."""
    overrides, cap, n_threads = LIMITS[limit]
    pooler = start(usher, workers, pool_mode="transaction", query_wait_timeout=30, **overrides)
    seconds = 2.0
    stop = threading.Event()
    ready = threading.Barrier(n_threads + 1)
    done: dict[int, int] = {}
    errors: list[tuple[int, BaseException]] = []

    def client(me: int):
        try:
            with connect(pooler) as conn:
                ready.wait(timeout=30)
                seq = 0
                while not stop.is_set():
                    seq += 1
                    with conn.transaction():
                        conn.execute("INSERT INTO wk_rows VALUES (%s, %s)", (me, seq))
                        (total,) = conn.execute("SELECT sum(seq) FROM wk_rows WHERE thread = %s",
                                                (me,)).fetchone()
                    assert total == seq * (seq + 1) // 2, f"client {me} saw sum {total} at {seq}"
                    value = me * 100_000 + seq
                    assert conn.execute("SELECT %s::int", (value,)).fetchone() == (value,)
                done[me] = seq
        except BaseException as exc:  # noqa: BLE001 - asserted below
            errors.append((me, exc))
            try:
                ready.abort()
            except threading.BrokenBarrierError:
                pass

    with harness.ServerConnectionWatch(pg, USER, DB) as watch:
        threads = [threading.Thread(target=client, args=(i,), daemon=True)
                   for i in range(n_threads)]
        for t in threads:
            t.start()
        try:
            ready.wait(timeout=30)
        except threading.BrokenBarrierError:
            pass
        time.sleep(seconds)
        stop.set()
        for t in threads:
            t.join(timeout=30)
    assert not any(t.is_alive() for t in threads), "clients still running 30 s after the stop"
    assert not errors, f"{len(errors)} clients failed, first: {errors[0]!r}"
    assert watch.error is None, watch.error
    assert watch.samples > 20, f"only {watch.samples} samples of pg_stat_activity"
    assert watch.peak <= cap, f"saw {watch.peak} backends with {limit} = {cap}"
    assert watch.peak == cap, f"the load never used all {cap} servers (peak {watch.peak})"
    # Every client was served (no one starved) and every commit it saw is in the table.
    assert sorted(done) == list(range(n_threads))
    assert min(done.values()) >= 1, done
    with pg.connect(USER, DB) as conn:
        per_thread = dict(conn.execute("SELECT thread, count(*) FROM wk_rows GROUP BY thread"))
    assert per_thread == done


# ---------------------------------------------------------------------------------------------
# 2. Clients are spread over the workers


@WORKERS
def test_show_clients_lists_every_client(pg, usher, workers):
    """40 clients (some on each worker): SHOW CLIENTS lists each of them once, plus the console."""
    pooler = start(usher, workers, pool_size=4)
    clients = []
    try:
        for i in range(40):
            clients.append(connect(pooler, application_name=f"wk-{i}"))
        for i, c in enumerate(clients):
            assert c.execute("SELECT %s::int", (i,)).fetchone() == (i,)
        with console(pooler, pg) as admin:
            listed = rows(admin, "SHOW CLIENTS")
            tenant = [r for r in listed if (r["database"], r["user"]) == (DB, USER)]
            assert sorted(r["application_name"] for r in tenant) == sorted(
                f"wk-{i}" for i in range(40)), listed
            others = [r for r in listed if (r["database"], r["user"]) != (DB, USER)]
            assert [(r["database"], r["user"]) for r in others] == [
                ("pgbouncer", "platform_admin")], others
            # Client ids/pointers identify one client each, over all workers.
            assert len({r["ptr"] for r in listed}) == len(listed), listed
            assert pool_row(admin)["cl_active"] == 40
    finally:
        close_all(clients)


def thread_cpu_ticks(pid: int) -> dict[int, int]:
    """utime + stime (clock ticks) of each thread of pid."""
    ticks = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                stat = f.read()
        except OSError:  # the thread has just exited
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # fields[0] is field 3 (state)
        ticks[int(tid)] = int(fields[11]) + int(fields[12])
    return ticks


@pytest.mark.usher_only
@pytest.mark.timeout(60)
def test_two_workers_both_carry_load(pg, usher, tmp_path):
    """pgbench with 16 clients for 3 s: at least two threads of the usher process each spend more
    than 50 ms of CPU time, i.e. both event loops serve clients."""
    pooler = start(usher, 2, pool_mode="transaction", pool_size=4)
    script = tmp_path / "select1.sql"
    script.write_text("SELECT 1;\n")
    pid = pooler.proc.pid
    before = thread_cpu_ticks(pid)
    res = harness.pgbench(pooler.port, USER, DB, pg.passwords[USER], "-n", "-M", "simple",
                          "-f", str(script), "-c", "16", "-j", "2", "-T", "3")
    after = thread_cpu_ticks(pid)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert "number of failed transactions: 0" in out, out
    hz = os.sysconf("SC_CLK_TCK")
    busy_ms = sorted(((after[t] - before.get(t, 0)) * 1000 // hz for t in after), reverse=True)
    assert len([ms for ms in busy_ms if ms > 50]) >= 2, (
        f"CPU ms per thread during the load: {busy_ms} (threads: {len(after)})")


@WORKERS
def test_one_server_is_shared_by_clients_of_every_worker(pg, usher, workers):
    """Transaction mode, pool_size 1: 10 clients (on both workers) log in and take turns on the
    one backend, which moves to whichever worker has the client that needs it."""
    no_leftover_backends(pg)
    pooler = start(usher, workers, pool_mode="transaction", pool_size=1, query_wait_timeout=10)
    clients = []
    try:
        for i in range(10):
            clients.append(connect(pooler))
            assert clients[-1].execute("SELECT %s::int", (i,)).fetchone() == (i,)
        pids = set()
        for rnd in range(3):
            for i, c in enumerate(clients):
                value = rnd * 100 + i
                pid, got = c.execute("SELECT pg_backend_pid(), %s::int", (value,)).fetchone()
                assert got == value
                pids.add(pid)
        assert len(pids) == 1, f"pool_size 1 used backends {pids}"
        assert backend_pids(pg) == pids
    finally:
        close_all(clients)


@WORKERS
def test_session_clients_one_after_another_reuse_one_server(pg, usher, workers):
    """Session mode, pool_size 1: 8 clients connecting one after another (on both workers) all
    get the same backend: the released server is handed on, not closed and replaced."""
    no_leftover_backends(pg)
    pooler = start(usher, workers, pool_mode="session", pool_size=1, query_wait_timeout=10)
    pids = []
    for i in range(8):
        with connect(pooler) as c:
            pid, got = c.execute("SELECT pg_backend_pid(), %s::int", (i,)).fetchone()
            assert got == i
            pids.append(pid)
    assert len(set(pids)) == 1, f"successive session clients got backends {pids}"
    assert backend_pids(pg) == set(pids)


# ---------------------------------------------------------------------------------------------
# 3. The console sums over workers


@WORKERS
def test_console_counts_are_totals_over_workers(pg, usher, workers):
    """Session mode, 10 clients each holding a server: SHOW POOLS / SERVERS / CLIENTS / LISTS agree
    with pg_stat_activity, and SHOW STATS counts exactly the transactions that ran."""
    no_leftover_backends(pg)
    pooler = start(usher, workers, pool_mode="session", pool_size=20)
    clients = [connect(pooler) for _ in range(10)]
    try:
        for c in clients:
            assert c.execute("SELECT 1").fetchone() == (1,)
        with console(pooler, pg) as admin:
            pids = backend_pids(pg)
            assert len(pids) == 10, pids
            r = pool_row(admin)
            assert (r["cl_active"], r["cl_waiting"]) == (10, 0), r
            assert r["sv_active"] == 10, r
            assert r["sv_active"] + r["sv_idle"] == len(pids), r

            servers = [s for s in rows(admin, "SHOW SERVERS")
                       if (s["database"], s["user"]) == (DB, USER)]
            assert len(servers) == len(pids), servers
            assert {s["remote_pid"] for s in servers} == pids

            listed = rows(admin, "SHOW CLIENTS")
            assert len([c for c in listed if c["database"] == DB]) == 10, listed
            lists = {x["list"]: x["items"] for x in rows(admin, "SHOW LISTS")}
            # The 10 tenant clients and this console; every server is in use (session mode).
            assert lists["used_clients"] == len(listed) == 11, (lists, listed)
            assert lists["login_clients"] == 0, lists
            assert lists["used_servers"] == 10, lists

            before = stats_row(admin)
            n = 200
            for i in range(n):
                c = clients[i % len(clients)]
                assert c.execute("SELECT %s::int", (i,)).fetchone() == (i,)
            harness.wait_until(
                lambda: stats_row(admin)["total_xact_count"] - before["total_xact_count"] >= n,
                3, f"SHOW STATS to count {n} more transactions")
            after = stats_row(admin)
            assert after["total_xact_count"] - before["total_xact_count"] == n
            assert after["total_query_count"] - before["total_query_count"] == n
            assert after["total_received"] > before["total_received"]
            assert after["total_sent"] > before["total_sent"]
            # Still 10 clients on 10 servers.
            r = pool_row(admin)
            assert (r["cl_active"], r["sv_active"]) == (10, 10), r
    finally:
        close_all(clients)


# ---------------------------------------------------------------------------------------------
# 4. Cancel requests reach the right client, whichever worker accepts them


def _sleeping(pg, marker_prefix: str) -> set[str]:
    """Markers (cancel-wk-<i>) of the pg_sleep queries that are running right now."""
    with pg.admin() as conn:
        found = conn.execute(
            "SELECT query FROM pg_stat_activity WHERE state = 'active' AND query LIKE %s"
            " AND pid <> pg_backend_pid()", (f"%{marker_prefix}%",)).fetchall()
    return {m for (q,) in found for m in re.findall(marker_prefix + r"\d+", q)}


@WORKERS
@pytest.mark.timeout(60)
def test_cancel_reaches_its_query_from_any_worker(pg, usher, workers):
    """10 clients each run pg_sleep(30); they are cancelled one at a time (each CancelRequest is a
    new connection the kernel may give to the other worker). Each cancel ends exactly its own
    query within 3 s with 57014, the others keep running, and the connection stays usable."""
    n = 10
    pooler = start(usher, workers, pool_mode="transaction", pool_size=n)
    conns = [connect(pooler) for _ in range(n)]
    try:
        boxes = []
        for i, c in enumerate(conns):
            boxes.append(run_in_thread(c.execute, f"SELECT pg_sleep(30) /* cancel-wk-{i} */")[1])
        want = {f"cancel-wk-{i}" for i in range(n)}
        harness.wait_until(lambda: _sleeping(pg, "cancel-wk-") == want, 10,
                           "every pg_sleep running")
        for i, c in enumerate(conns):
            t0 = time.monotonic()
            c.cancel()
            assert boxes[i]["done"].wait(3), f"client {i}: query not cancelled within 3 s"
            elapsed = time.monotonic() - t0
            err = boxes[i].get("error")
            assert isinstance(err, psycopg.errors.QueryCanceled), (i, boxes[i])
            assert err.sqlstate == "57014"
            assert "canceling statement due to user request" in str(err)
            assert elapsed < 3
            # No other query was cancelled by this request.
            still = {f"cancel-wk-{j}" for j in range(i + 1, n)}
            assert all(not boxes[j]["done"].is_set() for j in range(i + 1, n)), i
            assert _sleeping(pg, "cancel-wk-") == still
        for i, c in enumerate(conns):
            assert c.execute("SELECT %s::int", (i,)).fetchone() == (i,)
    finally:
        for c in conns:
            try:
                c.cancel()
            except Exception:  # noqa: BLE001 - cleanup
                pass
        close_all(conns)


# ---------------------------------------------------------------------------------------------
# 5. One FIFO of waiting clients over all workers


@WORKERS
@pytest.mark.timeout(60)
def test_waiting_clients_are_served_in_arrival_order(pg, usher, workers):
    """pool_size 1: a holder keeps the only server in a transaction; 6 fresh clients (spread over
    the workers) ask for it 100 ms apart. Once the holder commits they run in arrival order, as
    the one server's clock and the completion order both show. Three rounds."""
    pooler = start(usher, workers, pool_mode="transaction", pool_size=1, query_wait_timeout=30)
    n, rounds = 6, 3
    with connect(pooler) as holder:
        for rnd in range(rounds):
            waiters = [connect(pooler) for _ in range(n)]
            try:
                holder.execute("BEGIN")
                holder.execute("SELECT 1")
                finished: list[int] = []
                lock = threading.Lock()

                def ask(i, conn):
                    # 50 ms on the server spaces the completions out: their order is observable.
                    row = conn.execute("SELECT %s::int, clock_timestamp(), pg_sleep(0.05)",
                                       (i,)).fetchone()[:2]
                    with lock:
                        finished.append(i)
                    return row

                boxes = []
                for i, w in enumerate(waiters):
                    boxes.append(run_in_thread(ask, i, w)[1])
                    time.sleep(0.1)
                assert not any(b["done"].is_set() for b in boxes), \
                    f"round {rnd}: a waiter ran while the only server was held"
                holder.execute("COMMIT")
                results = results_within(boxes, 10, f"round {rnd}: waiters after the COMMIT")
                assert [r[0] for r in results] == list(range(n))
                stamps = [r[1] for r in results]
                assert stamps == sorted(stamps), f"round {rnd}: server order {stamps}"
                assert finished == list(range(n)), f"round {rnd}: completion order {finished}"
            finally:
                close_all(waiters)


# ---------------------------------------------------------------------------------------------
# 6. Console commands act on every worker


def set_pool_size(path, size: int) -> None:
    """Rewrite every database's pool_size (usher.toml or pgbouncer.ini), leaving
    default_pool_size / reserve_pool_size alone."""
    text = path.read_text()
    new, count = re.subn(r"(?<![A-Za-z_])pool_size(\s*)=(\s*)\d+", rf"pool_size\1=\g<2>{size}",
                         text)
    assert count >= 1, text
    path.write_text(new)


@pytest.mark.timeout(90)
def test_pause_resume_reconnect_reload_kill_with_two_workers(pg, usher):
    pooler = start(usher, 2, pool_mode="transaction", pool_size=4, query_wait_timeout=30)
    holders = [connect(pooler) for _ in range(4)]
    idlers = [connect(pooler) for _ in range(6)]
    everyone = holders + idlers
    extra: list = []
    try:
        for c in idlers:
            assert c.execute("SELECT 1").fetchone() == (1,)
        for h in holders:
            h.execute("BEGIN")
            h.execute("SELECT 1")
        with console(pooler, pg) as pauser, console(pooler, pg) as admin:
            # -- PAUSE waits for every server in use, on whichever worker, to be released.
            _, pause = run_in_thread(pauser.execute, "PAUSE")
            for i, h in enumerate(holders):
                assert not pause["done"].wait(0.3), \
                    f"PAUSE returned with {len(holders) - i} transactions still open"
                h.execute("COMMIT")
            result_of(pause, 5, "PAUSE after the last COMMIT")
            r = pool_row(admin)
            assert r["sv_active"] == 0, r
            if pooler.is_usher:
                assert {x["key"]: x["value"] for x in rows(admin, "SHOW STATE")}["paused"] == "yes"

            # -- While paused every client's next transaction waits; RESUME lets all of them run.
            boxes = [run_in_thread(lambda c, i: c.execute("SELECT %s::int", (i,)).fetchone(),
                                   c, i)[1] for i, c in enumerate(everyone)]
            harness.wait_until(lambda: pool_row(admin)["cl_waiting"] == len(everyone), 5,
                               "every client waiting while paused")
            time.sleep(0.3)
            assert not any(b["done"].is_set() for b in boxes), "a transaction ran while paused"
            admin.execute("RESUME")
            assert results_within(boxes, 5, "clients after RESUME") == [
                (i,) for i in range(len(everyone))]

            # -- RECONNECT: every server open now is replaced once released.
            # (PgBouncer counts a server closed during its login as a failed login: let the
            # logins RESUME started finish first.)
            harness.wait_until(lambda: pool_row(admin)["sv_login"] == 0, 5, "server logins done")
            old = backend_pids(pg)
            assert old
            admin.execute("RECONNECT")

            def replaced():
                for i, c in enumerate(everyone):
                    assert c.execute("SELECT %s::int", (i,)).fetchone() == (i,)
                return not (backend_pids(pg) & old)

            harness.wait_until(replaced, 5, "the servers of before RECONNECT to close")
            for c in everyone:
                assert c.execute("SELECT pg_backend_pid()").fetchone()[0] not in old

            # -- RELOAD: a new pool_size reaches SHOW DATABASES and the limit every worker applies.
            set_pool_size(pooler.config_path, 6)
            admin.execute("RELOAD")
            dbs = {d["name"]: d for d in rows(admin, "SHOW DATABASES")}
            assert dbs[DB]["pool_size"] == 6, dbs[DB]
            tx = everyone[:6]
            for c in tx:
                c.execute("BEGIN")
            in_tx = [c.execute("SELECT pg_backend_pid()").fetchone()[0] for c in tx]
            assert len(set(in_tx)) == 6, in_tx
            seventh = everyone[6]
            _, waiting = run_in_thread(lambda: seventh.execute("SELECT 7").fetchone())
            harness.wait_until(lambda: pool_row(admin)["cl_waiting"] == 1, 5,
                               "a 7th transaction waiting for one of 6 servers")
            assert not waiting["done"].wait(0.3), "a 7th server was used with pool_size 6"
            tx[0].execute("COMMIT")
            assert result_of(waiting, 5, "the 7th transaction") == (7,)
            for c in tx[1:]:
                c.execute("COMMIT")
            assert len(backend_pids(pg)) <= 6

            # -- KILL drops every client and server of the database and pauses it until RESUME.
            admin.execute(f"KILL {DB}")
            for i, c in enumerate(everyone):
                with pytest.raises(psycopg.OperationalError):
                    c.execute("SELECT 1")
            harness.wait_until(lambda: not pg.backends(USER, DB), 5, "the servers killed")
            assert all(r["cl_active"] == 0 for r in rows(admin, "SHOW POOLS")
                       if (r["database"], r["user"]) == (DB, USER))

            def newcomer():
                conn = connect(pooler)
                extra.append(conn)
                return conn.execute("SELECT 'after kill'").fetchone()

            _, late = run_in_thread(newcomer)
            assert not late["done"].wait(0.5), "a killed database served before RESUME"
            admin.execute(f"RESUME {DB}")
            # (PgBouncer 1.18 closes the server the waiting login opened, counts that as a failed
            # login and serves the database again only after server_login_retry, 15 s.)
            if pooler.is_usher:
                assert result_of(late, 5, "a new client after RESUME") == ("after kill",)
                with connect(pooler) as conn:
                    assert conn.execute("SELECT 'resumed'").fetchone() == ("resumed",)
    finally:
        close_all(everyone + extra)


# ---------------------------------------------------------------------------------------------
# 7. Prepared statements while servers move between workers

PGBENCH_PREPARED = r"""
\set r random(1, 1000000)
SELECT :r::int + 1 AS a \gset
SELECT :r::int * 2 AS b, 'x' || :r AS c \gset
\if :a != :r + 1
SELECT 1/0 AS wrong_result_a;
\endif
\if :b != 2 * :r
SELECT 1/0 AS wrong_result_b;
\endif
"""


@pytest.mark.usher_only  # PgBouncer 1.18 has no prepared statements in transaction mode
@pytest.mark.timeout(60)
@WORKERS
def test_prepared_statements_across_workers(pg, usher, workers, tmp_path):
    pooler = start(usher, workers, pool_mode="transaction", pool_size=2, query_wait_timeout=30)
    script = tmp_path / "prepared.sql"
    script.write_text(PGBENCH_PREPARED)
    res = harness.pgbench(pooler.port, USER, DB, pg.passwords[USER], "-n", "-M", "prepared",
                          "-f", str(script), "-c", "10", "-j", "2", "-T", "3")
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert "ERROR" not in out and "aborted" not in out, out
    assert "number of failed transactions: 0" in out, out
    processed = int(re.search(r"number of transactions actually processed: (\d+)", out).group(1))
    assert processed > 100, out

    errors: list = []
    start_line = threading.Barrier(10)

    def client(me: int):
        try:
            with connect(pooler, prepare_threshold=0) as conn:
                start_line.wait(timeout=30)
                for i in range(50):
                    shared = conn.execute("SELECT %s::int + %s::int, %s::text",
                                          (me, i, f"t{me}")).fetchone()
                    assert shared == (me + i, f"t{me}"), (me, i, shared)
                    own = conn.execute(f"SELECT %s::int * {me + 1} /* client {me} */",
                                       (i,)).fetchone()
                    assert own == (i * (me + 1),), (me, i, own)
                    with conn.transaction():
                        row = conn.execute("SELECT %s::text || '-' || %s::int",
                                           (f"c{me}", i)).fetchone()
                    assert row == (f"c{me}-{i}",), (me, i, row)
        except BaseException as exc:  # noqa: BLE001 - asserted below
            errors.append((me, exc))
            start_line.abort()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=40)
    assert not any(t.is_alive() for t in threads), "clients still running"
    assert not errors, f"{len(errors)} clients failed, first: {errors[0]!r}"


# ---------------------------------------------------------------------------------------------
# 8. Shutdown signals with two workers


@pytest.mark.usher_only  # PgBouncer 1.18's SIGTERM is an immediate shutdown
def test_sigterm_with_two_workers_waits_for_every_client(pg, usher):
    pooler = start(usher, 2, pool_mode="transaction", pool_size=2)
    proc = pooler.proc
    clients = [connect(pooler) for _ in range(6)]
    try:
        for i, c in enumerate(clients):
            assert c.execute("SELECT %s::int", (i,)).fetchone() == (i,)
        proc.send_signal(signal.SIGTERM)
        # Connected clients, on both workers, are still served...
        for i, c in enumerate(clients):
            assert c.execute("SELECT %s::int", (i + 10,)).fetchone() == (i + 10,)
        # ...and the process stays while any one of them remains.
        for c in clients[:-1]:
            c.close()
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=1)
        assert clients[-1].execute("SELECT 'last'").fetchone() == ("last",)
    finally:
        close_all(clients)
    try:
        status = proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pytest.fail("still running 5 s after SIGTERM and the last client leaving")
    pooler.proc = None
    pooler.final_log = pooler.log()
    assert status == 0, f"exit status {status} after SIGTERM"
    harness.wait_until(lambda: not pg.backends(USER, DB), 5, "server connections to close")


def test_sigint_with_two_workers_and_idle_clients_exits(pg, usher):
    pooler = start(usher, 2, pool_mode="transaction", pool_size=2)
    clients = [connect(pooler) for _ in range(6)]
    try:
        for i, c in enumerate(clients):
            assert c.execute("SELECT %s::int", (i,)).fetchone() == (i,)
        assert pg.backends(USER, DB), "expected idle server connections"
        status = pooler.signal_and_wait(signal.SIGINT, timeout=5)
        assert status is not None, "still running 5 s after SIGINT with no server in use"
        assert status == 0, f"exit status {status} after SIGINT"
        for c in clients:
            with pytest.raises(psycopg.OperationalError):
                c.execute("SELECT 1")
    finally:
        close_all(clients)
    harness.wait_until(lambda: not pg.backends(USER, DB), 5, "server connections to close")
