"""psql through the pooler behaves exactly as psql against PostgreSQL directly."""

import hashlib

import pytest

import harness

USER, DB = "trading_app_user", "trading_db"


@pytest.fixture
def both(pg, usher):
    """psql against the pooler and against PostgreSQL directly: run(target, *args, input=)."""
    pooler = usher()
    ports = {"pooler": pooler.port, "direct": pg.port}

    def run(where, *args, input=None, timeout=120):
        return harness.psql(ports[where], USER, DB, pg.passwords[USER], *args, input=input,
                            timeout=timeout)
    return run


def test_simple_queries(both):
    res = both("pooler", "-At", "-c", "SELECT current_user, current_database(), 40 + 2")
    assert res.returncode == 0, res.stderr
    assert res.stdout == "trading_app_user|trading_db|42\n"
    res = both("pooler", "-At", "-c", "SELECT 1; SELECT 2; SELECT 'three'")
    assert (res.returncode, res.stdout, res.stderr) == (0, "1\n2\nthree\n", "")
    # Several statements, one connection, a temp table: all in one session of psql.
    res = both("pooler", "-At", "-v", "ON_ERROR_STOP=1",
               input="CREATE TEMP TABLE t(x int);\nINSERT INTO t SELECT generate_series(1, 10);\n"
                     "SELECT sum(x) FROM t;\n")
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[-1] == "55"


def test_error_in_the_middle_of_a_multi_statement_query(both):
    query = "SELECT 1; SELECT 1/0; SELECT 3;"
    direct = both("direct", "-At", "-c", query)
    pooled = both("pooler", "-At", "-c", query)
    # First result printed, then the error; the third statement never runs.
    assert direct.stdout == "1\n"
    assert "ERROR:  division by zero" in direct.stderr
    assert (pooled.returncode, pooled.stdout, pooled.stderr) == \
           (direct.returncode, direct.stdout, direct.stderr)
    # The connection (and the server it was on) is healthy afterwards.
    res = both("pooler", "-At", "-c", "SELECT 'after'")
    assert (res.returncode, res.stdout) == (0, "after\n"), res.stderr


def test_notice_is_relayed(both):
    sql = "DO $$ BEGIN RAISE NOTICE 'hello'; END $$"
    direct = both("direct", "-At", "-c", sql)
    pooled = both("pooler", "-At", "-c", sql)
    assert "NOTICE:  hello" in direct.stderr
    assert (pooled.returncode, pooled.stdout, pooled.stderr) == \
           (direct.returncode, direct.stdout, direct.stderr)


def test_large_result_matches_direct(both):
    sql = "SELECT i, md5(i::text) FROM generate_series(1, 1000000) AS i"
    direct = both("direct", "-At", "-c", sql)
    pooled = both("pooler", "-At", "-c", sql)
    assert direct.returncode == 0 and pooled.returncode == 0, pooled.stderr
    assert pooled.stdout.count("\n") == 1_000_000
    assert hashlib.sha256(pooled.stdout.encode()).hexdigest() == \
           hashlib.sha256(direct.stdout.encode()).hexdigest()
    assert pooled.stdout.endswith("1000000|" + hashlib.md5(b"1000000").hexdigest() + "\n")


@pytest.fixture
def copy_tables(pg):
    with pg.connect(USER, DB) as conn:
        conn.execute("DROP TABLE IF EXISTS copy_src, copy_dst")
        conn.execute(
            "CREATE TABLE copy_src AS SELECT i AS id,"
            " CASE WHEN i % 10 = 0 THEN NULL ELSE md5(i::text) END AS txt,"
            " E'tab\\there, newline\\nthere, back\\\\slash ' || i AS tricky,"
            " i * 1.5 AS num FROM generate_series(1, 100000) AS i")
        conn.execute("CREATE TABLE copy_dst (LIKE copy_src)")
    yield
    with pg.connect(USER, DB) as conn:
        conn.execute("DROP TABLE IF EXISTS copy_src, copy_dst")


def table_digest(pg, table):
    with pg.connect(USER, DB) as conn:
        return conn.execute(
            f"SELECT count(*), md5(string_agg(t::text, '|' ORDER BY id)) FROM {table} AS t").fetchone()


def test_copy_out_and_in(both, pg, copy_tables):
    copy_out = r"\copy (SELECT * FROM copy_src ORDER BY id) TO STDOUT"
    direct = both("direct", "-c", copy_out)
    pooled = both("pooler", "-c", copy_out)
    assert direct.returncode == 0 and pooled.returncode == 0, pooled.stderr
    assert pooled.stdout.count("\n") == 100_000
    assert hashlib.sha256(pooled.stdout.encode()).digest() == hashlib.sha256(direct.stdout.encode()).digest()

    res = both("pooler", "-v", "ON_ERROR_STOP=1", "-c", r"\copy copy_dst FROM STDIN", input=pooled.stdout)
    assert res.returncode == 0, res.stderr
    assert res.stdout == "COPY 100000\n"
    assert table_digest(pg, "copy_dst") == table_digest(pg, "copy_src")


def test_failed_copy_in_leaves_connection_usable(both, pg, copy_tables):
    bad = "1\tok\tx\t1.5\nnot-a-number\tbad\tx\t2\n"
    res = both("pooler", "-c", r"\copy copy_dst FROM STDIN", input=bad)
    assert res.returncode != 0
    assert 'invalid input syntax for type integer: "not-a-number"' in res.stderr
    assert table_digest(pg, "copy_dst")[0] == 0
    # Every server in the pool (2) must be clean again: a few sessions run plain queries.
    for i in range(4):
        res = both("pooler", "-At", "-c", f"SELECT {i}, count(*) FROM copy_dst")
        assert (res.returncode, res.stdout) == (0, f"{i}|0\n"), res.stderr
