"""pgbench through the pooler: 50 clients on a pool of 2 servers, transaction mode."""

import re

import pytest

import harness

USER, DB = "trading_app_user", "trading_db"


@pytest.fixture(scope="module")
def pgbench_tables(pg):
    res = harness.pgbench(pg.port, USER, DB, pg.passwords[USER], "-i", "-s", "1", "-q")
    assert res.returncode == 0, res.stderr
    return pg


def history_rows(pg) -> int:
    with pg.connect(USER, DB) as conn:
        return conn.execute("SELECT count(*) FROM pgbench_history").fetchone()[0]


@pytest.mark.timeout(90)
@pytest.mark.parametrize("protocol", ["simple", "extended"])
def test_pgbench_through_pool_of_two(pgbench_tables, usher, protocol):
    pg = pgbench_tables
    pooler = usher(pool_mode="transaction", pool_size=2)
    before = history_rows(pg)
    with harness.ServerConnectionWatch(pg, USER, DB) as watch:
        res = harness.pgbench(pooler.port, USER, DB, pg.passwords[USER],
                              "-M", protocol, "-c", "50", "-j", "4", "-T", "5", "-n")
    output = res.stdout + res.stderr
    assert res.returncode == 0, output
    assert "ERROR" not in output and "aborted" not in output, output
    processed = int(re.search(r"number of transactions actually processed: (\d+)", output).group(1))
    assert processed > 0, output
    failed = re.search(r"number of failed transactions: (\d+)", output)
    assert failed is None or int(failed.group(1)) == 0, output
    # tpcb-like inserts one history row per transaction: every reported commit really happened.
    assert history_rows(pg) - before == processed
    assert watch.error is None, watch.error
    assert 1 <= watch.peak <= 2, f"saw {watch.peak} server connections for a pool of 2"
