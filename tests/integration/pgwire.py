"""A minimal PostgreSQL v3 wire-protocol client over a raw socket.

Used where the tests need bytes the drivers will not send (garbage, bad lengths) or fields the
drivers do not expose on a failed login (the SQLSTATE of an authentication error).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import os
import socket
import struct
import time

PROTOCOL_3 = 196608


class ServerError(Exception):
    """An ErrorResponse: `fields` maps field codes ('S', 'C', 'M', ...) to values."""

    def __init__(self, fields: dict[str, str]):
        self.fields = fields
        super().__init__(f"{fields.get('S')} {fields.get('C')}: {fields.get('M')}")

    @property
    def sqlstate(self) -> str | None:
        return self.fields.get("C")

    @property
    def message(self) -> str | None:
        return self.fields.get("M")


def startup_packet(params: dict[str, str]) -> bytes:
    body = struct.pack("!I", PROTOCOL_3)
    for k, v in params.items():
        body += k.encode() + b"\0" + v.encode() + b"\0"
    body += b"\0"
    return struct.pack("!I", len(body) + 4) + body


def message(tag: bytes, payload: bytes = b"") -> bytes:
    return tag + struct.pack("!I", len(payload) + 4) + payload


def parse_error_fields(payload: bytes) -> dict[str, str]:
    fields: dict[str, str] = {}
    for part in payload.split(b"\0"):
        if part:
            fields[chr(part[0])] = part[1:].decode(errors="replace")
    return fields


class RawConnection:
    def __init__(self, host: str, port: int, timeout: float = 5.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.timeout = timeout
        self._buf = b""
        self.backend_key: tuple[int, int] | None = None

    def close(self) -> None:
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self, n: int, deadline: float) -> bool:
        """Read until the buffer holds n bytes; False on orderly EOF (or reset)."""
        while len(self._buf) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no complete message within {self.timeout}s")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                return False
            if not chunk:
                return False
            self._buf += chunk
        return True

    def read_message(self, timeout: float | None = None) -> tuple[bytes, bytes] | None:
        """Next (tag, payload), or None when the peer closed the connection."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        if not self._fill(5, deadline):
            return None
        tag = self._buf[:1]
        (length,) = struct.unpack("!I", self._buf[1:5])
        if length < 4:
            raise AssertionError(f"peer sent a message {tag!r} with invalid length {length}")
        if not self._fill(1 + length, deadline):
            return None
        payload = self._buf[5:1 + length]
        self._buf = self._buf[1 + length:]
        return tag, payload

    def read_until_closed(self, timeout: float) -> list[tuple[bytes, bytes]]:
        """All messages until EOF; TimeoutError if the peer keeps the connection open."""
        deadline = time.monotonic() + timeout
        out = []
        while True:
            msg = self.read_message(timeout=max(0.0, deadline - time.monotonic()))
            if msg is None:
                return out
            out.append(msg)

    # -- login -----------------------------------------------------------------------------

    def login(self, user: str, database: str, password: str, **params: str) -> list[tuple[bytes, bytes]]:
        """Startup + authentication (SCRAM-SHA-256, MD5, cleartext or trust) until ReadyForQuery.
        Raises ServerError on an ErrorResponse; returns the messages after AuthenticationOk."""
        self.send(startup_packet({"user": user, "database": database, **params}))
        scram: _Scram | None = None
        after_ok: list[tuple[bytes, bytes]] = []
        while True:
            msg = self.read_message()
            if msg is None:
                raise ConnectionError("server closed the connection during login")
            tag, payload = msg
            if tag == b"E":
                raise ServerError(parse_error_fields(payload))
            if tag == b"R":
                (code,) = struct.unpack("!I", payload[:4])
                if code == 0:
                    continue
                if code == 3:
                    self.send(message(b"p", password.encode() + b"\0"))
                elif code == 5:
                    salt = payload[4:8]
                    inner = hashlib.md5(password.encode() + user.encode()).hexdigest().encode()
                    self.send(message(b"p", b"md5" + hashlib.md5(inner + salt).hexdigest().encode() + b"\0"))
                elif code == 10:
                    mechanisms = payload[4:].split(b"\0")
                    assert b"SCRAM-SHA-256" in mechanisms, mechanisms
                    scram = _Scram(password)
                    first = scram.client_first()
                    self.send(message(b"p", b"SCRAM-SHA-256\0" + struct.pack("!I", len(first)) + first))
                elif code == 11:
                    assert scram is not None
                    self.send(message(b"p", scram.client_final(payload[4:])))
                elif code == 12:
                    assert scram is not None
                    scram.verify_server_final(payload[4:])
                else:
                    raise AssertionError(f"unsupported authentication request {code}")
                continue
            if tag == b"K":
                self.backend_key = struct.unpack("!II", payload[:8])
            after_ok.append(msg)
            if tag == b"Z":
                return after_ok

    def simple_query(self, sql: str) -> list[tuple[bytes, bytes]]:
        """Send Query, return every message up to and including ReadyForQuery."""
        self.send(message(b"Q", sql.encode() + b"\0"))
        out = []
        while True:
            msg = self.read_message()
            if msg is None:
                raise ConnectionError("connection closed during a query")
            out.append(msg)
            if msg[0] == b"Z":
                return out


@functools.lru_cache(maxsize=64)
def _salted_password(password: bytes, salt: bytes, iterations: int) -> bytes:
    """PBKDF2 is the client's expensive step; cached so a load of logins with one password
    (bench/load/idle_clients.py) measures the pooler, not the client."""
    return hashlib.pbkdf2_hmac("sha256", password, salt, iterations)


class _Scram:
    """Client side of SCRAM-SHA-256 (RFC 5802/7677) as PostgreSQL uses it (no channel binding)."""

    def __init__(self, password: str):
        self.password = password.encode()
        self.nonce = base64.b64encode(os.urandom(18)).decode()
        self.client_first_bare = f"n=,r={self.nonce}"
        self.expected_server_signature: bytes | None = None

    def client_first(self) -> bytes:
        return ("n,," + self.client_first_bare).encode()

    def client_final(self, server_first: bytes) -> bytes:
        attrs = dict(item.split("=", 1) for item in server_first.decode().split(","))
        assert attrs["r"].startswith(self.nonce), "server nonce does not extend ours"
        salted = _salted_password(self.password, base64.b64decode(attrs["s"]), int(attrs["i"]))
        client_key = hmac.digest(salted, b"Client Key", "sha256")
        stored_key = hashlib.sha256(client_key).digest()
        server_key = hmac.digest(salted, b"Server Key", "sha256")
        without_proof = f"c=biws,r={attrs['r']}"
        auth_message = f"{self.client_first_bare},{server_first.decode()},{without_proof}".encode()
        signature = hmac.digest(stored_key, auth_message, "sha256")
        proof = bytes(a ^ b for a, b in zip(client_key, signature))
        self.expected_server_signature = hmac.digest(server_key, auth_message, "sha256")
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()

    def verify_server_final(self, server_final: bytes) -> None:
        attrs = dict(item.split("=", 1) for item in server_final.decode().split(","))
        assert base64.b64decode(attrs["v"]) == self.expected_server_signature, "bad server signature"
