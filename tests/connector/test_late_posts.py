"""A fulfilled packet whose hold expired before its post, through the connector's HTTP interface
on real Postgres and Redis: its money is booked once all the same (LATE_POST transfers), nothing
is left owed, and `kiungo ledger check` (the CLI, as a process) finds the books clean."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from redis.asyncio import Redis
from starlette.requests import Request
from starlette.responses import Response
from tests.connector.harness import (
    PREIMAGE,
    Connector,
    NextHop,
    next_hop,
    prepare_to,
    running_connector,
)
from tests.ledger.test_ledger_check_cli import ledger_check

from kiungo.connector.owed import LATE_POST_CODE, late_transfer_id
from kiungo.ilp.packet import Fulfill, Prepare, encode_packet
from kiungo.ledger import AccountKind, TransferState
from kiungo.spsp import SpspResponse
from kiungo.stream.crypto import StreamKeys
from kiungo.stream.packet import StreamMoneyFrame, StreamPacket, encode_stream_packet

# The modules (the package exports functions of the same names).
forward_step = importlib.import_module("kiungo.connector.pipeline.forward")
receive_step = importlib.import_module("kiungo.connector.pipeline.receive")

HOP_DELAY = 1.0  # how long the next hop takes to fulfill: longer than the shortened holds


def slow_fulfilling_hop() -> NextHop:
    async def hop(request: Request) -> Response:
        await request.body()
        await asyncio.sleep(HOP_DELAY)
        reply = encode_packet(Fulfill(PREIMAGE, b"ok"))
        return Response(reply, media_type="application/octet-stream")

    return hop


@pytest.fixture
async def connector(
    database_url: str, redis_server_url: str, redis_prefix: str
) -> AsyncIterator[Connector]:
    async with (
        next_hop(slow_fulfilling_hop()) as hop,
        running_connector(
            database_url, redis_server_url, redis_prefix, hop_endpoint=hop
        ) as connector,
    ):
        yield connector


async def packet_holds(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    async with pool.acquire() as conn:
        return list(
            await conn.fetch(
                "SELECT id, state FROM ledger_transfers WHERE code = 'TRANSFER' ORDER BY id"
            )
        )


async def test_a_forwarded_packet_whose_hold_expires_before_the_fulfill_is_booked_once(
    connector: Connector, redis: Redis, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Holds end ~0.3 s after the packet leaves (instead of 5 s after its expiry); the next hop
    # fulfills after 1 s.
    monkeypatch.setattr(forward_step, "HOLD_MARGIN", timedelta(seconds=-8.7))
    reply = await connector.send(prepare_to("test.bob.x", 100, expires_in=10.0))
    assert isinstance(reply, Fulfill)
    alice, bob = connector.seeded.peers["alice"], connector.seeded.peers["bob"]
    assert await connector.balance(AccountKind.PEER_LIQUIDITY, alice) == 10_000 - 100
    assert await connector.balance(AccountKind.PEER_LIQUIDITY, bob) == 100
    await assert_booked_late_once_at(connector, redis, database_url, holds=1)


async def spsp(connector: Connector, path: str) -> SpspResponse:
    response = await connector.client.get(
        f"{connector.url}{path}", headers={"Accept": "application/spsp4+json"}
    )
    assert response.status_code == 200, response.text
    return SpspResponse.from_json(response.json())


async def test_a_received_packet_whose_hold_expires_before_its_post_is_booked_once(
    connector: Connector, redis: Redis, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As when the ledger's writer is more than the hold's 5 s behind: the Fulfill has gone
    out, and the post after it finds the hold expired."""
    monkeypatch.setattr(receive_step, "RECEIVE_HOLD", timedelta(milliseconds=1))
    credentials = await spsp(connector, "/carol")
    keys = StreamKeys(credentials.shared_secret)
    data = keys.encrypt(encode_stream_packet(StreamPacket(1, 12, 0, [StreamMoneyFrame(1, 1)])))
    expires = datetime.now(UTC) + timedelta(seconds=10)
    prepare = Prepare(250, expires, keys.condition(data), credentials.destination_account, data)
    assert isinstance(await connector.send(prepare), Fulfill)
    carol, alice = connector.seeded.wallets["carol"], connector.seeded.peers["alice"]
    for _ in range(100):  # posted just after the Fulfill is sent
        if await connector.balance(AccountKind.WALLET_ADDRESS, carol):
            break
        await asyncio.sleep(0.05)
    assert await connector.balance(AccountKind.WALLET_ADDRESS, carol) == 250
    assert await connector.balance(AccountKind.PEER_LIQUIDITY, alice) == 10_000 - 250
    await assert_booked_late_once_at(connector, redis, database_url, holds=1)


async def assert_booked_late_once_at(
    connector: Connector, redis: Redis, database_url: str, *, holds: int
) -> None:
    rows = await packet_holds(connector.pool)
    assert len(rows) == holds
    for row in rows:
        assert row["state"] == TransferState.EXPIRED.value
        async with connector.pool.acquire() as conn:
            late = await conn.fetchrow(
                "SELECT state, code, amount FROM ledger_transfers WHERE id = $1",
                late_transfer_id(row["id"]),
            )
        assert late is not None
        assert (late["state"], late["code"]) == (TransferState.POSTED.value, LATE_POST_CODE)
    assert connector.node is not None
    assert await redis.llen(connector.node.owed.key) == 0
    status, output = await ledger_check(database_url)
    assert status == 0, output
    assert "FAIL" not in output
