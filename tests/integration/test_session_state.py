"""Session state in transaction pooling: what follows a client, and what usher refuses to leak.

Tracked parameters (ParameterStatus) follow each client across shared servers. State transaction
pooling cannot carry -- LISTEN, a session-level SET of an untracked parameter -- must never reach
another client: usher closes that server at release instead of reusing it (SHOW SERVERS shows
close_needed = 1 while the client holds it).
"""

import psycopg

import harness

USER, DB = "trading_app_user", "trading_db"


def backend(conn) -> int:
    return conn.execute("SELECT pg_backend_pid()").fetchone()[0]


def test_untracked_session_set_never_reaches_another_client(pg, usher):
    pooler = usher(pool_mode="transaction", pool_size=1)
    with pooler.connect(USER, DB, autocommit=True) as a, pooler.connect(USER, DB, autocommit=True) as b:
        default = b.execute("SHOW statement_timeout").fetchone()[0]
        first = backend(a)
        a.execute("SET statement_timeout = '4321ms'")
        # b gets a fresh server, with PostgreSQL's default, never a's setting.
        assert b.execute("SHOW statement_timeout").fetchone()[0] == default
        assert backend(b) != first
        assert "left session state" in pooler.log()


def test_set_local_and_tracked_parameters_keep_the_server(pg, usher):
    pooler = usher(pool_mode="transaction", pool_size=1)
    with pooler.connect(USER, DB, autocommit=True) as a, pooler.connect(USER, DB, autocommit=True) as b:
        first = backend(a)
        with a.transaction():
            a.execute("SET LOCAL statement_timeout = '4321ms'")
        a.execute("SET DateStyle = 'German'")  # reported by ParameterStatus: follows a
        assert backend(b) == first
        assert b.execute("SHOW DateStyle").fetchone()[0] != "German, DMY"
        assert a.execute("SHOW DateStyle").fetchone()[0] == "German, DMY"
        assert "left session state" not in pooler.log()


def test_listen_is_not_handed_to_another_client(pg, usher):
    pooler = usher(pool_mode="transaction", pool_size=1)
    with pooler.connect(USER, DB, autocommit=True) as a, pooler.connect(USER, DB, autocommit=True) as b:
        a.execute("LISTEN tenant_events")
        channels = b.execute("SELECT count(*) FROM pg_listening_channels()").fetchone()[0]
        assert channels == 0


def test_show_servers_marks_a_server_holding_session_state(pg, usher):
    pooler = usher(pool_mode="transaction", pool_size=1)
    admin_pw = pg.passwords.get("platform_admin")
    with pooler.connect(USER, DB, autocommit=False) as a:  # the transaction keeps the server
        a.execute("LISTEN tenant_events")
        res = harness.psql(pooler.port, "platform_admin", "pgbouncer", admin_pw, "-A", "-F", "|",
                           "-P", "footer=off", "-c", "SHOW SERVERS")
        assert res.returncode == 0, res.stderr
        header, *rows = res.stdout.splitlines()
        servers = [dict(zip(header.split("|"), r.split("|"))) for r in rows]
        assert len(servers) == 1, res.stdout
        assert servers[0]["close_needed"] == "1", servers
        a.rollback()


def test_notification_in_the_middle_of_a_reply_reaches_its_client(pg, usher):
    """Asynchronous messages pass through the statement relay wherever they fall: a backend's
    own NOTIFY is delivered at COMMIT, between CommandComplete and ReadyForQuery."""
    pooler = usher(pool_mode="transaction", pool_size=1)
    with pooler.connect(USER, DB, autocommit=False, prepare_threshold=0) as a:
        got = []
        a.add_notify_handler(lambda n: got.append((n.channel, n.payload)))
        a.execute("LISTEN tenant_events")
        a.execute("SELECT pg_notify('tenant_events', %s)", ("hello",))
        a.commit()
        assert got == [("tenant_events", "hello")]
        # The relay's bookkeeping stayed in step: prepared statements still work.
        with a.transaction():
            assert a.execute("SELECT %s::int + 1", (41,)).fetchone() == (42,)
