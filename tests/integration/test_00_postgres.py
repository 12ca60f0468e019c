"""Sanity checks of the harness itself: direct connections to the throwaway PostgreSQL."""

import psycopg
import pytest

import harness


def test_tenants_exist_and_log_in_with_scram(pg):
    for role, db in harness.TENANTS.items():
        with pg.connect(role, db or "postgres") as conn:
            row = conn.execute("SELECT current_user, current_database()").fetchone()
            assert row == (role, db or "postgres")
    with pg.admin() as conn:
        rows = dict(conn.execute(
            "SELECT rolname, rolpassword LIKE 'SCRAM-SHA-256$%%' FROM pg_authid"
            " WHERE rolname = ANY(%s)", (list(harness.TENANTS),)).fetchall())
        assert rows == {role: True for role in harness.TENANTS}
        owners = dict(conn.execute(
            "SELECT datname, pg_get_userbyid(datdba) FROM pg_database"
            " WHERE datname IN ('trading_db', 'librarian_db')").fetchall())
        assert owners == {"trading_db": "trading_app_user", "librarian_db": "librarian_user"}
        assert conn.execute("SHOW password_encryption").fetchone() == ("scram-sha-256",)
        assert int(conn.execute("SHOW max_connections").fetchone()[0]) >= 100


def test_connect_revoked_from_public(pg):
    with pytest.raises(psycopg.OperationalError, match='permission denied for database "trading_db"'):
        pg.connect("librarian_user", "trading_db").close()
    with pytest.raises(psycopg.OperationalError, match='permission denied for database "librarian_db"'):
        pg.connect("trading_app_user", "librarian_db").close()


def test_wrong_password_rejected_directly(pg):
    with pytest.raises(psycopg.OperationalError,
                       match='password authentication failed for user "trading_app_user"'):
        psycopg.connect(pg.conninfo("trading_app_user", "trading_db", password="wrong")).close()


def test_raw_wire_client_against_postgres(pg):
    """The raw client used by the garbage and auth tests speaks SCRAM correctly."""
    from pgwire import RawConnection, ServerError
    with RawConnection(pg.host, pg.port) as raw:
        raw.login("trading_app_user", "trading_db", pg.passwords["trading_app_user"])
        msgs = raw.simple_query("SELECT 41 + 1")
        assert [m[0] for m in msgs] == [b"T", b"D", b"C", b"Z"]
        assert msgs[1][1].endswith(b"42")
    with RawConnection(pg.host, pg.port) as raw:
        with pytest.raises(ServerError) as err:
            raw.login("trading_app_user", "trading_db", "wrong")
        assert err.value.sqlstate == "28P01"
        assert err.value.message == 'password authentication failed for user "trading_app_user"'
