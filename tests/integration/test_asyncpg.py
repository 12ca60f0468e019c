"""asyncpg (binary protocol, extended queries, pipelined executemany) through the pooler."""

import asyncio

import asyncpg  # conftest checks it is installed (python3-asyncpg)
import pytest

USER, DB = "trading_app_user", "trading_db"
CLIENTS = 10
ROWS_PER_CLIENT = 200


@pytest.mark.parametrize("pool_mode", ["transaction", "session"])
def test_asyncpg_concurrent_clients(pg, usher, pool_mode):
    pooler = usher(pool_mode=pool_mode, pool_size=2)

    async def client(me: int):
        # No server-side statement cache: the pooled server may change between transactions.
        conn = await asyncpg.connect(host=pooler.host, port=pooler.port, user=USER, database=DB,
                                     password=pg.passwords[USER], statement_cache_size=0)
        try:
            async with conn.transaction():
                await conn.executemany("INSERT INTO apg_rows VALUES ($1, $2, $3)",
                                       [(me, i, f"row {me}/{i}") for i in range(ROWS_PER_CLIENT)])
            n, total = await conn.fetchrow("SELECT count(*), sum(seq) FROM apg_rows WHERE worker = $1", me)
            assert (n, total) == (ROWS_PER_CLIENT, sum(range(ROWS_PER_CLIENT)))
            assert await conn.fetchval("SELECT $1::int8 * 2", me) == 2 * me
            assert await conn.fetchval("SELECT $1::text || $2::text", "a", "b") == "ab"
        finally:
            await conn.close()

    async def main():
        await asyncio.gather(*(client(i) for i in range(CLIENTS)))

    with pg.connect(USER, DB) as conn:
        conn.execute("DROP TABLE IF EXISTS apg_rows")
        conn.execute("CREATE TABLE apg_rows (worker int, seq int, label text, PRIMARY KEY (worker, seq))")
    try:
        asyncio.run(asyncio.wait_for(main(), timeout=60))
        with pg.connect(USER, DB) as conn:
            assert conn.execute("SELECT count(*), count(DISTINCT worker) FROM apg_rows").fetchone() == \
                   (CLIENTS * ROWS_PER_CLIENT, CLIENTS)
    finally:
        with pg.connect(USER, DB) as conn:
            conn.execute("DROP TABLE IF EXISTS apg_rows")
