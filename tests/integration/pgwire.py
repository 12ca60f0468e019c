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

    def _read_until(self, done, what: str, timeout: float | None) -> list[tuple[bytes, bytes]]:
        """Messages until done(messages) is true. TimeoutError when that does not happen within
        `timeout` (default: the connection's), ConnectionError on EOF; either carries the
        messages read so far in its `partial` attribute."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        out: list[tuple[bytes, bytes]] = []
        while not done(out):
            try:
                msg = self.read_message(timeout=max(0.0, deadline - time.monotonic()))
            except TimeoutError as exc:
                exc.partial = out
                raise
            if msg is None:
                exc = ConnectionError(f"connection closed before {what}")
                exc.partial = out
                raise exc
            out.append(msg)
        return out

    def read_until_ready(self, n: int, timeout: float | None = None) -> list[tuple[bytes, bytes]]:
        """Every message until the n-th ReadyForQuery (inclusive); errors as _read_until."""
        return self._read_until(lambda out: sum(1 for t, _ in out if t == b"Z") >= n,
                                f"ReadyForQuery #{n}", timeout)

    def read_n_messages(self, n: int, timeout: float | None = None) -> list[tuple[bytes, bytes]]:
        """Exactly n messages (for a Flush without Sync, where no ReadyForQuery comes)."""
        return self._read_until(lambda out: len(out) >= n, f"message #{n}", timeout)


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


# -- extended query protocol: frontend message builders ---------------------------------------
#
# Each returns the bytes of one frontend message; concatenate them to pipeline a batch in a single
# write. Parameters are text unless formats say otherwise; None is SQL NULL.


def _cstr(s: str | bytes) -> bytes:
    return (s if isinstance(s, bytes) else s.encode()) + b"\0"


def query_msg(sql: str) -> bytes:
    """Query (simple protocol)."""
    return message(b"Q", _cstr(sql))


def parse_msg(name: str, sql: str, param_types: tuple[int, ...] | list[int] = ()) -> bytes:
    """Parse: prepare `sql` as statement `name` ("" is the unnamed statement)."""
    payload = _cstr(name) + _cstr(sql) + struct.pack("!H", len(param_types))
    payload += b"".join(struct.pack("!I", oid) for oid in param_types)
    return message(b"P", payload)


def bind_msg(portal: str, statement: str, params=(), param_formats=(), result_formats=()) -> bytes:
    """Bind: a portal from a statement. params: str/bytes/int values (text unless param_formats
    says 1), None for NULL."""
    payload = _cstr(portal) + _cstr(statement)
    payload += struct.pack("!H", len(param_formats))
    payload += b"".join(struct.pack("!H", f) for f in param_formats)
    payload += struct.pack("!H", len(params))
    for value in params:
        if value is None:
            payload += struct.pack("!i", -1)
            continue
        raw = value if isinstance(value, bytes) else str(value).encode()
        payload += struct.pack("!i", len(raw)) + raw
    payload += struct.pack("!H", len(result_formats))
    payload += b"".join(struct.pack("!H", f) for f in result_formats)
    return message(b"B", payload)


def describe_msg(kind: str, name: str) -> bytes:
    """Describe a statement (kind 'S') or a portal (kind 'P')."""
    assert kind in ("S", "P"), kind
    return message(b"D", kind.encode() + _cstr(name))


def execute_msg(portal: str = "", max_rows: int = 0) -> bytes:
    return message(b"E", _cstr(portal) + struct.pack("!I", max_rows))


def close_msg(kind: str, name: str) -> bytes:
    """Close a statement (kind 'S') or a portal (kind 'P')."""
    assert kind in ("S", "P"), kind
    return message(b"C", kind.encode() + _cstr(name))


def sync_msg() -> bytes:
    return message(b"S")


def flush_msg() -> bytes:
    return message(b"H")


def copy_data_msg(data: bytes | str) -> bytes:
    return message(b"d", data if isinstance(data, bytes) else data.encode())


def copy_done_msg() -> bytes:
    return message(b"c")


def copy_fail_msg(reason: str) -> bytes:
    return message(b"f", _cstr(reason))


def function_call_msg(function_oid: int, args=(), arg_formats=(), result_format: int = 0) -> bytes:
    """FunctionCall (fast-path): args as for bind_msg (text unless arg_formats says 1)."""
    payload = struct.pack("!IH", function_oid, len(arg_formats))
    payload += b"".join(struct.pack("!H", f) for f in arg_formats)
    payload += struct.pack("!H", len(args))
    for value in args:
        if value is None:
            payload += struct.pack("!i", -1)
            continue
        raw = value if isinstance(value, bytes) else str(value).encode()
        payload += struct.pack("!i", len(raw)) + raw
    payload += struct.pack("!H", result_format)
    return message(b"F", payload)


def count_ready_expected(data: bytes) -> int:
    """How many ReadyForQuery a well-formed batch of frontend messages asks for: one per Query,
    Sync and FunctionCall."""
    n, pos = 0, 0
    while pos + 5 <= len(data):
        tag = data[pos:pos + 1]
        (length,) = struct.unpack("!I", data[pos + 1:pos + 5])
        if tag in (b"Q", b"S", b"F"):
            n += 1
        pos += 1 + length
    return n


def frontend_messages(data: bytes) -> list[tuple[bytes, bytes]]:
    """Split a batch of frontend messages into (tag, payload) pairs."""
    out, pos = [], 0
    while pos + 5 <= len(data):
        tag = data[pos:pos + 1]
        (length,) = struct.unpack("!I", data[pos + 1:pos + 5])
        out.append((tag, data[pos + 5:pos + 1 + length]))
        pos += 1 + length
    return out


# -- backend message decoding -------------------------------------------------------------------


def parse_row_description(payload: bytes) -> list[tuple]:
    """RowDescription fields: (name, table_oid, attnum, type_oid, typlen, typmod, format)."""
    (n,) = struct.unpack("!H", payload[:2])
    pos, fields = 2, []
    for _ in range(n):
        end = payload.index(b"\0", pos)
        name = payload[pos:end].decode(errors="replace")
        pos = end + 1
        table_oid, attnum, type_oid, typlen, typmod, fmt = struct.unpack("!IhIhih",
                                                                         payload[pos:pos + 18])
        pos += 18
        fields.append((name, table_oid, attnum, type_oid, typlen, typmod, fmt))
    return fields


def parse_data_row(payload: bytes) -> list[bytes | None]:
    (n,) = struct.unpack("!H", payload[:2])
    pos, values = 2, []
    for _ in range(n):
        (length,) = struct.unpack("!i", payload[pos:pos + 4])
        pos += 4
        if length < 0:
            values.append(None)
        else:
            values.append(payload[pos:pos + length])
            pos += length
    return values


def parse_parameter_description(payload: bytes) -> list[int]:
    (n,) = struct.unpack("!H", payload[:2])
    return list(struct.unpack(f"!{n}I", payload[2:2 + 4 * n]))
