"""Startup-phase edges: protocol 3.2 negotiation, GSSENCRequest, a SASL message whose inner length
lies, ignore_startup_parameters, and PgBouncer's daemon mode."""

import os
import signal
import struct
import subprocess
import time

import psycopg
import pytest

import harness
from pgwire import RawConnection, message, parse_error_fields

pytestmark = pytest.mark.usher_only
USER, DB = "trading_app_user", "trading_db"


def startup(version: int, params: dict[str, str]) -> bytes:
    body = struct.pack("!I", version)
    for k, v in params.items():
        body += k.encode() + b"\0" + v.encode() + b"\0"
    body += b"\0"
    return struct.pack("!I", len(body) + 4) + body


def test_protocol_3_2_is_negotiated_down_to_3_0(pg, usher):
    pooler = usher()
    with RawConnection(pooler.host, pooler.port) as raw:
        raw.send(startup((3 << 16) | 2, {"user": USER, "database": DB,
                                         "_pq_.test_option": "1"}))
        tag, payload = raw.read_message(timeout=5)
        assert tag == b"v", (tag, payload)
        newest_minor, count = struct.unpack("!II", payload[:8])
        assert (newest_minor, count) == (0, 1)
        assert payload[8:].rstrip(b"\0") == b"_pq_.test_option"
        tag, payload = raw.read_message(timeout=5)
        assert tag == b"R"  # authentication goes on, in 3.0


def test_unknown_protocol_version_is_refused_at_once(pg, usher):
    pooler = usher()
    with RawConnection(pooler.host, pooler.port) as raw:
        raw.send(startup(2 << 16, {"user": USER, "database": DB}))
        tag, payload = raw.read_message(timeout=2)
        assert tag == b"E"
        fields = parse_error_fields(payload)
        assert fields["C"] == "0A000"
        assert "unsupported frontend protocol 2.0" in fields["M"]


def test_gssenc_then_ssl_requests_are_declined_and_login_continues(pg, usher):
    pooler = usher()
    with RawConnection(pooler.host, pooler.port) as raw:
        for code in (80877104, 80877103):  # GSSENCRequest, then SSLRequest, as libpq may do
            raw.send(struct.pack("!II", 8, code))
            assert raw.sock.recv(1) == b"N"
        raw.login(USER, DB, pg.passwords[USER])
        assert raw.simple_query("SELECT 1")[-1][0] == b"Z"


def test_sasl_message_with_a_lying_inner_length_is_answered_at_once(pg, usher):
    pooler = usher()
    with RawConnection(pooler.host, pooler.port) as raw:
        raw.send(startup(3 << 16, {"user": USER, "database": DB}))
        tag, payload = raw.read_message(timeout=5)
        assert tag == b"R" and struct.unpack("!I", payload[:4])[0] == 10  # SASL
        first = b"n,,n=,r=abcdefghijklmnop"
        # Claims 1000 bytes of client-first-message, carries 24.
        raw.send(message(b"p", b"SCRAM-SHA-256\0" + struct.pack("!I", 1000) + first))
        t0 = time.monotonic()
        tag, payload = raw.read_message(timeout=2)
        assert tag == b"E"
        assert parse_error_fields(payload)["C"] == "08P01"
        assert time.monotonic() - t0 < 1
        assert raw.read_until_closed(timeout=2) == []


def test_ignore_startup_parameters(pg, usher):
    pooler = usher(ignore_startup_parameters=["extra_float_digits"])
    with psycopg.connect(pooler.conninfo() + " options='-c extra_float_digits=3'",
                         autocommit=True, prepare_threshold=None) as ignored:
        assert ignored.execute("SHOW extra_float_digits").fetchone() == ("1",)
    plain = usher()
    with psycopg.connect(plain.conninfo() + " options='-c extra_float_digits=3'",
                         autocommit=True, prepare_threshold=None) as honoured:
        assert honoured.execute("SHOW extra_float_digits").fetchone() == ("3",)


def test_daemon_mode_writes_and_removes_its_pidfile(pg, usher, tmp_path):
    pooler = usher()
    pooler.stop()
    pidfile = tmp_path / "usher.pid"
    text = pooler.config_path.read_text().replace(
        "[usher]\n", f'[usher]\npidfile = "{pidfile}"\nlogfile = "{tmp_path / "usher.log"}"\n', 1)
    pooler.config_path.write_text(text)
    res = subprocess.run([str(harness.usher_binary()), "-d", str(pooler.config_path)],
                         capture_output=True, text=True, timeout=10)
    assert res.returncode == 0, res.stderr
    harness.wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), 5, "pidfile")
    pid = int(pidfile.read_text())
    try:
        harness.wait_until(lambda: harness.port_accepts("127.0.0.1", pooler.port), 5, "listening")
        with pooler.connect() as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        os.kill(pid, signal.SIGINT)
    harness.wait_until(lambda: not pidfile.exists(), 5, "pidfile removed at exit")
    assert "usher stopped" in (tmp_path / "usher.log").read_text()
