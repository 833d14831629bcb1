"""`kiungo demo` end to end: two nodes, one cross-currency payment, one JSON line, exit 0."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest
from tests.tigerbeetle_server import require_tigerbeetle

KIUNGO = str(Path(sys.executable).parent / "kiungo")


@pytest.mark.parametrize("ledger", ["postgres", "tigerbeetle"])
async def test_kiungo_demo_pays_across_two_nodes(
    postgres_server_url: str, redis_server_url: str, ledger: str
) -> None:
    env = {**os.environ, "DATABASE_URL": postgres_server_url, "REDIS_URL": redis_server_url}
    if ledger == "tigerbeetle":
        # Each node runs a TigerBeetle replica of its own in a temporary directory.
        env |= {"USE_TIGERBEETLE": "true", "TIGERBEETLE_BIN": require_tigerbeetle()}
        env.pop("TIGERBEETLE_REPLICA_ADDRESSES", None)
    process = await asyncio.create_subprocess_exec(
        KIUNGO, "demo", "--amount", "500",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(180):
        out, err = await process.communicate()
    assert process.returncode == 0, err.decode()[-3000:]
    lines = out.decode().strip().splitlines()
    assert len(lines) == 1, lines
    summary = json.loads(lines[0])
    assert summary["ok"] is True and summary["state"] == "COMPLETED"
    assert summary["delivered"] == "500" and summary["delivered_asset"] == "EUR"
    # ceil(500 / 0.9) USD cents, as quoted.
    assert summary["sent"] == "556" and summary["sent_asset"] == "USD"
    assert "paying bob" in err.decode()
