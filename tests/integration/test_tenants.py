"""Tenant isolation and login errors as the client sees them through the pooler."""

import psycopg
import pytest

from pgwire import RawConnection, ServerError


def raw_login_error(pooler, user, dbname, password) -> ServerError:
    with RawConnection(pooler.host, pooler.port) as raw:
        with pytest.raises(ServerError) as err:
            raw.login(user, dbname, password)
        # After a FATAL login error the pooler closes the connection.
        assert raw.read_until_closed(timeout=5) == []
    return err.value


def test_each_tenant_reaches_its_own_database(pg, usher):
    pooler = usher()
    for user, db in [("trading_app_user", "trading_db"), ("librarian_user", "librarian_db")]:
        with pooler.connect(user, db) as conn:
            assert conn.execute("SELECT current_user, current_database()").fetchone() == (user, db)


def test_tenant_cannot_reach_another_tenants_database(pg, usher, is_usher):
    pooler = usher()
    with pytest.raises(psycopg.OperationalError,
                       match='permission denied for database "trading_db"'):
        pooler.connect("librarian_user", "trading_db").close()
    with pytest.raises(psycopg.OperationalError,
                       match='permission denied for database "librarian_db"'):
        pooler.connect("trading_app_user", "librarian_db").close()
    if is_usher:  # PgBouncer rewrites the SQLSTATE of server login errors
        err = raw_login_error(pooler, "librarian_user", "trading_db", pg.passwords["librarian_user"])
        assert err.sqlstate == "42501"
        assert 'permission denied for database "trading_db"' in err.message
    # The failure did not poison anything: both tenants still work.
    with pooler.connect("librarian_user", "librarian_db") as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    with pooler.connect("trading_app_user", "trading_db") as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_wrong_password(pg, usher, is_usher):
    pooler = usher()
    # PgBouncer says "SASL authentication failed"; usher says what PostgreSQL says.
    generic = "password authentication failed" if is_usher else "authentication failed"
    with pytest.raises(psycopg.OperationalError, match=generic) as err:
        pooler.connect("trading_app_user", "trading_db", password="not-the-password").close()
    if is_usher:
        assert 'password authentication failed for user "trading_app_user"' in str(err.value)
        raw = raw_login_error(pooler, "trading_app_user", "trading_db", "not-the-password")
        assert raw.sqlstate == "28P01"
        assert raw.message == 'password authentication failed for user "trading_app_user"'
        assert raw.fields.get("S") == "FATAL"
    # Another user's (valid) password is no good either.
    with pytest.raises(psycopg.OperationalError, match=generic):
        pooler.connect("trading_app_user", "trading_db", password=pg.passwords["librarian_user"]).close()
    with pooler.connect() as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_unknown_database(pg, usher):
    pooler = usher()
    with pytest.raises(psycopg.OperationalError, match="no such database: nosuchdb"):
        pooler.connect("trading_app_user", "nosuchdb").close()
    err = raw_login_error(pooler, "trading_app_user", "nosuchdb", pg.passwords["trading_app_user"])
    assert err.sqlstate == "08P01"
    assert err.message == "no such database: nosuchdb"
