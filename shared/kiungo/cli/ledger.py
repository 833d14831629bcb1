"""``kiungo ledger check``: verify the ledger's invariants on a live database."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import TYPE_CHECKING

from kiungo.cli.arguments import Subcommands, command_group, paragraphs
from kiungo.config import Settings

if TYPE_CHECKING:
    from kiungo.ledger.check import CheckResult

__all__ = ["register"]


def register(subparsers: Subcommands) -> None:
    commands = command_group(subparsers, "ledger", "inspect the double-entry ledger")
    check = commands.add_parser(
        "check",
        help="verify the ledger's invariants",
        description=paragraphs(
            "Check, in one consistent snapshot of DATABASE_URL (or the embedded Postgres): "
            "per asset, debits equal credits; every account's balances equal its transfers; "
            "no balance outside its account's flags; the legs of a transfer agree; every "
            "transfer's accounts exist and hold its asset. With USE_TIGERBEETLE: every "
            "account is in TigerBeetle with its kind's flags and its asset's ledger, per asset "
            "debits equal credits, no balance outside its account's flags. Exits 1 and lists "
            "the violations when any check fails."
        ),
    )
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.set_defaults(handler=_check)


def _check(args: argparse.Namespace) -> int:
    # SQLAlchemy and asyncpg take a third of a second to import: only when checking.
    from kiungo.ledger.backend import make_ledger  # noqa: PLC0415
    from kiungo.ledger.check import run_checks  # noqa: PLC0415
    from kiungo.runtime.db import create_pool  # noqa: PLC0415
    from kiungo.store.local import postgres_url  # noqa: PLC0415

    async def run() -> list[CheckResult]:
        settings = Settings.from_env(serving=False)
        async with postgres_url(settings) as url:
            pool = await create_pool(url, min_size=1, max_size=1)
            try:
                if settings.use_tigerbeetle:
                    async with await make_ledger(pool, settings) as ledger:
                        return await ledger.check()
                async with pool.acquire() as conn:
                    return await run_checks(conn)
            finally:
                await pool.close()

    results = asyncio.run(run())
    if args.json:
        print(
            json.dumps(
                [{"check": r.name, "ok": r.ok, "violations": r.violations} for r in results],
                indent=2,
            )
        )
    else:
        for result in results:
            print(f"{'ok  ' if result.ok else 'FAIL'} {result.name}: {result.description}")
            for violation in result.violations[:20]:
                print(f"       {json.dumps(violation)}")
            if len(result.violations) > 20:
                print(f"       ... and {len(result.violations) - 20} more")
    return 0 if all(r.ok for r in results) else 1
