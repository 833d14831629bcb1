"""Ledger throughput on Postgres (and TigerBeetle): prints one JSON line per figure.

    .venv/bin/python tests/benchmarks/ledger.py [--seconds 5] [--callers 64] [--backend B]

Two-phase packet transfers (create pending, then post) between one hot account pair, with
``--callers`` concurrent callers, through the group-commit ledger; then the same work through a
naive implementation (one transaction and one row lock per operation, as a ledger without
batching would do it), in the same run, and their ratio. With ``--backend tigerbeetle`` the
same batched work also runs on a TigerBeetle server of its own (``TIGERBEETLE_BIN``, formatted
in a temporary directory, started with 1 MiB requests and a 256 MiB grid cache), beside the
Postgres figure of the same run. Uses ``DATABASE_URL`` (a scratch database is created and
dropped on that server) or the embedded Postgres. Not a test.
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
from tests.tigerbeetle_server import tigerbeetle_server

from kiungo.ledger import AccountKind, InsufficientLiquidity, Ledger, Leg
from kiungo.ledger.service import account_id_for
from kiungo.ledger.tigerbeetle import TigerBeetleLedger
from kiungo.runtime.gc_tuning import tune_gc
from kiungo.store.embedded import EmbeddedPostgres

HOLD = timedelta(seconds=30)
# TigerBeetle's benchmark settings (its README): 1 MiB requests hold about 8,000 transfers.
BENCHMARK_SERVER = ("--experimental", "--limit-request=1MiB", "--cache-grid=256MiB")


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


async def batched_figure(
    ledger: Ledger, asset: uuid.UUID, seconds: float, callers: int, backend: str
) -> tuple[float, uuid.UUID, uuid.UUID]:
    """Two-phase transfers per second through ``ledger`` on one hot pair; prints the figure."""
    source = await ledger.ensure_account(AccountKind.PEER_LIQUIDITY, uuid.uuid4(), asset)
    target = await ledger.ensure_account(AccountKind.PEER_LIQUIDITY, uuid.uuid4(), asset)
    await ledger.deposit(uuid.uuid4(), source, 10**15)

    async def batched() -> None:
        transfer = await ledger.create_transfer(uuid.uuid4(), source, target, 1, hold_for=HOLD)
        await ledger.post(transfer.id)

    await run_callers(callers, 0.5, batched)  # warm-up
    batches_before, ops_before = ledger.batches, ledger.operations
    cpu_before, loop_before = time.process_time(), time.thread_time()
    done, elapsed = await run_callers(callers, seconds, batched)
    cpu = time.process_time() - cpu_before
    loop_cpu = time.thread_time() - loop_before
    batched_rate = done / elapsed
    mean_batch = (ledger.operations - ops_before) / max(1, ledger.batches - batches_before)
    print(
        json.dumps(
            {
                "benchmark": "ledger",
                "backend": backend,
                "figure": "two_phase_transfers_per_second_batched",
                "per_second": round(batched_rate),
                "callers": callers,
                "seconds": round(elapsed, 2),
                "mean_operations_per_batch": round(mean_batch, 1),
                # All of this process's threads (the TigerBeetle client has one of its own),
                # then the event loop's thread alone.
                "process_cpu_us_per_transfer": round(cpu / max(1, done) * 1e6, 1),
                "event_loop_cpu_us_per_transfer": round(loop_cpu / max(1, done) * 1e6, 1),
            }
        ),
        flush=True,
    )
    return batched_rate, source, target


BULK_LEGS = 100


async def bulk_figure(
    ledger: Ledger, source: uuid.UUID, target: uuid.UUID, seconds: float, backend: str
) -> None:
    """The same two-phase work on the hot pair with ``BULK_LEGS`` legs per call (one
    ``create_transfers`` of pending legs, then one ``post`` of them all) from 16 callers: what
    the engine and the group commit do once a caller's own per-call cost is spread over many
    transfers (the packet path makes one call per packet; this is the backend's bulk shape)."""

    async def bulk() -> None:
        legs = [Leg(uuid.uuid4(), source, target, 1) for _ in range(BULK_LEGS)]
        await ledger.create_transfers(legs, hold_for=HOLD)
        await ledger.post(*(leg.id for leg in legs))

    await run_callers(16, 0.5, bulk)  # warm-up
    cpu_before = time.process_time()
    done, elapsed = await run_callers(16, seconds, bulk)
    transfers = done * BULK_LEGS
    print(
        json.dumps(
            {
                "benchmark": "ledger",
                "backend": backend,
                "figure": "two_phase_transfers_per_second_bulk",
                "per_second": round(transfers / elapsed),
                "legs_per_call": BULK_LEGS,
                "callers": 16,
                "seconds": round(elapsed, 2),
                "process_cpu_us_per_transfer": round(
                    (time.process_time() - cpu_before) / max(1, transfers) * 1e6, 1
                ),
            }
        ),
        flush=True,
    )


async def bench(database_url: str, seconds: float, callers: int, backend: str) -> None:
    await create_schema(database_url)
    tune_gc()  # as every serving process of the node does before it serves
    connections = min(callers, 64) + 2
    pool = await asyncpg.create_pool(database_url, min_size=connections, max_size=connections)
    try:
        asset = await create_asset(pool, "USD", 2)
        async with Ledger(pool) as ledger:
            batched_rate, source, target = await batched_figure(
                ledger, asset, seconds, callers, "postgres"
            )
            await bulk_figure(ledger, source, target, seconds, "postgres")
        if backend == "tigerbeetle":
            with tempfile.TemporaryDirectory() as tmp:
                async with (
                    tigerbeetle_server(Path(tmp), *BENCHMARK_SERVER) as server,
                    TigerBeetleLedger(pool, cluster_id=0, addresses=server.address) as tigerbeetle,
                ):
                    tigerbeetle_rate, tb_source, tb_target = await batched_figure(
                        tigerbeetle, asset, seconds, callers, "tigerbeetle"
                    )
                    await bulk_figure(tigerbeetle, tb_source, tb_target, seconds, "tigerbeetle")
            print(
                json.dumps(
                    {
                        "benchmark": "ledger",
                        "figure": "tigerbeetle_over_postgres_batched",
                        "ratio": round(tigerbeetle_rate / batched_rate, 2),
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
    parser.add_argument("--backend", choices=("postgres", "tigerbeetle"), default="postgres")
    args = parser.parse_args()
    server_url = os.environ.get("DATABASE_URL")
    if server_url:
        url = await create_database(server_url)
        try:
            await bench(url, args.seconds, args.callers, args.backend)
        finally:
            await drop_database(url)
        return
    with tempfile.TemporaryDirectory() as tmp:
        async with EmbeddedPostgres(Path(tmp)) as pg:
            url = await create_database(pg.url)
            await bench(url, args.seconds, args.callers, args.backend)


if __name__ == "__main__":
    asyncio.run(main())
