"""Shutdown signals (PgBouncer semantics): SIGINT once servers are released, SIGTERM once
clients have left."""

import signal
import subprocess

import psycopg
import pytest

import harness

USER, DB = "trading_app_user", "trading_db"


def test_sigint_with_idle_pool_exits_promptly(pg, usher):
    pooler = usher()
    with pooler.connect() as client:
        assert client.execute("SELECT 1").fetchone() == (1,)  # a server is now idle in the pool
        assert pg.backends(USER, DB), "expected an idle server connection"
        status = pooler.signal_and_wait(signal.SIGINT, timeout=5)
        assert status is not None, "still running 5 s after SIGINT with no server in use"
        assert status >= 0, f"died of signal {-status} instead of shutting down"
        with pytest.raises(psycopg.OperationalError):
            client.execute("SELECT 2")
    harness.wait_until(lambda: not pg.backends(USER, DB), 5, "server connections to close")


@pytest.mark.usher_only  # PgBouncer 1.18's SIGTERM is an immediate shutdown
def test_sigterm_waits_for_clients_to_leave(pg, usher):
    pooler = usher()
    proc = pooler.proc
    with pooler.connect() as client:
        assert client.execute("SELECT 1").fetchone() == (1,)
        proc.send_signal(signal.SIGTERM)
        # The connected client is still served...
        assert client.execute("SELECT 'still served'").fetchone() == ("still served",)
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=1)
    # ...and once it has gone, usher exits.
    try:
        status = proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pytest.fail("still running 5 s after SIGTERM and the last client leaving")
    pooler.proc = None
    assert status >= 0, f"died of signal {-status} instead of shutting down"
    harness.wait_until(lambda: not pg.backends(USER, DB), 5, "server connections to close")


@pytest.mark.usher_only
def test_sigusr1_pauses_and_sigusr2_resumes(pg, usher):
    import threading
    import time
    pooler = usher(query_wait_timeout=30)
    with pooler.connect() as client:
        assert client.execute("SELECT 1").fetchone() == (1,)
        pooler.proc.send_signal(signal.SIGUSR1)
        time.sleep(0.3)
        done = threading.Event()
        t = threading.Thread(target=lambda: (client.execute("SELECT 2"), done.set()))
        t.start()
        assert not done.wait(1), "a new transaction ran while paused"
        pooler.proc.send_signal(signal.SIGUSR2)
        assert done.wait(5), "not resumed by SIGUSR2"
        t.join()
