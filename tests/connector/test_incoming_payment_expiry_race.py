"""A packet racing an incoming payment's expiry (real connector over HTTP, the backend's expiry
job, real Postgres and Redis): the packet is either credited before the EXPIRED event's amount
is read, or refused; never credited after it."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

from redis.asyncio import Redis
from tests.connector.harness import (
    Connector,
    create_incoming_payment,
    running_connector,
)

from kiungo.backend.context import Backend
from kiungo.backend.workers import expire_incoming_payments
from kiungo.config import Settings
from kiungo.ilp.packet import Fulfill, Prepare, Reject
from kiungo.ledger import AccountKind, Ledger, account_id_for
from kiungo.spsp import SpspResponse
from kiungo.stream.crypto import StreamKeys
from kiungo.stream.packet import StreamMoneyFrame, StreamPacket, encode_stream_packet

EXPIRES_IN = 2.5
"""Seconds: the payment's expiry, after both packets have been let in (the SPSP read, the first
packet and its post, and the second packet's admission all fit before it on a loaded machine;
1.5 s left little room)."""


async def stream_prepare(credentials: SpspResponse, sequence: int, amount: int) -> Prepare:
    keys = StreamKeys(credentials.shared_secret)
    data = keys.encrypt(
        encode_stream_packet(StreamPacket(sequence, 12, 0, [StreamMoneyFrame(1, 1)]))
    )
    expires = datetime.now(UTC) + timedelta(seconds=30)
    return Prepare(amount, expires, keys.condition(data), credentials.destination_account, data)


async def test_a_packet_racing_the_expiry_lands_before_the_expired_event_or_is_refused(
    database_url: str, redis_server_url: str, redis_prefix: str, redis: Redis
) -> None:
    async with running_connector(database_url, redis_server_url, redis_prefix) as connector:
        await race(connector, redis, redis_prefix)


async def race(connector: Connector, redis: Redis, redis_prefix: str) -> None:
    seeded, pool = connector.seeded, connector.pool
    async with pool.acquire() as conn:
        payment = await create_incoming_payment(
            conn, seeded.wallets["carol"], seeded.usd, None, timedelta(seconds=EXPIRES_IN)
        )
    expires_at = datetime.now(UTC) + timedelta(seconds=EXPIRES_IN)
    response = await connector.client.get(
        f"{connector.url}/carol/incoming-payments/{payment}",
        headers={"Accept": "application/spsp4+json"},
    )
    assert response.status_code == 200, response.text
    credentials = SpspResponse.from_json(response.json())
    assert isinstance(await connector.send(await stream_prepare(credentials, 1, 100)), Fulfill)
    await connector.settled()
    account = account_id_for(AccountKind.INCOMING_PAYMENT, payment)

    # The second packet is let in before the expiry, but the ledger's writer only gets to its
    # hold after it (held up here by a lock on the payment's account, as by a backlog).
    async with pool.acquire() as blocker:
        transaction = blocker.transaction()
        await transaction.start()
        await blocker.execute("SELECT 1 FROM ledger_accounts WHERE id = $1 FOR UPDATE", account)
        late = asyncio.create_task(connector.send(await stream_prepare(credentials, 2, 50)))
        await asyncio.sleep(max(0.0, (expires_at - datetime.now(UTC)).total_seconds()) + 0.3)
        assert not late.done()
        async with Ledger(pool) as ledger:
            backend = Backend(Settings(redis_key_prefix=redis_prefix), pool, ledger, redis)
            try:
                expiring = asyncio.create_task(expire_incoming_payments(backend))
                await asyncio.sleep(0.3)
                await transaction.commit()
                reply = await late
                await expiring
                await connector.settled()
                # Whatever the order, the payment is EXPIRED by a later round at the latest.
                for _ in range(50):
                    async with pool.acquire() as conn:
                        state = await conn.fetchval(
                            "SELECT state FROM incoming_payments WHERE id = $1", payment
                        )
                    if state == "EXPIRED":
                        break
                    await expire_incoming_payments(backend)
                    await asyncio.sleep(0.05)
                assert state == "EXPIRED"
            finally:
                await backend.close()

    credited = await connector.balance(AccountKind.INCOMING_PAYMENT, payment)
    assert credited == (150 if isinstance(reply, Fulfill) else 100)
    if isinstance(reply, Reject):
        assert reply.code.startswith("F")
    async with pool.acquire() as conn:
        events = await conn.fetch(
            "SELECT type, data, withdrawal_amount FROM webhook_events WHERE resource_id = $1",
            payment,
        )
        received = await conn.fetchval(
            "SELECT received_amount FROM incoming_payments WHERE id = $1", payment
        )
    [event] = events
    assert event["type"] == "incoming_payment.expired"
    # The event offers everything that was credited: nothing landed after it.
    assert int(event["withdrawal_amount"]) == credited == int(received)
    assert json.loads(event["data"])["withdrawal"]["amount"] == str(credited)
