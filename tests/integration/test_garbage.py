"""Malformed input closes only the offending connection, promptly; everyone else carries on."""

import socket
import struct
import time

import pytest

import harness
from pgwire import RawConnection, message, parse_error_fields, startup_packet

PROMPT = 2.0  # seconds a pooler may take to answer garbage


def rejected(pooler, payload: bytes, login=None) -> list[tuple[bytes, bytes]]:
    """Send payload (after an optional login); return the messages received until the pooler
    closed the connection, which must happen within PROMPT seconds."""
    with RawConnection(pooler.host, pooler.port) as raw:
        if login:
            raw.login(*login)
        raw.send(payload)
        t0 = time.monotonic()
        try:
            msgs = raw.read_until_closed(timeout=PROMPT)
        except TimeoutError:
            pytest.fail(f"{pooler.kind} kept the connection open {PROMPT}s after {payload[:20]!r}")
        assert time.monotonic() - t0 < PROMPT
        for tag, _ in msgs:
            assert tag in (b"E", b"N"), f"unexpected reply {tag!r} to garbage: {msgs}"
        return msgs


def error_codes(msgs) -> list[str]:
    return [parse_error_fields(payload).get("C") for tag, payload in msgs if tag == b"E"]


@pytest.fixture
def pooled_bystander(usher):
    pooler = usher()
    conn = pooler.connect()
    assert conn.execute("SELECT 'before'").fetchone() == ("before",)
    yield pooler, conn
    # The bystander's connection and new connections still work.
    assert conn.execute("SELECT 'after'").fetchone() == ("after",)
    conn.close()
    with pooler.connect() as fresh:
        assert fresh.execute("SELECT 'fresh'").fetchone() == ("fresh",)


def test_http_request_instead_of_startup(pooled_bystander):
    pooler, _ = pooled_bystander
    rejected(pooler, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")


def test_startup_packet_with_impossible_length(pooled_bystander):
    pooler, _ = pooled_bystander
    rejected(pooler, struct.pack("!I", 3) + b"\0\0\0\0\0\0\0\0")


def test_startup_packet_with_unknown_protocol(pooled_bystander, is_usher):
    pooler, _ = pooled_bystander
    body = struct.pack("!I", (9 << 16) | 9) + b"user\0x\0\0"
    msgs = rejected(pooler, struct.pack("!I", len(body) + 4) + body)
    if is_usher:  # PostgreSQL answers 0A000 "unsupported frontend protocol"; 08P01 is fine too
        assert len(error_codes(msgs)) == 1 and error_codes(msgs)[0] in ("08P01", "0A000"), msgs


def test_message_with_length_three_after_login(pg, pooled_bystander, is_usher):
    pooler, _ = pooled_bystander
    login = ("trading_app_user", "trading_db", pg.passwords["trading_app_user"])
    msgs = rejected(pooler, b"Q" + struct.pack("!I", 3) + b"SELECT 1\0", login=login)
    if is_usher:
        assert error_codes(msgs) == ["08P01"]


def test_garbage_mid_transaction_does_not_leak_the_transaction(pg, pooled_bystander):
    pooler, _ = pooled_bystander
    login = ("trading_app_user", "trading_db", pg.passwords["trading_app_user"])
    with RawConnection(pooler.host, pooler.port) as raw:
        raw.login(*login)
        assert raw.simple_query("BEGIN")[-1] == (b"Z", b"T")
        raw.send(message(b"Q", b"SELECT 1\0")[:1] + struct.pack("!I", 2))
        raw.read_until_closed(timeout=PROMPT)
    with pg.admin() as conn:
        harness.wait_until(lambda: not conn.execute(
            "SELECT 1 FROM pg_stat_activity WHERE datname = 'trading_db'"
            " AND state LIKE 'idle in transaction%'").fetchall(), 5,
            "no idle-in-transaction backend after the client was dropped")


@pytest.mark.usher_only  # PgBouncer 1.18 answers "client sent partial pkt in startup phase"
def test_startup_packet_sent_byte_by_byte(pg, usher):
    """Not garbage, but a slow client: a startup packet split into single bytes still logs in,
    as it does with PostgreSQL."""
    pooler = usher()
    packet = startup_packet({"user": "trading_app_user", "database": "trading_db"})
    with RawConnection(pooler.host, pooler.port) as raw:
        raw.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(len(packet)):
            raw.send(packet[i:i + 1])
        tag, payload = raw.read_message()
        assert tag == b"R", (tag, payload)
