"""The Prometheus endpoint (metrics_listen): scraped with curl, parsed, and checked against
SHOW STATS and a known pool state."""

import re
import subprocess

import psycopg
import pytest

import harness

pytestmark = pytest.mark.usher_only
USER, DB = "trading_app_user", "trading_db"
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')


def scrape(port):
    curl = harness.require_tool("curl", "curl")
    res = subprocess.run([curl, "-sS", "-f", f"http://127.0.0.1:{port}/metrics"],
                         capture_output=True, text=True, timeout=10)
    assert res.returncode == 0, res.stderr
    samples, types = {}, {}
    for line in res.stdout.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            types[name] = kind
            continue
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, f"not Prometheus text format: {line!r}"
        labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        samples[(m.group(1), tuple(sorted(labels.items())))] = float(m.group(4))
    return samples, types


def value(samples, name, **labels):
    return samples[(name, tuple(sorted(labels.items())))]


def test_metrics_parse_and_match_show_stats(pg, usher):
    port = harness.free_port()
    pooler = usher(pool_size=2, metrics_listen=f"127.0.0.1:{port}")
    with pooler.connect() as client:
        for _ in range(7):
            client.execute("SELECT 1")
        with client.transaction():
            client.execute("SELECT 2")
        samples, types = scrape(port)
        with psycopg.connect(pooler.conninfo("platform_admin", "pgbouncer",
                                             pg.passwords["platform_admin"]),
                             autocommit=True, prepare_threshold=None) as admin:
            cur = admin.execute("SHOW STATS")
            names = [d.name for d in cur.description]
            stats = next(dict(zip(names, r)) for r in cur.fetchall() if r[0] == DB)
            cur = admin.execute("SHOW POOLS")
            names = [d.name for d in cur.description]
            pools = next(dict(zip(names, r)) for r in cur.fetchall() if r[0] == DB)

    assert types["usher_database_transactions_total"] == "counter"
    assert types["usher_transaction_duration_seconds"] == "histogram"
    assert value(samples, "usher_database_transactions_total", database=DB) == \
        stats["total_xact_count"] == 8
    assert value(samples, "usher_database_queries_total", database=DB) == \
        stats["total_query_count"]
    assert value(samples, "usher_database_received_bytes_total", database=DB) == \
        stats["total_received"]
    assert value(samples, "usher_pool_servers", database=DB, user=USER, state="idle") == \
        pools["sv_idle"]
    assert value(samples, "usher_pool_clients", database=DB, user=USER, state="active") == 1
    # The histogram is cumulative and its count equals the transaction count.
    buckets = sorted((float(dict(k[1])["le"]), v) for k, v in samples.items()
                     if k[0] == "usher_transaction_duration_seconds_bucket"
                     and dict(k[1]).get("le") != "+Inf")
    counts = [v for _, v in buckets]
    assert counts == sorted(counts)
    assert value(samples, "usher_transaction_duration_seconds_count", database=DB) == 8
    assert value(samples, "usher_transaction_duration_seconds_bucket", database=DB,
                 le="+Inf") == 8
    assert value(samples, "process_resident_memory_bytes") > 1_000_000
    assert value(samples, "usher_up") == 1


def test_metrics_endpoint_answers_only_metrics(pg, usher):
    port = harness.free_port()
    usher(metrics_listen=f"127.0.0.1:{port}")
    res = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                          f"http://127.0.0.1:{port}/other"], capture_output=True, text=True)
    assert res.stdout == "404"
    res = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST",
                          f"http://127.0.0.1:{port}/metrics"], capture_output=True, text=True)
    assert res.stdout == "405"


def test_prepared_statement_counters_are_real(pg, usher):
    """SHOW STATS parse/bind counters, SHOW CLIENTS/SERVERS prepared_statements and the metrics
    count what the clients and usher really did (transaction mode, statements mapped)."""
    port = harness.free_port()
    pooler = usher(pool_mode="transaction", pool_size=1, metrics_listen=f"127.0.0.1:{port}")
    pw = pg.passwords["platform_admin"]

    def console(command):
        res = harness.psql(pooler.port, "platform_admin", "pgbouncer", pw, "-A", "-F", "|",
                           "-P", "footer=off", "-c", command)
        assert res.returncode == 0, res.stderr
        header, *rows = res.stdout.splitlines()
        return [dict(zip(header.split("|"), r.split("|"))) for r in rows]

    with psycopg.connect(pooler.conninfo(USER, DB), autocommit=True, prepare_threshold=0) as a, \
            psycopg.connect(pooler.conninfo(USER, DB), autocommit=True, prepare_threshold=0) as b:
        for i in range(5):
            assert a.execute("SELECT %s::int + 1", (i,)).fetchone() == (i + 1,)
            assert a.execute("SELECT %s::int + 2", (i,)).fetchone() == (i + 2,)
            assert b.execute("SELECT %s::int + 1", (i,)).fetchone() == (i + 1,)
        clients = {int(r["id"]): int(r["prepared_statements"]) for r in console("SHOW CLIENTS")
                   if r["database"] == DB}
        assert sorted(clients.values()) == [1, 2], clients
        servers = [r for r in console("SHOW SERVERS") if r["database"] == DB]
        assert [int(r["prepared_statements"]) for r in servers] == [2], servers
        stats = {r["database"]: r for r in console("SHOW STATS")}[DB]
        # Each client parses each statement once; usher prepares the two statements once on the
        # single server; every execution is one Bind.
        assert int(stats["total_client_parse_count"]) == 3, stats
        assert int(stats["total_server_parse_count"]) == 2, stats
        assert int(stats["total_bind_count"]) == 15, stats
        samples, _ = scrape(port)
        assert value(samples, "usher_database_client_parses_total", database=DB) == 3
        assert value(samples, "usher_database_server_parses_total", database=DB) == 2
        assert value(samples, "usher_database_binds_total", database=DB) == 15
