"""``kiungo ledger check`` on a live database: clean, then after a balance is corrupted."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from pathlib import Path

import asyncpg
from tests.ledger.schema import create_asset

from kiungo.ledger import AccountKind, Ledger
from kiungo.migrations.run import upgrade

KIUNGO = str(Path(sys.executable).parent / "kiungo")


async def ledger_check(database_url: str, *args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        KIUNGO, "ledger", "check", *args,
        env={**os.environ, "DATABASE_URL": database_url},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await process.communicate()
    assert process.returncode is not None
    return process.returncode, stdout.decode() + stderr.decode()


async def test_check_passes_on_a_consistent_ledger_and_fails_on_a_corrupted_balance(
    database_url: str,
) -> None:
    await upgrade(database_url)
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    try:
        asset = await create_asset(pool, "USD", 2)
        async with Ledger(pool) as ledger:
            account = await ledger.ensure_account(AccountKind.PEER_LIQUIDITY, uuid.uuid4(), asset)
            await ledger.deposit(uuid.uuid4(), account, 1000)
        status, output = await ledger_check(database_url)
        assert status == 0, output
        assert "FAIL" not in output

        async with pool.acquire() as conn:
            await conn.execute(
                "UPDATE ledger_accounts SET credits_posted = credits_posted + 5 WHERE id = $1",
                account,
            )
        status, output = await ledger_check(database_url)
        assert status == 1
        assert "FAIL ledger_balances" in output
        assert "FAIL account_balances_match_transfers" in output
        status, output = await ledger_check(database_url, "--json")
        report = {entry["check"]: entry for entry in json.loads(output)}
        assert report["account_balances_match_transfers"]["violations"][0]["account_id"] == str(
            account
        )
    finally:
        await pool.close()
