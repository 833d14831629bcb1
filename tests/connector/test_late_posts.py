"""A fulfilled packet whose hold expired before its post, through the connector's HTTP interface
on real Postgres and Redis: its money is booked once all the same (LATE_POST transfers), nothing
is left owed, and `kiungo ledger check` (the CLI, as a process) finds the books clean."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest
from redis.asyncio import Redis
from starlette.requests import Request
from starlette.responses import Response
from tests.connector.harness import (
    PREIMAGE,
    Connector,
    NextHop,
    create_incoming_payment,
    next_hop,
    prepare_to,
    running_connector,
)
from tests.connector.test_connector_send import (
    balance,
    create_payment,
    events_of,
    other_node,
    sender_wallet,
    wait_for_state,
)
from tests.ledger.test_ledger_check_cli import ledger_check
from tests.stores import DatabaseFactory

from kiungo.config import Settings
from kiungo.connector.owed import LATE_POST_CODE, late_transfer_id
from kiungo.ilp.packet import Fulfill, Prepare, encode_packet
from kiungo.ledger import AccountKind, TransferState, account_id_for
from kiungo.spsp import SpspResponse
from kiungo.stream.crypto import StreamKeys
from kiungo.stream.packet import StreamMoneyFrame, StreamPacket, encode_stream_packet

# The modules (the package exports functions of the same names).
forward_step = importlib.import_module("kiungo.connector.pipeline.forward")
receive_step = importlib.import_module("kiungo.connector.pipeline.receive")

OCTETS = "application/octet-stream"
HOP_DELAY = 1.0  # how long the next hop takes to fulfill: longer than the shortened holds
PACKET_TIMEOUT_MS = Settings().packet_timeout_ms  # the node's, unless a test sets its own
HOLD_SECONDS = 0.3
"""How long the shortened holds last. The forward step holds a packet until the expiry it
forwards it with (the node's PACKET_TIMEOUT_MS from when it takes the packet, when that comes
before the sender's expiry) plus HOLD_MARGIN; a margin of HOLD_SECONDS less than the packet
timeout makes the hold HOLD_SECONDS long from that moment, however long the node took to get
there (measured from the sender's expiry instead, a loaded machine could spend the whole hold
before making it, which the ledger refuses)."""


def short_holds(monkeypatch: pytest.MonkeyPatch, packet_timeout_ms: int) -> None:
    """Holds of HOLD_SECONDS on a node whose PACKET_TIMEOUT_MS is ``packet_timeout_ms``."""
    margin = timedelta(seconds=HOLD_SECONDS) - timedelta(milliseconds=packet_timeout_ms)
    monkeypatch.setattr(forward_step, "HOLD_MARGIN", margin)


def long_prepare(amount: int) -> Prepare:
    """A Prepare expiring well after the node's packet timeout (which then sets its hold)."""
    return prepare_to("test.bob.x", amount, expires_in=PACKET_TIMEOUT_MS / 1000 + 10)


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
    # Holds end HOLD_SECONDS after the node takes the packet (instead of 5 s after its
    # expiry); the next hop fulfills HOP_DELAY after it gets the packet, which is later.
    short_holds(monkeypatch, PACKET_TIMEOUT_MS)
    reply = await connector.send(long_prepare(100))
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
    deadline = asyncio.get_running_loop().time() + 20
    while asyncio.get_running_loop().time() < deadline:  # posted just after the Fulfill is sent
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


async def test_an_outgoing_payment_whose_holds_expire_before_the_fulfills_offers_none_of_it_back(
    make_database: DatabaseFactory,
    redis_server_url: str,
    redis_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its packets' holds (on the payment's account) expire while bob's node takes its time to
    fulfill: the money they paid out is booked all the same, so the payment's end offers none
    of it for withdrawal (a refund of money already paid to the receiver)."""
    # Packets of 5 s (ample for slow_bob and bob's node on a loaded machine), held 0.3 s.
    packet_timeout_ms = 5_000
    short_holds(monkeypatch, packet_timeout_ms)
    async with other_node(await make_database(), redis_server_url, redis_prefix) as bob:

        async def slow_bob(request: Request) -> Response:
            body = await request.body()
            await asyncio.sleep(0.6)
            async with httpx.AsyncClient() as client:
                answer = await client.post(
                    f"{bob.url}/ilp",
                    content=body,
                    headers={"Authorization": "Bearer out-token", "Content-Type": OCTETS},
                )
            return Response(answer.content, answer.status_code, media_type=OCTETS)

        settings = replace(Settings(), packet_timeout_ms=packet_timeout_ms)
        database_url = await make_database()
        async with (
            next_hop(slow_bob) as hop,
            running_connector(
                database_url, redis_server_url, redis_prefix, hop_endpoint=hop, settings=settings
            ) as connector,
        ):
            async with bob.pool.acquire() as conn:
                incoming = await create_incoming_payment(conn, bob.rita, bob.usd, 200)
            sam = await sender_wallet(connector.pool, connector.seeded.usd)
            payment = await create_payment(
                connector.pool, wallet=sam, asset=connector.seeded.usd,
                receiver=f"{bob.url}/rita/incoming-payments/{incoming}", debit=200, receive=200,
                max_packet=100,
            )  # fmt: skip
            row = await wait_for_state(connector.pool, payment, "COMPLETED", "FAILED")
            assert row["state"] == "COMPLETED", row["error"]
            paid_out = await connector.pool.fetchval(
                "SELECT count(*) FROM ledger_transfers WHERE code = $1", LATE_POST_CODE
            )
            assert paid_out > 0  # the holds did expire before their Fulfills
            assert await balance(connector.pool, AccountKind.OUTGOING_PAYMENT, payment) == 0
            peer_bob = connector.seeded.peers["bob"]
            assert await balance(connector.pool, AccountKind.PEER_LIQUIDITY, peer_bob) == 200
            [event] = await events_of(connector.pool, payment)
            assert event["type"] == "outgoing_payment.completed"
            assert event["withdrawal_amount"] is None
            status, output = await ledger_check(database_url)
            assert status == 0, output


async def test_on_tigerbeetle_a_forwarded_packet_whose_hold_expires_first_is_booked_once(
    tmp_path: Path,
    database_url: str,
    redis_server_url: str,
    redis_prefix: str,
    redis: Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As the first test, on TigerBeetle, whose holds last whole seconds: a 1 s hold (expired by
    TigerBeetle within about a second more), and a next hop that takes 3 s to fulfill."""
    short_holds(monkeypatch, PACKET_TIMEOUT_MS)

    async def slower_hop(request: Request) -> Response:
        await request.body()
        await asyncio.sleep(3.0)
        return Response(encode_packet(Fulfill(PREIMAGE, b"ok")), media_type=OCTETS)

    async with (
        next_hop(slower_hop) as hop,
        running_connector(
            database_url, redis_server_url, redis_prefix, hop_endpoint=hop,
            tigerbeetle_dir=tmp_path,
        ) as connector,
    ):  # fmt: skip
        reply = await connector.send(long_prepare(100))
        assert isinstance(reply, Fulfill)
        alice, bob = connector.seeded.peers["alice"], connector.seeded.peers["bob"]
        assert await connector.balance(AccountKind.PEER_LIQUIDITY, alice) == 10_000 - 100
        assert await connector.balance(AccountKind.PEER_LIQUIDITY, bob) == 100
        ledger = connector.ledger
        assert ledger is not None
        booked = await ledger.transfers_of(account_id_for(AccountKind.PEER_LIQUIDITY, bob))
        assert [(t.code, t.state) for t in booked] == [
            ("TRANSFER", TransferState.EXPIRED),
            (LATE_POST_CODE, TransferState.POSTED),
        ]
        assert booked[1].id == late_transfer_id(booked[0].id)
        assert connector.node is not None
        assert await redis.llen(connector.node.owed.key) == 0
        assert [r for r in await ledger.check() if not r.ok] == []
