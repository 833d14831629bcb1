"""A process that streams batched ledger transfers until it is killed (for the SIGKILL test).

    python -m tests.ledger.transfer_stream DATABASE_URL SOURCE TARGET POOL_A POOL_B [TB_ADDRESS]

With TB_ADDRESS, on that TigerBeetle server (cluster 0).

Runs 64 concurrent callers making two-leg pending transfers and posting them, printing a line
after every 100 posted so the test knows batches are in flight when it kills the process.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from datetime import timedelta

import asyncpg

from kiungo.ledger import Ledger, LedgerError, Leg
from kiungo.ledger.tigerbeetle import TigerBeetleLedger


async def main(
    url: str, source: str, target: str, pool_a: str, pool_b: str, tigerbeetle: str | None
) -> None:
    pool = await asyncpg.create_pool(url, min_size=2, max_size=4)
    accounts = [uuid.UUID(a) for a in (source, target, pool_a, pool_b)]
    posted = 0
    ledger = (
        Ledger(pool)
        if tigerbeetle is None
        else TigerBeetleLedger(pool, cluster_id=0, addresses=tigerbeetle)
    )
    async with ledger:

        async def caller() -> None:
            nonlocal posted
            while True:
                legs = [
                    Leg(uuid.uuid4(), accounts[0], accounts[2], 1),
                    Leg(uuid.uuid4(), accounts[3], accounts[1], 1),
                ]
                try:
                    created = await ledger.create_transfers(legs, hold_for=timedelta(minutes=5))
                    await ledger.post(*(t.id for t in created))
                except LedgerError:
                    continue
                posted += 1
                if posted % 100 == 0:
                    print(f"posted {posted}", flush=True)

        await asyncio.gather(*(caller() for _ in range(64)))


if __name__ == "__main__":
    url, source, target, pool_a, pool_b = sys.argv[1:6]
    tigerbeetle = sys.argv[6] if len(sys.argv) > 6 else None
    asyncio.run(main(url, source, target, pool_a, pool_b, tigerbeetle))
