"""The admin console (database `pgbouncer`) as operators use it: psql and SHOW POOLS."""

import harness

USER, DB = "trading_app_user", "trading_db"


def show(pooler, pg, command, user="platform_admin"):
    res = harness.psql(pooler.port, user, "pgbouncer", pg.passwords[user], "-A", "-F", "|",
                       "-P", "footer=off", "-c", command)
    return res


def test_show_pools_lists_the_tenant_pool(pg, usher):
    pooler = usher()
    with pooler.connect() as client:
        assert client.execute("SELECT 1").fetchone() == (1,)
        res = show(pooler, pg, "SHOW POOLS")
        assert res.returncode == 0, res.stderr
        header, *rows = res.stdout.splitlines()
        columns = header.split("|")
        assert columns[:4] == ["database", "user", "cl_active", "cl_waiting"], header
        pools = {(r["database"], r["user"]): r for r in
                 (dict(zip(columns, line.split("|"))) for line in rows)}
        assert (DB, USER) in pools, res.stdout
        assert int(pools[(DB, USER)]["cl_active"]) >= 1
        assert pools[(DB, USER)]["pool_mode"] == "transaction"


def test_console_refuses_tenant_users(pg, usher):
    pooler = usher()
    res = show(pooler, pg, "SHOW POOLS", user=USER)
    assert res.returncode != 0
    assert "SHOW POOLS" not in res.stdout and "database|user" not in res.stdout


# ---------------------------------------------------------------------------------------------
# The console contract, column by column. The table is PgBouncer 1.25's (docs/
# pgbouncer-console-reference.md, read from PgBouncer's admin.c), not usher's own list.

import subprocess
import threading
import time

import psycopg
import pytest

TEXT, INT4, INT8, NUMERIC = 25, 23, 20, 1700
SESSION_COLUMNS = [("type", TEXT), ("user", TEXT), ("database", TEXT), ("replication", TEXT),
                   ("state", TEXT), ("addr", TEXT), ("port", INT4), ("local_addr", TEXT),
                   ("local_port", INT4), ("connect_time", TEXT), ("request_time", TEXT),
                   ("wait", INT4), ("wait_us", INT4), ("close_needed", INT4), ("ptr", TEXT),
                   ("link", TEXT), ("remote_pid", INT4), ("tls", TEXT),
                   ("application_name", TEXT), ("prepared_statements", INT4), ("id", INT4)]
STAT_NAMES = ["server_assignment_count", "xact_count", "query_count", "bytes_received",
              "bytes_sent", "xact_time", "query_time", "wait_time"]
CONTRACT = {
    "POOLS": [("database", TEXT), ("user", TEXT)] + [(c, INT4) for c in [
        "cl_active", "cl_waiting", "cl_active_cancel_req", "cl_waiting_cancel_req", "sv_active",
        "sv_active_cancel", "sv_being_canceled", "sv_idle", "sv_used", "sv_tested", "sv_login",
        "maxwait", "maxwait_us"]] + [("pool_mode", TEXT), ("load_balance_hosts", TEXT)],
    "STATS": [("database", TEXT)] + [(c, NUMERIC) for c in [
        "total_server_assignment_count", "total_xact_count", "total_query_count",
        "total_received", "total_sent", "total_xact_time", "total_query_time", "total_wait_time",
        "total_client_parse_count", "total_server_parse_count", "total_bind_count",
        "avg_server_assignment_count", "avg_xact_count", "avg_query_count", "avg_recv",
        "avg_sent", "avg_xact_time", "avg_query_time", "avg_wait_time",
        "avg_client_parse_count", "avg_server_parse_count", "avg_bind_count"]],
    "STATS_TOTALS": [("database", TEXT)] + [(c, NUMERIC) for c in STAT_NAMES + [
        "client_parse_count", "server_parse_count", "bind_count"]],
    "STATS_AVERAGES": [("database", TEXT)] + [(c, NUMERIC) for c in STAT_NAMES + [
        "avg_client_parse_count", "avg_server_parse_count", "avg_bind_count"]],
    "TOTALS": [("name", TEXT), ("value", NUMERIC)],
    "CLIENTS": SESSION_COLUMNS,
    "SERVERS": SESSION_COLUMNS,
    "SOCKETS": SESSION_COLUMNS + [(c, INT4) for c in [
        "recv_pos", "pkt_pos", "pkt_remain", "send_pos", "send_remain", "pkt_avail",
        "send_avail"]],
    "ACTIVE_SOCKETS": SESSION_COLUMNS + [(c, INT4) for c in [
        "recv_pos", "pkt_pos", "pkt_remain", "send_pos", "send_remain", "pkt_avail",
        "send_avail"]],
    "DATABASES": [("name", TEXT), ("host", TEXT), ("port", INT4), ("database", TEXT),
                  ("force_user", TEXT), ("pool_size", INT4), ("min_pool_size", INT4),
                  ("reserve_pool_size", INT4), ("server_lifetime", INT4), ("pool_mode", TEXT),
                  ("load_balance_hosts", TEXT), ("max_connections", INT4),
                  ("current_connections", INT4), ("max_client_connections", INT4),
                  ("current_client_connections", INT4), ("paused", INT4), ("disabled", INT4)],
    "USERS": [("name", TEXT), ("pool_size", TEXT), ("reserve_pool_size", TEXT),
              ("pool_mode", TEXT), ("max_user_connections", INT4), ("current_connections", INT4),
              ("max_user_client_connections", INT4), ("current_client_connections", INT4)],
    "CONFIG": [("key", TEXT), ("value", TEXT), ("default", TEXT), ("changeable", TEXT)],
    "LISTS": [("list", TEXT), ("items", INT4)],
    "MEM": [("name", TEXT), ("size", INT4), ("used", INT4), ("free", INT4), ("memtotal", INT4)],
    "VERSION": [("version", TEXT)],
    "STATE": [("key", TEXT), ("value", TEXT)],
    "DNS_HOSTS": [("hostname", TEXT), ("ttl", INT8), ("addrs", TEXT)],
    "DNS_ZONES": [("zonename", TEXT), ("serial", INT8), ("count", INT4)],
}


def console(pooler, pg, user="platform_admin"):
    # The console speaks only the simple protocol: no server-side prepared statements.
    return psycopg.connect(pooler.conninfo(user, "pgbouncer", pg.passwords[user]),
                           autocommit=True, prepare_threshold=None)


def rows(conn, command):
    cur = conn.execute(command)
    names = [d.name for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def pool_row(conn, db=DB, user=USER):
    matches = [r for r in rows(conn, "SHOW POOLS") if (r["database"], r["user"]) == (db, user)]
    assert len(matches) == 1, matches
    return matches[0]


@pytest.mark.usher_only
@pytest.mark.parametrize("subject", sorted(CONTRACT))
def test_show_columns_match_pgbouncer(pg, usher, subject):
    pooler = usher()
    with pooler.connect() as client, console(pooler, pg) as admin:
        client.execute("SELECT 1")
        for spelling in (f"SHOW {subject}", f"show {subject.lower()};", f"SELECT {subject}"):
            cur = admin.execute(spelling)
            got = [(d.name, d.type_code) for d in cur.description]
            assert got == CONTRACT[subject], spelling
            cur.fetchall()


@pytest.mark.usher_only
def test_show_lists_state_and_help_rows(pg, usher):
    pooler = usher()
    with console(pooler, pg) as admin:
        assert [r["list"] for r in rows(admin, "SHOW LISTS")] == [
            "databases", "users", "peers", "pools", "peer_pools", "free_clients", "used_clients",
            "login_clients", "free_servers", "used_servers", "dns_names", "dns_zones",
            "dns_queries", "dns_pending"]
        assert rows(admin, "SHOW STATE") == [{"key": "active", "value": "yes"},
                                             {"key": "paused", "value": "no"},
                                             {"key": "suspended", "value": "no"}]
        assert rows(admin, "SHOW VERSION")[0]["version"].startswith("PgBouncer 1.25")
    res = harness.psql(pooler.port, "platform_admin", "pgbouncer", pg.passwords["platform_admin"],
                       "-c", "SHOW HELP")
    assert res.returncode == 0
    assert "NOTICE:  Console usage" in res.stderr and "SHOW HELP|CONFIG|DATABASES" in res.stderr


@pytest.mark.usher_only
def test_pool_counts_match_a_known_state(pg, usher):
    """pool_size 1: one client holds a transaction, a second waits for the server."""
    pooler = usher(pool_size=1, query_wait_timeout=30)
    with pooler.connect() as holder, pooler.connect() as waiter, console(pooler, pg) as admin:
        holder.execute("BEGIN")
        holder.execute("SELECT 1")
        r = pool_row(admin)
        assert (r["cl_active"], r["cl_waiting"], r["sv_active"], r["sv_idle"]) == (2, 0, 1, 0)
        t = threading.Thread(target=lambda: waiter.execute("SELECT 2"))
        t.start()
        harness.wait_until(lambda: pool_row(admin)["cl_waiting"] == 1, 5, "a waiting client")
        time.sleep(0.3)
        r = pool_row(admin)
        assert (r["cl_active"], r["cl_waiting"], r["sv_active"]) == (1, 1, 1)
        assert r["maxwait"] * 1_000_000 + r["maxwait_us"] >= 200_000
        holder.execute("COMMIT")
        t.join(5)
        harness.wait_until(lambda: pool_row(admin)["sv_active"] == 0, 5, "the server released")
        r = pool_row(admin)
        assert (r["cl_active"], r["cl_waiting"], r["sv_idle"]) == (2, 0, 1)


@pytest.mark.usher_only
def test_stats_count_transactions_and_queries(pg, usher):
    pooler = usher(pool_size=2)
    with pooler.connect() as client, console(pooler, pg) as admin:
        def stats():
            return next(r for r in rows(admin, "SHOW STATS") if r["database"] == DB)
        client.execute("SELECT 1")
        before = stats()
        for _ in range(5):
            client.execute("SELECT 1")
        with client.transaction():
            client.execute("SELECT 1")
            client.execute("SELECT 2")
        after = stats()
        # 5 autocommit statements + 1 transaction of BEGIN, 2 SELECTs and COMMIT.
        assert after["total_xact_count"] - before["total_xact_count"] == 6
        assert after["total_query_count"] - before["total_query_count"] == 9
        assert after["total_received"] > before["total_received"]
        assert after["total_sent"] > before["total_sent"]
        assert after["total_xact_time"] > before["total_xact_time"]


@pytest.mark.usher_only
def test_stats_users_may_look_but_not_touch(pg, usher):
    pooler = usher(stats_users=["librarian_user"])
    with console(pooler, pg, user="librarian_user") as viewer:
        assert rows(viewer, "SHOW POOLS") is not None
        with pytest.raises(psycopg.Error, match="admin access needed") as err:
            viewer.execute("PAUSE")
        assert err.value.sqlstate == "08P01"
        assert rows(viewer, "SHOW STATE")[1] == {"key": "paused", "value": "no"}


@pytest.mark.usher_only
def test_console_errors_keep_the_session(pg, usher):
    pooler = usher()
    with console(pooler, pg) as admin:
        with pytest.raises(psycopg.Error, match=r"invalid command 'SHOW NONSENSE', use SHOW HELP;"):
            admin.execute("SHOW NONSENSE")
        with pytest.raises(psycopg.Error, match="no such database: nosuchdb"):
            admin.execute("PAUSE nosuchdb")
        with pytest.raises(psycopg.Error, match="pooler is not paused/suspended"):
            admin.execute("RESUME")
        assert rows(admin, "SHOW STATE")[0]["value"] == "yes"


def _pgbench(pooler, pg, seconds, clients=8):
    return subprocess.Popen(
        ["pgbench", "-h", "127.0.0.1", "-p", str(pooler.port), "-U", USER, "-n", "-S",
         "-c", str(clients), "-j", "2", "-T", str(seconds), DB],
        env=harness.clean_env(PGPASSWORD=pg.passwords[USER]), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)


@pytest.fixture
def bench_tables(pg):
    res = subprocess.run(["pgbench", "-i", "-q", "-h", pg.host, "-p", str(pg.port), "-U", USER,
                          DB], env=harness.clean_env(PGPASSWORD=pg.passwords[USER]),
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


@pytest.mark.usher_only
def test_pause_resume_and_reload_under_load_lose_nothing(pg, usher, bench_tables):
    pooler = usher(pool_size=2)
    bench = _pgbench(pooler, pg, seconds=6)
    try:
        with console(pooler, pg) as admin:
            time.sleep(1)
            t0 = time.monotonic()
            admin.execute("PAUSE")  # returns once every server is released
            r = pool_row(admin)
            assert r["sv_active"] == 0
            assert rows(admin, "SHOW STATE")[1]["value"] == "yes"
            time.sleep(0.5)
            assert pool_row(admin)["cl_waiting"] > 0  # new transactions wait meanwhile
            admin.execute("RESUME")
            assert time.monotonic() - t0 < 5
            time.sleep(1)
            admin.execute("RELOAD")
            admin.execute("RECONNECT")
    finally:
        out, _ = bench.communicate(timeout=60)
    assert bench.returncode == 0, out
    assert "number of failed transactions: 0" in out, out
    processed = int(out.split("number of transactions actually processed:")[1].split()[0])
    assert processed > 0


@pytest.mark.usher_only
def test_kill_client_disconnects_exactly_that_client(pg, usher):
    pooler = usher()
    victim = psycopg.connect(pooler.conninfo() + " application_name=victim", autocommit=True)
    bystander = psycopg.connect(pooler.conninfo() + " application_name=bystander",
                                autocommit=True)
    with victim, bystander, console(pooler, pg) as admin:
        victim.execute("SELECT 1")
        bystander.execute("SELECT 1")
        ids = {r["application_name"]: r["id"] for r in rows(admin, "SHOW CLIENTS")}
        admin.execute(f"KILL_CLIENT {ids['victim']}")
        with pytest.raises(psycopg.OperationalError):
            victim.execute("SELECT 2")
        assert bystander.execute("SELECT 3").fetchone() == (3,)
        with pytest.raises(psycopg.Error, match="client not found"):
            admin.execute(f"KILL_CLIENT {ids['victim']}")


@pytest.mark.usher_only
def test_disable_enable_and_set(pg, usher):
    pooler = usher()
    with console(pooler, pg) as admin:
        admin.execute("DISABLE trading_db")
        with pytest.raises(psycopg.OperationalError,
                           match="database does not allow connections: trading_db"):
            pooler.connect().close()
        admin.execute("ENABLE trading_db")
        with pooler.connect() as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        cur = admin.execute("SET query_wait_timeout = 7")
        assert cur.statusmessage == "SET query_wait_timeout=7"
        cfg = {r["key"]: r["value"] for r in rows(admin, "SHOW CONFIG")}
        assert cfg["query_wait_timeout"] == "7"
        with pytest.raises(psycopg.Error, match="SET failed"):
            admin.execute("SET listen_port = 1")


@pytest.mark.usher_only
def test_console_reachable_when_max_client_conn_is_reached(pg, usher):
    pooler = usher(max_client_conn=1)
    with harness.connect_when_slot_free(pooler):
        with pytest.raises(psycopg.OperationalError, match="max_client_conn"):
            pooler.connect().close()
        with console(pooler, pg) as admin:
            assert pool_row(admin)["cl_active"] == 1


@pytest.mark.usher_only
def test_process_owner_logs_in_as_pgbouncer_over_the_unix_socket(pg, usher, tmp_path):
    sockdir = tmp_path / "sock"
    sockdir.mkdir()
    pooler = usher(unix_socket_dir=str(sockdir))
    # No password: peer credentials of the same OS user as usher (we started it).
    res = subprocess.run(["psql", "-h", str(sockdir), "-p", str(pooler.port), "-U", "pgbouncer",
                          "-d", "pgbouncer", "-w", "-At", "-c", "SHOW STATE"],
                         env=harness.clean_env(), capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[0] == "active|yes"
    # The same user name over TCP is not trusted.
    res = subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(pooler.port), "-U", "pgbouncer",
                          "-d", "pgbouncer", "-w", "-c", "SHOW STATE"],
                         env=harness.clean_env(), capture_output=True, text=True, timeout=30)
    assert res.returncode != 0


@pytest.mark.usher_only
def test_extended_protocol_on_the_console_is_refused(pg, usher):
    pooler = usher()
    with psycopg.connect(pooler.conninfo("platform_admin", "pgbouncer",
                                         pg.passwords["platform_admin"]),
                         autocommit=True) as admin:
        with pytest.raises(psycopg.Error,
                           match="extended query protocol not supported by admin console"):
            admin.execute("SHOW POOLS", prepare=True)
