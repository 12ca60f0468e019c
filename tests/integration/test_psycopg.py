"""psycopg 3 through the pooler: many concurrent clients on two servers, cancel, COPY."""

import hashlib
import threading
import time

import psycopg
import pytest

import harness

USER, DB = "trading_app_user", "trading_db"
THREADS = 20
TX_PER_THREAD = 25


@pytest.fixture
def conc_tables(pg):
    with pg.connect(USER, DB) as conn:
        conn.execute("DROP TABLE IF EXISTS conc_rows, conc_counter")
        conn.execute("CREATE TABLE conc_rows (worker int, seq int, PRIMARY KEY (worker, seq))")
        conn.execute("CREATE TABLE conc_counter (id int PRIMARY KEY, n bigint NOT NULL)")
        conn.execute("INSERT INTO conc_counter VALUES (1, 0)")
    yield
    with pg.connect(USER, DB) as conn:
        conn.execute("DROP TABLE IF EXISTS conc_rows, conc_counter")


@pytest.mark.timeout(90)
def test_concurrent_transactions_share_two_servers(pg, usher, conc_tables):
    pooler = usher(pool_mode="transaction", pool_size=2)
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS)

    def worker(me: int):
        try:
            with pooler.connect() as conn:
                start.wait(timeout=30)
                for seq in range(TX_PER_THREAD):
                    with conn.transaction():
                        conn.execute("INSERT INTO conc_rows VALUES (%s, %s)", (me, seq))
                        (mine,) = conn.execute("SELECT count(*) FROM conc_rows WHERE worker = %s",
                                               (me,)).fetchone()
                        assert mine == seq + 1, f"worker {me} sees {mine} rows after insert {seq}"
                        (n,) = conn.execute("UPDATE conc_counter SET n = n + 1 WHERE id = 1"
                                            " RETURNING n").fetchone()
                        assert 1 <= n <= THREADS * TX_PER_THREAD
                # A transaction that rolls back leaves nothing behind.
                with pytest.raises(psycopg.errors.UniqueViolation):
                    with conn.transaction():
                        conn.execute("INSERT INTO conc_rows VALUES (%s, 0)", (me,))
                (mine,) = conn.execute("SELECT count(*) FROM conc_rows WHERE worker = %s",
                                       (me,)).fetchone()
                assert mine == TX_PER_THREAD
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    with harness.ServerConnectionWatch(pg, USER, DB) as watch:
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=80)
    assert not any(t.is_alive() for t in threads), "workers still running"
    assert not errors, f"{len(errors)} workers failed, first: {errors[0]!r}"

    with pg.connect(USER, DB) as conn:
        rows = conn.execute("SELECT count(*), count(DISTINCT worker), sum(seq) FROM conc_rows").fetchone()
        assert rows == (THREADS * TX_PER_THREAD, THREADS,
                        THREADS * sum(range(TX_PER_THREAD)))
        per_worker = conn.execute("SELECT worker, count(*) FROM conc_rows GROUP BY worker").fetchall()
        assert sorted(per_worker) == [(i, TX_PER_THREAD) for i in range(THREADS)]
        assert conn.execute("SELECT n FROM conc_counter").fetchone() == (THREADS * TX_PER_THREAD,)
    assert watch.error is None, watch.error
    assert 1 <= watch.peak <= 2, f"saw {watch.peak} server connections for a pool of 2"


def _active_sleeps(pg, marker: str) -> list[int]:
    with pg.admin() as conn:
        return [r[0] for r in conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE state = 'active' AND query LIKE %s"
            " AND pid <> pg_backend_pid()",
            (f"%{marker}%",)).fetchall()]


def test_cancel_reaches_the_right_query(pg, usher):
    pooler = usher(pool_mode="transaction", pool_size=2)
    with pooler.connect() as victim, pooler.connect() as bystander:
        results: dict[str, object] = {}

        def run_bystander():
            try:
                results["bystander"] = bystander.execute(
                    "SELECT 'bystander', pg_sleep(2) /* cancel-test-b */").fetchone()[0]
            except BaseException as exc:  # noqa: BLE001
                results["bystander"] = exc

        b = threading.Thread(target=run_bystander)
        b.start()

        def cancel_when_running():
            harness.wait_until(lambda: _active_sleeps(pg, "cancel-test-a") and
                               _active_sleeps(pg, "cancel-test-b"), 10, "both queries running")
            victim.cancel()

        c = threading.Thread(target=cancel_when_running)
        c.start()
        t0 = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled) as err:
            victim.execute("SELECT pg_sleep(30) /* cancel-test-a */")
        elapsed = time.monotonic() - t0
        c.join(timeout=10)
        b.join(timeout=20)
        assert err.value.sqlstate == "57014"
        assert "canceling statement due to user request" in str(err.value)
        assert elapsed < 10, f"cancel took {elapsed:.1f}s"
        # Only the victim's query was cancelled.
        assert results["bystander"] == "bystander"
        # The cancelled connection is usable, and nothing still sleeps on the server.
        assert victim.execute("SELECT 'still here'").fetchone() == ("still here",)
        assert _active_sleeps(pg, "cancel-test-a") == []


def test_copy_api_matches_direct(pg, usher):
    pooler = usher(pool_mode="transaction", pool_size=2)
    query = "COPY (SELECT i, md5(i::text), i % 7 = 0 FROM generate_series(1, 100000) AS i) TO STDOUT"

    def copy_out(conn) -> bytes:
        buf = bytearray()
        with conn.cursor() as cur, cur.copy(query) as copy:
            for block in copy:
                buf += block
        return bytes(buf)

    with pg.connect(USER, DB) as direct, pooler.connect() as pooled:
        expected = copy_out(direct)
        got = copy_out(pooled)
        assert got.count(b"\n") == 100_000
        assert hashlib.sha256(got).digest() == hashlib.sha256(expected).digest()

        pooled.execute("DROP TABLE IF EXISTS copy_api")
        pooled.execute("CREATE TABLE copy_api (i int, h text, b bool)")
        with pooled.cursor() as cur, cur.copy("COPY copy_api FROM STDIN") as copy:
            for off in range(0, len(got), 1 << 16):
                copy.write(got[off:off + (1 << 16)])
        row = direct.execute("SELECT count(*), sum(i), md5(string_agg(h, '' ORDER BY i)),"
                             " count(*) FILTER (WHERE b) FROM copy_api").fetchone()
        want = direct.execute("SELECT count(*), sum(i), md5(string_agg(md5(i::text), '' ORDER BY i)),"
                              " count(*) FILTER (WHERE i % 7 = 0)"
                              " FROM generate_series(1, 100000) AS i").fetchone()
        assert row == want
        pooled.execute("DROP TABLE copy_api")
