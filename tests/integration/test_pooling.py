"""Pool behaviour beyond plain forwarding: per-client session parameters on shared servers,
session-mode reset, statement mode, limits and wait timeouts, reload, and JSON logs."""

import json
import signal
import time

import psycopg
import pytest

import harness
from pgwire import RawConnection, ServerError

pytestmark = pytest.mark.usher_only

USER, DB = "trading_app_user", "trading_db"


def show(conn, name):
    return conn.execute(f"SHOW {name}").fetchone()[0]


def test_session_parameters_follow_each_client_on_one_server(pg, usher):
    """Two clients with different settings share ONE server in transaction mode; each always
    sees its own values (startup parameters, options=-c ..., and a later SET)."""
    pooler = usher(pool_mode="transaction", pool_size=1)
    a = psycopg.connect(pooler.conninfo() + " application_name=client_a"
                        " options='-c statement_timeout=1234 -c DateStyle=German'",
                        autocommit=True, prepare_threshold=None)
    b = psycopg.connect(pooler.conninfo() + " application_name=client_b",
                        autocommit=True, prepare_threshold=None)
    with a, b:
        for _ in range(3):
            assert show(a, "statement_timeout") == "1234ms"
            assert show(b, "statement_timeout") == "0"
            assert show(a, "DateStyle") == "German, DMY"
            assert show(b, "DateStyle") == "ISO, MDY"
            assert show(a, "application_name") == "client_a"
            assert show(b, "application_name") == "client_b"
        # A SET outside a transaction becomes part of that client's session only.
        a.execute("SET DateStyle = 'SQL, MDY'")
        assert show(b, "DateStyle") == "ISO, MDY"
        assert show(a, "DateStyle") == "SQL, MDY"
        pids = {a.execute("SELECT pg_backend_pid()").fetchone()[0],
                b.execute("SELECT pg_backend_pid()").fetchone()[0]}
        assert len(pids) == 1, "pool_size=1 must mean one server connection"


def test_session_mode_resets_the_server_between_clients(pg, usher):
    pooler = usher(pool_mode="session", pool_size=1)
    with pooler.connect() as a:
        a.execute("SET work_mem = '7MB'")
        a.execute("CREATE TEMP TABLE scratch (x int)")
        pid_a = a.execute("SELECT pg_backend_pid()").fetchone()[0]
    with pooler.connect() as b:
        assert b.execute("SELECT pg_backend_pid()").fetchone()[0] == pid_a  # the same server...
        assert show(b, "work_mem") == "4MB"  # ...after DISCARD ALL
        assert b.execute("SELECT count(*) FROM pg_class WHERE relname = 'scratch'"
                         " AND relpersistence = 't'").fetchone()[0] == 0


def test_statement_mode_refuses_transaction_blocks(pg, usher):
    pooler = usher(pool_mode="statement", pool_size=1)
    with pooler.connect() as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        with pytest.raises(psycopg.OperationalError,
                           match="transaction blocks not allowed in statement pooling mode"):
            conn.execute("BEGIN")
    # The server that had the open transaction was not given to the next client.
    with pooler.connect() as conn:
        assert conn.execute("SELECT now() = statement_timestamp()").fetchone() == (True,)


def test_query_wait_timeout_and_fifo(pg, usher):
    pooler = usher(pool_mode="transaction", pool_size=1, query_wait_timeout=1)
    with pooler.connect() as holder, pooler.connect() as waiter:
        holder.execute("BEGIN")
        holder.execute("SELECT 1")
        t0 = time.monotonic()
        with pytest.raises(psycopg.OperationalError, match="query_wait_timeout"):
            waiter.execute("SELECT 2")
        assert 0.9 <= time.monotonic() - t0 < 3
        holder.execute("COMMIT")
    with pooler.connect() as conn:  # the pool serves again
        assert conn.execute("SELECT 3").fetchone() == (3,)


def test_max_client_conn_refuses_with_pgbouncer_wording(pg, usher):
    pooler = usher(max_client_conn=2)
    with harness.connect_when_slot_free(pooler), harness.connect_when_slot_free(pooler):
        with pytest.raises(psycopg.OperationalError,
                           match=r"no more connections allowed \(max_client_conn\)"):
            pooler.connect().close()
        with RawConnection(pooler.host, pooler.port) as raw:
            with pytest.raises(ServerError) as err:
                raw.login(USER, DB, pg.passwords[USER])
        assert err.value.sqlstate == "53300"
    with harness.connect_when_slot_free(pooler) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_server_down_fails_fast_and_recovers_within_a_second(pg, usher):
    pooler = usher(pool_mode="transaction", pool_size=2)
    with pooler.connect() as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    pg._run([str(harness.PG_BINDIR / "pg_ctl"), "-D", str(pg.datadir), "-m", "fast", "-w", "stop"])
    try:
        t0 = time.monotonic()
        with pytest.raises(psycopg.OperationalError, match="cannot connect to server"):
            with pooler.connect() as conn:
                conn.execute("SELECT 1")
        assert time.monotonic() - t0 < 3, "a client must learn that PostgreSQL is down quickly"
    finally:
        pg._run([str(harness.PG_BINDIR / "pg_ctl"), "-D", str(pg.datadir), "-l", str(pg.logfile),
                 "-w", "-t", "60", "start"])
    t0 = time.monotonic()

    def serves():
        try:
            with pooler.connect() as conn:
                return conn.execute("SELECT 42").fetchone() == (42,)
        except psycopg.OperationalError:
            return False

    harness.wait_until(serves, 5, "usher to serve again after PostgreSQL came back")
    assert time.monotonic() - t0 < 2.5


def test_reload_adds_a_database_without_dropping_clients(pg, usher):
    pooler = usher(pool_mode="transaction", pool_size=2)
    with pooler.connect() as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS reload_t (x int)")
        conn.execute("TRUNCATE reload_t")
    with pooler.connect() as in_tx:
        in_tx.execute("BEGIN")
        in_tx.execute("INSERT INTO reload_t VALUES (1)")
        text = pooler.config_path.read_text()
        pooler.config_path.write_text(
            text + f'\n[databases.trading_alias]\nhost = "{pg.host}"\nport = {pg.port}\n'
                   'dbname = "trading_db"\n')
        pooler.proc.send_signal(signal.SIGHUP)
        harness.wait_until(lambda: "configuration reloaded" in pooler.log(), 5, "reload")
        in_tx.execute("INSERT INTO reload_t VALUES (2)")
        in_tx.execute("COMMIT")
        with pooler.connect(dbname="trading_alias") as alias:
            assert alias.execute("SELECT count(*) FROM reload_t").fetchone() == (2,)
        # A broken config is reported and the running one stays.
        pooler.config_path.write_text(text + "\n[usher]\nthis is not toml\n")
        pooler.proc.send_signal(signal.SIGHUP)
        harness.wait_until(lambda: "reload failed" in pooler.log(), 5, "failed reload report")
        assert in_tx.execute("SELECT count(*) FROM reload_t").fetchone() == (2,)
        with pooler.connect(dbname="trading_alias") as alias:
            assert alias.execute("SELECT 1").fetchone() == (1,)


def test_json_log_lines_and_no_secrets(pg, usher):
    pooler = usher(log_format="json")
    with pooler.connect() as conn:
        conn.execute("SELECT 1")
    with pytest.raises(psycopg.OperationalError):
        pooler.connect(password="wrong-password-xyz").close()
    lines = [line for line in pooler.log().splitlines() if line.strip()]
    assert lines
    records = [json.loads(line) for line in lines]
    assert all({"time", "level", "logger", "msg"} <= r.keys() for r in records)
    assert any("login attempt" in r["msg"] for r in records)
    assert any("password authentication failed" in r["msg"] for r in records)
    log = pooler.log()
    for secret in [*pg.passwords.values(), "wrong-password-xyz"]:
        assert secret not in log


def test_waiting_clients_are_served_first_in_first_out(pg, usher):
    """pool_size 1: three clients queue behind a transaction in a known order; each runs in
    that order once the server is free (clock_timestamp() on the one server orders them)."""
    import threading
    pooler = usher(pool_mode="transaction", pool_size=1, query_wait_timeout=30)
    holder = pooler.connect()
    waiters = [pooler.connect() for _ in range(3)]
    with holder:
        holder.execute("BEGIN")
        holder.execute("SELECT 1")
        results, threads = {}, []
        with psycopg.connect(pooler.conninfo("platform_admin", "pgbouncer",
                                             pg.passwords["platform_admin"]),
                             autocommit=True, prepare_threshold=None) as admin:
            def waiting():
                cur = admin.execute("SHOW POOLS")
                names = [d.name for d in cur.description]
                row = next(dict(zip(names, r)) for r in cur.fetchall() if r[0] == DB)
                return row["cl_waiting"]
            for i, w in enumerate(waiters):
                t = threading.Thread(target=lambda i=i, w=w: results.__setitem__(
                    i, w.execute("SELECT clock_timestamp()").fetchone()[0]))
                t.start()
                threads.append(t)
                harness.wait_until(lambda i=i: waiting() == i + 1, 5, f"waiter {i} queued")
        holder.execute("COMMIT")
        for t in threads:
            t.join(10)
    for w in waiters:
        w.close()
    assert results[0] < results[1] < results[2], results
