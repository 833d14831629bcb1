"""Quoting and paying another node's incoming payment over Open Payments: the connector reads it
with a grant of that node's authorization server and streams to the ``ilp`` method its resource
server returns (a STREAM receiver behind the next hop here); a resource server that misbehaves
is an invalid receiver for a quote and a FAILED payment, within the receiver read bounds."""

from __future__ import annotations

import base64
import os
import time
import uuid
from dataclasses import replace

from starlette.requests import Request
from starlette.responses import Response
from tests.connector.harness import Connector, next_hop, running_connector
from tests.connector.test_connector_send import assert_books_balance, create_payment, sender_wallet
from tests.connector.test_connector_send import wait_for_state as wait_payment
from tests.openpayments.other_node import STEPS, OtherNode, other_node

from kiungo.config import Settings
from kiungo.ilp.packet import Fulfill, Reject, decode_prepare, encode_packet
from kiungo.openpayments.identity import node_identity
from kiungo.stream.receiver import IncomingMoney, StreamReceiver
from kiungo.stream.server import Asset, StreamServer

HONEST_TIMEOUT_MS = 10_000
"""RECEIVER_FETCH_TIMEOUT_MS where the other node answers at once (well or badly): ample for an
honest answer on a loaded machine, and more than any of those cases may take."""
HASTY_TIMEOUT_MS = 1_000
"""RECEIVER_FETCH_TIMEOUT_MS where a step of the other node is slow: the honest steps before it
(the public read, the grant) must still answer within it."""


def _settings(timeout_ms: int) -> Settings:
    return replace(
        Settings(), max_outgoing_payment_retry_attempts=0, receiver_fetch_timeout_ms=timeout_ms
    )


async def _refused_in_time(
    connector: Connector, other: OtherNode, sam: uuid.UUID, step: str, mode: str, bound: float
) -> None:
    """With ``step`` misbehaving as ``mode``, a quote is refused and a payment FAILED, each
    within ``bound`` seconds, each having reached that step (the steps before it answered)."""
    pool, usd = connector.pool, connector.seeded.usd
    other.modes = dict.fromkeys(STEPS, "ok") | {step: mode}
    hits = other.hits[step]
    started = time.monotonic()
    refused = await connector.client.post(
        f"{connector.url}/internal/quote",
        json={"receiver": other.add_payment(100), "assetCode": "USD", "assetScale": 2},
    )
    assert refused.status_code == 404, (step, mode, refused.text)
    assert refused.json()["code"] == "InvalidReceiver"
    assert time.monotonic() - started < bound, (step, mode)
    assert other.hits[step] > hits, (step, mode)
    hits = other.hits[step]
    started = time.monotonic()
    failing = await create_payment(
        pool, wallet=sam, asset=usd, receiver=other.add_payment(100), debit=100, receive=100
    )
    failed = await wait_payment(pool, failing, "COMPLETED", "FAILED", seconds=bound)
    assert failed["state"] == "FAILED" and failed["sent_amount"] == 0, (step, mode)
    assert "invalid receiver" in failed["error"], failed["error"]
    assert time.monotonic() - started < bound, (step, mode)
    assert other.hits[step] > hits, (step, mode)


async def test_another_nodes_incoming_payment_is_quoted_and_paid_on_its_ilp_method(
    database_url: str, redis_server_url: str, redis_prefix: str
) -> None:
    bob = StreamServer(os.urandom(32), "test.bobland.op")
    receiver = StreamReceiver(bob)
    received: dict[str, int] = {}

    async def hop(request: Request) -> Response:
        reply: Fulfill | Reject | IncomingMoney = receiver.receive(
            decode_prepare(await request.body())
        )
        if isinstance(reply, IncomingMoney):
            total = received.get(reply.connection_id, 0) + reply.amount
            received[reply.connection_id] = total
            reply = reply.accept(total)
        return Response(encode_packet(reply), media_type="application/octet-stream")

    def method(payment_id: str) -> dict[str, str]:
        credentials = bob.generate_credentials(payment_tag=payment_id, asset=Asset("USD", 2))
        secret = base64.urlsafe_b64encode(credentials.shared_secret).rstrip(b"=").decode()
        return {
            "type": "ilp",
            "ilpAddress": credentials.destination_account,
            "sharedSecret": secret,
        }

    settings = _settings(HONEST_TIMEOUT_MS)
    async with (
        next_hop(hop) as hop_url,
        other_node() as other,
        running_connector(
            database_url, redis_server_url, redis_prefix, hop_endpoint=hop_url, settings=settings
        ) as connector,
    ):
        assert connector.node is not None
        identity = node_identity(connector.node.settings)
        other.jwk, other.client, other.method = identity.jwk(), identity.wallet_address, method
        url = other.add_payment(700)

        quoted = await connector.client.post(
            f"{connector.url}/internal/quote",
            json={"receiver": url, "assetCode": "USD", "assetScale": 2},
        )
        assert quoted.status_code == 200, quoted.text
        answer = quoted.json()
        # The amounts and the credentials its resource server gave with a grant.
        assert (answer["incomingAmount"], answer["receivedAmount"]) == ("700", "0")
        assert answer["streamDestination"].startswith("test.bobland.op.")
        assert other.hits["grant"] == 1 and other.hits["read"] == 1

        seeded, pool = connector.seeded, connector.pool
        sam = await sender_wallet(pool, seeded.usd)
        paid = await create_payment(
            pool, wallet=sam, asset=seeded.usd, receiver=url, debit=700, receive=700
        )
        row = await wait_payment(pool, paid, "COMPLETED", "FAILED")
        assert row["state"] == "COMPLETED", row["error"]
        assert (row["sent_amount"], row["delivered_amount"]) == (700, 700)
        assert sum(received.values()) == 700
        assert other.hits["grant"] == 1  # the kept grant, in Redis

        # A resource server that answers badly: the quote refused, the payment FAILED, at
        # once (well before any read could time out).
        for step, mode in (("read", "garbage"), ("public", "huge")):
            await _refused_in_time(connector, other, sam, step, mode, HONEST_TIMEOUT_MS / 1000)
        await connector.settled()
        await assert_books_balance(pool)


async def test_another_nodes_slow_resource_server_is_an_invalid_receiver_in_bounded_time(
    database_url: str, redis_server_url: str, redis_prefix: str
) -> None:
    settings = _settings(HASTY_TIMEOUT_MS)
    async with (
        other_node() as other,
        running_connector(database_url, redis_server_url, redis_prefix, settings=settings) as c,
    ):
        assert c.node is not None
        identity = node_identity(c.node.settings)
        other.jwk, other.client = identity.jwk(), identity.wallet_address
        sam = await sender_wallet(c.pool, c.seeded.usd)
        # Open Payments and the SPSP fallback, each read bounded (the slow one answers after
        # 30 s), for the quote and for the payment.
        await _refused_in_time(c, other, sam, "read", "slow", 4 * HASTY_TIMEOUT_MS / 1000 + 3)
        await c.settled()
        await assert_books_balance(c.pool)
