"""A pgbouncer.ini + userlist.txt configuration works unchanged."""

import threading

import psycopg
import pytest

import harness

USER, DB = "trading_app_user", "trading_db"


def test_ini_with_plaintext_userlist(pg, usher):
    pooler = usher(config_format="ini")
    res = harness.psql(pooler.port, USER, DB, pg.passwords[USER], "-At", "-c",
                       "SELECT current_user, current_database()")
    assert (res.returncode, res.stdout) == (0, "trading_app_user|trading_db\n"), res.stderr


def test_ini_with_scram_verifier_from_pg_authid(pg, usher, is_usher):
    """The userlist holds only the verifier: the pooler logs in to PostgreSQL with the keys of
    the client's own SCRAM exchange."""
    verifier = pg.scram_verifier(USER)
    userlist = {USER: verifier, "librarian_user": pg.scram_verifier("librarian_user")}
    pooler = usher(config_format="ini", pool_size=2, userlist=userlist)
    assert verifier in pooler.config_path.with_name("userlist.txt").read_text()

    res = harness.psql(pooler.port, USER, DB, pg.passwords[USER], "-At", "-c",
                       "SELECT current_user, current_database(), 6 * 7")
    assert (res.returncode, res.stdout) == (0, "trading_app_user|trading_db|42\n"), res.stderr

    # Two clients in open transactions need two server connections: both logins must work.
    barrier = threading.Barrier(2)
    seen: list[object] = []

    def client():
        try:
            with pooler.connect() as conn, conn.transaction():
                pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
                barrier.wait(timeout=20)  # both hold a server at the same time
                seen.append(pid)
        except BaseException as exc:  # noqa: BLE001
            seen.append(exc)

    threads = [threading.Thread(target=client) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert all(isinstance(s, int) for s in seen) and len(set(seen)) == 2, seen

    with pytest.raises(psycopg.OperationalError, match="password authentication failed" if is_usher
                       else "authentication failed"):
        pooler.connect(password="wrong").close()
