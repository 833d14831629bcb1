"""A process SIGKILLed while it streams batched transfers leaves a consistent ledger."""

from __future__ import annotations

import asyncio
import signal
import sys
import uuid
from pathlib import Path

import asyncpg
from tests.ledger.schema import create_asset

from kiungo.ledger import AccountKind, Ledger, run_checks
from kiungo.migrations.run import upgrade

REPO = Path(__file__).resolve().parents[2]


async def test_sigkill_mid_stream_leaves_no_partial_transfer(database_url: str) -> None:
    await upgrade(database_url)
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    try:
        usd = await create_asset(pool, "USD", 2)
        eur = await create_asset(pool, "EUR", 2)
        async with Ledger(pool) as ledger:
            source = await ledger.ensure_account(AccountKind.PEER_LIQUIDITY, uuid.uuid4(), usd)
            pool_usd = await ledger.ensure_account(AccountKind.ASSET_LIQUIDITY, usd, usd)
            pool_eur = await ledger.ensure_account(AccountKind.ASSET_LIQUIDITY, eur, eur)
            target = await ledger.ensure_account(AccountKind.WALLET_ADDRESS, uuid.uuid4(), eur)
            await ledger.deposit(uuid.uuid4(), source, 10**9)
            await ledger.deposit(uuid.uuid4(), pool_eur, 10**9)

        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.ledger.transfer_stream",
            database_url, str(source), str(target), str(pool_usd), str(pool_eur),
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

        async with pool.acquire() as conn:
            results = await run_checks(conn)
            assert [r for r in results if not r.ok] == []
            legs = await conn.fetchval(
                "SELECT count(*) FROM ledger_transfers WHERE group_id IS NOT NULL"
            )
            groups = await conn.fetchval(
                "SELECT count(DISTINCT group_id) FROM ledger_transfers WHERE group_id IS NOT NULL"
            )
            moved = await conn.fetchval(
                "SELECT credits_posted + credits_pending FROM ledger_accounts WHERE id = $1",
                target,
            )
        assert legs == 2 * groups  # every group kept both legs
        assert groups >= 500
        async with Ledger(pool) as ledger:  # the crashed process's holds stay releasable
            balance = await ledger.balance(target)
        assert balance.credits_posted + balance.credits_pending == moved
    finally:
        await pool.close()
