"""``kiungo ledger check`` on a live database: clean, then after a balance is corrupted."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from pathlib import Path

import asyncpg
import tigerbeetle as tb
from tests.ledger.schema import create_asset
from tests.tigerbeetle_server import tigerbeetle_server

from kiungo.ledger import AccountKind, Ledger, account_id_for
from kiungo.ledger.tigerbeetle import TigerBeetleLedger
from kiungo.migrations.run import upgrade

KIUNGO = str(Path(sys.executable).parent / "kiungo")


async def ledger_check(
    database_url: str, *args: str, env: dict[str, str] | None = None
) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        KIUNGO, "ledger", "check", *args,
        env={**os.environ, "DATABASE_URL": database_url, **(env or {})},
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


async def test_check_on_tigerbeetle_passes_then_fails_on_an_account_without_its_kinds_flags(
    database_url: str, tmp_path: Path
) -> None:
    """TigerBeetle keeps its ledgers balanced and its accounts within their flags; what can
    break is the map: here a peer's account that someone made in TigerBeetle without the
    liquidity flag, then overdrew."""
    await upgrade(database_url)
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    try:
        async with tigerbeetle_server(tmp_path) as server:
            env = {"USE_TIGERBEETLE": "true", "TIGERBEETLE_REPLICA_ADDRESSES": server.address}
            asset = await create_asset(pool, "USD", 2)
            async with TigerBeetleLedger(pool, cluster_id=0, addresses=server.address) as ledger:
                account = await ledger.ensure_account(
                    AccountKind.PEER_LIQUIDITY, uuid.uuid4(), asset
                )
                await ledger.deposit(uuid.uuid4(), account, 1000)
                status, output = await ledger_check(database_url, env=env)
                assert status == 0, output
                assert "FAIL" not in output

                rogue_owner = uuid.uuid4()
                rogue = account_id_for(AccountKind.PEER_LIQUIDITY, rogue_owner)
                await pool.execute(
                    "INSERT INTO ledger_accounts (id, asset_id, kind, owner_id) "
                    "VALUES ($1, $2, 'PEER_LIQUIDITY', $3)",
                    rogue, asset, rogue_owner,
                )  # fmt: skip
                ledger_number = await pool.fetchval(
                    "SELECT ledger FROM assets WHERE id = $1", asset
                )
                await ledger.client.create_accounts(
                    [
                        tb.Account(
                            id=rogue.int, user_data_128=asset.int, ledger=ledger_number, code=3
                        )
                    ]
                )
                [result] = await ledger.client.create_transfers(
                    [
                        tb.Transfer(
                            id=uuid.uuid4().int, debit_account_id=rogue.int,
                            credit_account_id=account.int, amount=5, ledger=ledger_number, code=1,
                        )
                    ]
                )  # fmt: skip
                assert result.status is tb.CreateTransferStatus.CREATED
            status, output = await ledger_check(database_url, env=env)
            assert status == 1, output
            assert "FAIL tigerbeetle_accounts" in output
            assert "FAIL account_flags" in output
            status, output = await ledger_check(database_url, "--json", env=env)
            report = {entry["check"]: entry for entry in json.loads(output)}
            [mismatch] = report["tigerbeetle_accounts"]["violations"]
            assert mismatch == {"account_id": str(rogue), "differs": ["flags"]}
    finally:
        await pool.close()
