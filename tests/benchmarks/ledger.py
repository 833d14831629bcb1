"""Ledger throughput on Postgres: prints one JSON line per figure.

    .venv/bin/python tests/benchmarks/ledger.py [--seconds 5] [--callers 64]

Two-phase packet transfers (create pending, then post) between one hot account pair, with
``--callers`` concurrent callers, through the group-commit ledger; then the same work through a
naive implementation (one transaction and one row lock per operation, as a ledger without
batching would do it), in the same run, and their ratio. Uses ``DATABASE_URL`` (a scratch
database is created and dropped on that server) or the embedded Postgres. Not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import asyncpg
from tests.ledger.schema import create_asset, create_schema
from tests.stores import create_database, drop_database

from kiungo.ledger import AccountKind, InsufficientLiquidity, Ledger
from kiungo.ledger.service import account_id_for
from kiungo.store.embedded import EmbeddedPostgres

HOLD = timedelta(seconds=30)


async def naive_two_phase(pool: asyncpg.Pool, source: uuid.UUID, target: uuid.UUID) -> None:
    """Create a pending transfer and post it, one locked transaction per step."""
    transfer_id = uuid.uuid4()
    async with pool.acquire() as conn:
        async with conn.transaction():
            rows = await conn.fetch(
                "SELECT id, debits_posted, debits_pending, credits_posted FROM ledger_accounts "
                "WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE",
                [source, target],
            )
            debit = next(r for r in rows if r["id"] == source)
            if debit["debits_posted"] + debit["debits_pending"] + 1 > debit["credits_posted"]:
                raise InsufficientLiquidity("naive: insufficient liquidity")
            asset = await conn.fetchval(
                "SELECT asset_id FROM ledger_accounts WHERE id = $1", source
            )
            await conn.execute(
                "INSERT INTO ledger_transfers (id, asset_id, debit_account_id, credit_account_id,"
                " amount, state, expires_at) VALUES ($1, $2, $3, $4, 1, 'PENDING', now() + $5)",
                transfer_id,
                asset,
                source,
                target,
                HOLD,
            )
            await conn.execute(
                "UPDATE ledger_accounts SET debits_pending = debits_pending + 1 WHERE id = $1",
                source,
            )
            await conn.execute(
                "UPDATE ledger_accounts SET credits_pending = credits_pending + 1 WHERE id = $1",
                target,
            )
        async with conn.transaction():
            await conn.fetch(
                "SELECT id FROM ledger_accounts WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE",
                [source, target],
            )
            state = await conn.fetchval(
                "SELECT state FROM ledger_transfers WHERE id = $1 FOR UPDATE", transfer_id
            )
            assert state == "PENDING"
            await conn.execute(
                "UPDATE ledger_transfers SET state = 'POSTED' WHERE id = $1", transfer_id
            )
            await conn.execute(
                "UPDATE ledger_accounts SET debits_pending = debits_pending - 1, "
                "debits_posted = debits_posted + 1 WHERE id = $1",
                source,
            )
            await conn.execute(
                "UPDATE ledger_accounts SET credits_pending = credits_pending - 1, "
                "credits_posted = credits_posted + 1 WHERE id = $1",
                target,
            )


async def run_callers(
    callers: int, seconds: float, one: Callable[[], Awaitable[None]]
) -> tuple[int, float]:
    done = 0
    deadline = time.perf_counter() + seconds

    async def caller() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await one()
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    return done, time.perf_counter() - start


async def bench(database_url: str, seconds: float, callers: int) -> None:
    await create_schema(database_url)
    pool = await asyncpg.create_pool(database_url, min_size=callers + 2, max_size=callers + 2)
    try:
        asset = await create_asset(pool, "USD", 2)
        async with Ledger(pool) as ledger:
            source = await ledger.ensure_account(AccountKind.PEER_LIQUIDITY, uuid.uuid4(), asset)
            target = await ledger.ensure_account(AccountKind.PEER_LIQUIDITY, uuid.uuid4(), asset)
            await ledger.deposit(uuid.uuid4(), source, 10**15)

            async def batched() -> None:
                transfer = await ledger.create_transfer(
                    uuid.uuid4(), source, target, 1, hold_for=HOLD
                )
                await ledger.post(transfer.id)

            await run_callers(callers, 0.5, batched)  # warm-up
            batches_before, ops_before = ledger.batches, ledger.operations
            done, elapsed = await run_callers(callers, seconds, batched)
            batched_rate = done / elapsed
            mean_batch = (ledger.operations - ops_before) / max(1, ledger.batches - batches_before)
            print(
                json.dumps(
                    {
                        "benchmark": "ledger",
                        "figure": "two_phase_transfers_per_second_batched",
                        "per_second": round(batched_rate),
                        "callers": callers,
                        "seconds": round(elapsed, 2),
                        "mean_operations_per_batch": round(mean_batch, 1),
                    }
                ),
                flush=True,
            )

        done, elapsed = await run_callers(
            callers, seconds, lambda: naive_two_phase(pool, source, target)
        )
        naive_rate = done / elapsed
        print(
            json.dumps(
                {
                    "benchmark": "ledger",
                    "figure": "two_phase_transfers_per_second_naive",
                    "per_second": round(naive_rate),
                    "callers": callers,
                    "seconds": round(elapsed, 2),
                }
            ),
            flush=True,
        )
        print(
            json.dumps(
                {
                    "benchmark": "ledger",
                    "figure": "batched_over_naive",
                    "ratio": round(batched_rate / naive_rate, 2),
                }
            ),
            flush=True,
        )
        assert account_id_for(AccountKind.SETTLEMENT, asset)
    finally:
        await pool.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--callers", type=int, default=64)
    args = parser.parse_args()
    server_url = os.environ.get("DATABASE_URL")
    if server_url:
        url = await create_database(server_url)
        try:
            await bench(url, args.seconds, args.callers)
        finally:
            await drop_database(url)
        return
    with tempfile.TemporaryDirectory() as tmp:
        async with EmbeddedPostgres(Path(tmp)) as pg:
            url = await create_database(pg.url)
            await bench(url, args.seconds, args.callers)


if __name__ == "__main__":
    asyncio.run(main())
