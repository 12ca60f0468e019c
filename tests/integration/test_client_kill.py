"""A client killed in the middle of a transaction leaves no backend and no lock behind."""

import os
import select
import signal
import subprocess

import pytest

import harness

USER, DB = "trading_app_user", "trading_db"

CHILD = r"""
import os, sys, time
import psycopg
conn = psycopg.connect(os.environ["CONNINFO"], autocommit=True, prepare_threshold=None)
conn.execute("BEGIN")
conn.execute("SELECT * FROM kill_lock WHERE id = 1 FOR UPDATE")
conn.execute("LOCK TABLE kill_lock IN ACCESS EXCLUSIVE MODE")
pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
print("locked", pid, flush=True)
time.sleep(120)
"""


@pytest.fixture
def kill_lock(pg):
    with pg.connect(USER, DB) as conn:
        conn.execute("DROP TABLE IF EXISTS kill_lock")
        conn.execute("CREATE TABLE kill_lock (id int PRIMARY KEY, v text)")
        conn.execute("INSERT INTO kill_lock VALUES (1, 'one'), (2, 'two')")
    yield
    with pg.connect(USER, DB) as conn:
        conn.execute("DROP TABLE IF EXISTS kill_lock")


def read_line(proc: subprocess.Popen, timeout: float) -> str:
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        raise TimeoutError(f"child printed nothing within {timeout}s")
    return proc.stdout.readline()


def lock_state(pg):
    """(locks on kill_lock, idle-in-transaction backends of the tenant) seen from the server."""
    with pg.admin(DB) as conn:
        locks = conn.execute("SELECT pid, mode FROM pg_locks WHERE relation = 'kill_lock'::regclass"
                             " AND pid <> pg_backend_pid()").fetchall()
        idle_tx = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE usename = %s AND datname = %s"
            " AND state LIKE 'idle in transaction%%'", (USER, DB)).fetchall()
    return locks, idle_tx


@pytest.mark.parametrize("pool_mode", ["transaction", "session"])
def test_killed_client_releases_locks(pg, usher, kill_lock, pool_mode):
    pooler = usher(pool_mode=pool_mode, pool_size=2)
    env = harness.clean_env(CONNINFO=pooler.conninfo())
    child = subprocess.Popen(["/usr/bin/python3", "-c", CHILD], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = read_line(child, 20)
        assert line.startswith("locked "), (line, child.stderr.read() if child.poll() is not None else "")
        backend = int(line.split()[1])

        # The lock really is held, by an idle-in-transaction backend reached through the pooler.
        locks, idle_tx = lock_state(pg)
        assert (backend, "AccessExclusiveLock") in locks
        assert (backend,) in idle_tx

        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stdout.close()
        child.stderr.close()

    harness.wait_until(lambda: lock_state(pg) == ([], []), 5,
                       "locks and idle-in-transaction backends to disappear after the client died")

    # A new client through the pooler takes the same locks at once.
    with pooler.connect() as conn:
        with conn.transaction():
            conn.execute("LOCK TABLE kill_lock IN ACCESS EXCLUSIVE MODE NOWAIT")
            assert conn.execute("SELECT v FROM kill_lock WHERE id = 1 FOR UPDATE NOWAIT").fetchone() == ("one",)
            conn.execute("UPDATE kill_lock SET v = 'uno' WHERE id = 1")
    with pg.connect(USER, DB) as conn:
        assert conn.execute("SELECT v FROM kill_lock ORDER BY id").fetchall() == [("uno",), ("two",)]
    assert os.WIFSIGNALED(child.returncode) or child.returncode == -signal.SIGKILL
