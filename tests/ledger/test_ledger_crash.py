"""A process SIGKILLed while it streams batched transfers leaves a consistent ledger, on
either backend (``ledger_backend``, tests/ledger/conftest.py)."""

from __future__ import annotations

import asyncio
import signal
import sys
import uuid
from pathlib import Path

import asyncpg
from tests.ledger.conftest import open_ledger
from tests.ledger.schema import create_asset

from kiungo.ledger import AccountKind
from kiungo.ledger.tigerbeetle import TigerBeetleLedger
from kiungo.migrations.run import upgrade

REPO = Path(__file__).resolve().parents[2]


async def test_sigkill_mid_stream_leaves_no_partial_transfer(
    database_url: str, ledger_backend: str, tmp_path: Path
) -> None:
    await upgrade(database_url)
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    try:
        usd = await create_asset(pool, "USD", 2)
        eur = await create_asset(pool, "EUR", 2)
        async with open_ledger(ledger_backend, pool, tmp_path) as ledger:
            source = await ledger.ensure_account(AccountKind.PEER_LIQUIDITY, uuid.uuid4(), usd)
            pool_usd = await ledger.ensure_account(AccountKind.ASSET_LIQUIDITY, usd, usd)
            pool_eur = await ledger.ensure_account(AccountKind.ASSET_LIQUIDITY, eur, eur)
            target = await ledger.ensure_account(AccountKind.WALLET_ADDRESS, uuid.uuid4(), eur)
            await ledger.deposit(uuid.uuid4(), source, 10**9)
            await ledger.deposit(uuid.uuid4(), pool_eur, 10**9)
            tigerbeetle = [ledger.addresses] if isinstance(ledger, TigerBeetleLedger) else []

            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tests.ledger.transfer_stream",
                database_url, str(source), str(target), str(pool_usd), str(pool_eur),
                *tigerbeetle,
                cwd=REPO,
                stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip
            assert process.stdout is not None
            try:
                async with asyncio.timeout(60):
                    for _ in range(5):  # several hundred posted: batches are surely in flight
                        line = await process.stdout.readline()
                        assert line.startswith(b"posted"), line
            finally:
                process.send_signal(signal.SIGKILL)
                await process.wait()
            assert process.returncode == -signal.SIGKILL

            assert [r for r in await ledger.check() if not r.ok] == []
            # Every two-leg transfer kept both legs: as much left the source as reached the
            # target, posted and held alike, in as many transfers.
            sent = await ledger.balance(source)
            received = await ledger.balance(target)
            assert sent.debits_posted + sent.debits_pending == (
                received.credits_posted + received.credits_pending
            )
            assert received.credits_posted + received.credits_pending >= 500
            sources = await ledger.transfers_of(source, limit=100_000)
            targets = await ledger.transfers_of(target, limit=100_000)
            assert len(sources) - 1 == len(targets)  # less the deposit
            if ledger_backend == "postgres":
                async with pool.acquire() as conn:
                    legs = await conn.fetchval(
                        "SELECT count(*) FROM ledger_transfers WHERE group_id IS NOT NULL"
                    )
                    groups = await conn.fetchval(
                        "SELECT count(DISTINCT group_id) FROM ledger_transfers "
                        "WHERE group_id IS NOT NULL"
                    )
                assert legs == 2 * groups
    finally:
        await pool.close()
