"""The idle-connection scenario: N clients log in (SCRAM) and sit idle; then each runs SELECT 1.

Reported per pooler: resident memory (VmRSS) per idle client above a baseline, the same after every
client has run one query (buffers a pooler failed to give back show up here), how long the logins
took, and how many of the N clients got their `1` back.

The clients are one asyncio process speaking the wire protocol directly (pgwire.py's message
builders). SCRAM's PBKDF2 depends only on the password, salt and iteration count, which are the
same for every login of one user, so it is computed once and cached: each further login costs
the client a few HMACs, and the pooler's side is what is timed.
"""

from __future__ import annotations

import asyncio
import struct
import time
from dataclasses import dataclass

from stack import DB, USER, Stack, rss_kb  # first: puts tests/integration on sys.path

import pgwire  # noqa: E402

LOGIN_CONCURRENCY = 100  # in-flight logins: below both poolers' default listen backlog (128)
SOURCE_PORTS_PER_ADDRESS = 20000  # 127.0.0.x source addresses beyond this many clients


@dataclass
class IdleResult:
    target: str
    clients: int
    logged_in: int
    queried_ok: int
    baseline_rss_kb: int
    idle_rss_kb: int
    after_query_rss_kb: int
    login_seconds: float
    query_seconds: float
    error: str = ""

    @property
    def bytes_per_idle_client(self) -> float | None:
        if not self.logged_in:
            return None
        return (self.idle_rss_kb - self.baseline_rss_kb) * 1024 / self.logged_in

    @property
    def bytes_per_client_after_query(self) -> float | None:
        if not self.logged_in:
            return None
        return (self.after_query_rss_kb - self.baseline_rss_kb) * 1024 / self.logged_in

    @property
    def ok(self) -> bool:
        return self.logged_in == self.clients and self.queried_ok == self.clients

    def to_json(self) -> dict:
        d = dict(self.__dict__)
        d["bytes_per_idle_client"] = self.bytes_per_idle_client
        d["bytes_per_client_after_query"] = self.bytes_per_client_after_query
        d["ok"] = self.ok
        return d


class Client:
    """One raw protocol connection over asyncio streams."""


    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    @classmethod
    async def login(cls, port: int, user: str, database: str, password: str,
                    source: str | None) -> "Client":
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, local_addr=(source, 0) if source else None, limit=8192)
        c = cls(reader, writer)
        writer.write(pgwire.startup_packet({"user": user, "database": database}))
        scram = pgwire._Scram(password)  # the tests' SCRAM client (PBKDF2 cached)
        while True:
            tag, payload = await c.read()
            if tag == b"E":
                raise pgwire.ServerError(pgwire.parse_error_fields(payload))
            if tag == b"Z":
                return c
            if tag != b"R":
                continue
            (code,) = struct.unpack("!I", payload[:4])
            if code == 10:
                first = scram.client_first()
                writer.write(pgwire.message(b"p", b"SCRAM-SHA-256\0" + struct.pack("!I", len(first)) + first))
            elif code == 11:
                writer.write(pgwire.message(b"p", scram.client_final(payload[4:])))
            elif code == 12:
                scram.verify_server_final(payload[4:])
            elif code != 0:
                raise ConnectionError(f"unexpected authentication request {code}")

    async def read(self) -> tuple[bytes, bytes]:
        header = await self.reader.readexactly(5)
        (length,) = struct.unpack("!I", header[1:5])
        payload = await self.reader.readexactly(length - 4) if length > 4 else b""
        return header[:1], payload

    async def select_one(self) -> bool:
        self.writer.write(pgwire.message(b"Q", b"SELECT 1\0"))
        got_one = False
        while True:
            tag, payload = await self.read()
            if tag == b"E":
                return False
            if tag == b"D":
                got_one = payload == b"\x00\x01\x00\x00\x00\x011"
            if tag == b"Z":
                return got_one

    def close(self) -> None:
        try:
            self.writer.write(pgwire.message(b"X"))
            self.writer.close()
        except (OSError, RuntimeError):
            pass


def _source_address(i: int, clients: int) -> str | None:
    """127.0.0.1 for up to 20,000 clients; beyond that, 127.0.0.2, .3, ... so the 4-tuples do not
    run out of ephemeral ports (32768-60999 on one source address)."""
    if clients <= SOURCE_PORTS_PER_ADDRESS:
        return None
    return f"127.0.0.{1 + i // SOURCE_PORTS_PER_ADDRESS}"


async def _run(stack: Stack, target: str, clients: int, settle: float) -> IdleResult:
    port = stack.port_of(target)
    pid = stack.pooler_pid(target)
    password = stack.pg.passwords[USER]

    # Baseline: one client has logged in and run a query (code paths and the first server
    # connection are warm), and left.
    warm = await Client.login(port, USER, DB, password, None)
    assert await warm.select_one(), f"{target}: SELECT 1 failed on the warm-up connection"
    warm.close()
    await asyncio.sleep(settle)
    baseline = rss_kb(pid)

    sem = asyncio.Semaphore(LOGIN_CONCURRENCY)
    errors: list[str] = []

    async def one(i: int) -> Client | None:
        async with sem:
            try:
                return await asyncio.wait_for(
                    Client.login(port, USER, DB, password, _source_address(i, clients)), 60)
            except Exception as exc:  # noqa: BLE001 - counted and reported
                errors.append(f"{type(exc).__name__}: {exc}")
                return None

    t0 = time.monotonic()
    conns = [c for c in await asyncio.gather(*(one(i) for i in range(clients))) if c]
    login_seconds = time.monotonic() - t0
    await asyncio.sleep(settle)
    idle = rss_kb(pid)

    async def query(c: Client) -> bool:
        try:
            return await asyncio.wait_for(c.select_one(), 120)
        except Exception as exc:  # noqa: BLE001 - counted and reported
            errors.append(f"SELECT 1: {type(exc).__name__}: {exc}")
            return False

    t0 = time.monotonic()
    answers = await asyncio.gather(*(query(c) for c in conns))
    query_seconds = time.monotonic() - t0
    await asyncio.sleep(settle)
    after = rss_kb(pid)
    for c in conns:
        c.close()
    await asyncio.sleep(0)

    first_errors = sorted(set(errors))[:3]
    return IdleResult(target=target, clients=clients, logged_in=len(conns),
                      queried_ok=sum(answers), baseline_rss_kb=baseline, idle_rss_kb=idle,
                      after_query_rss_kb=after, login_seconds=login_seconds,
                      query_seconds=query_seconds,
                      error=(f"{len(errors)} errors, e.g. " + " | ".join(first_errors)) if errors else "")


def run_idle(stack: Stack, target: str, clients: int, settle: float = 1.0) -> IdleResult:
    """Start a fresh `target` pooler (so the baseline holds nothing from earlier scenarios), hold
    `clients` idle logged-in clients, measure, prove each works, close them."""
    stack.start_pooler(target)
    try:
        return asyncio.run(_run(stack, target, clients, settle))
    except Exception as exc:  # noqa: BLE001 - one pooler's failure must not hide the other's
        return IdleResult(target, clients, 0, 0, 0, 0, 0, 0.0, 0.0,
                          error=f"{type(exc).__name__}: {exc}")
