"""``sentAmount`` while a payment is SENDING, observed mid-flight on a whole node: its peer bob
is played here by a STREAM receiver that takes packets of at most ``MAX_PACKET``, fulfils the
first ``FREE`` paying packets and holds the rest until released. The admin API's
``OutgoingPayment.sentAmount`` and the Open Payments ``sentAmount`` (read and list) agree with
what the packets fulfilled so far debited, even when the worker's progress write is lost (the
ledger is the truth, as Rafiki's ``getTotalSent``), and with the row's figure once it ends."""

from __future__ import annotations

import asyncio
import base64
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from tests.loopback import serve
from tests.openpayments.resource_harness import OpNode, running_op_node
from tests.openpayments.test_outgoing_payments_rs import DEPOSIT, usd, wait_state

from kiungo.ilp.errors import AmountTooLargeError
from kiungo.ilp.packet import Fulfill, Reject, decode_prepare, encode_packet
from kiungo.stream.receiver import IncomingMoney, StreamReceiver
from kiungo.stream.server import Asset, StreamServer

MAX_PACKET = 100
FREE = 3
AMOUNT = 1000


class SlowReceiver:
    """Bob's end of the peer link: a STREAM receiver at ``test.bobland.slow`` (SPSP at
    ``/pay``) that holds every paying packet after the first ``FREE`` until ``release``."""

    def __init__(self) -> None:
        self.server = StreamServer(os.urandom(32), "test.bobland.slow")
        self.receiver = StreamReceiver(self.server)
        self.let_through = 0
        self.held = 0
        self.received = 0
        self.release = asyncio.Event()

    async def ilp(self, request: Request) -> Response:
        prepare = decode_prepare(await request.body())
        reply: Fulfill | Reject
        if prepare.amount > MAX_PACKET:
            reply = AmountTooLargeError(prepare.amount, MAX_PACKET).to_reject("test.bob")
        else:
            result = self.receiver.receive(prepare)
            if isinstance(result, IncomingMoney):
                if self.let_through >= FREE:
                    self.held += 1
                    await self.release.wait()
                else:
                    self.let_through += 1
                self.received += result.amount
                result = result.accept(self.received)
            reply = result
        return Response(encode_packet(reply), media_type="application/octet-stream")

    async def spsp(self, request: Request) -> Response:
        credentials = self.server.generate_credentials(asset=Asset("USD", 2))
        return JSONResponse(
            {
                "destination_account": credentials.destination_account,
                "shared_secret": base64.b64encode(credentials.shared_secret).decode(),
            },
            media_type="application/spsp4+json",
        )


@dataclass
class Path:
    node: OpNode
    bob: SlowReceiver
    receiver: str


@pytest.fixture(name="path")
async def path_fixture(postgres_server_url: str, redis_server_url: str) -> AsyncIterator[Path]:
    bob = SlowReceiver()
    app = Starlette(
        routes=[Route("/ilp", bob.ilp, methods=["POST"]), Route("/pay", bob.spsp, methods=["GET"])]
    )
    async with (
        serve(app) as bob_url,
        running_op_node(
            postgres_server_url, redis_server_url, hop_endpoint=f"{bob_url}/ilp"
        ) as node,
    ):
        try:
            yield Path(node, bob, f"{bob_url}/pay")
        finally:
            bob.release.set()  # nothing stays held while the node stops


SENT = "query($id: String!) { outgoingPayment(id: $id) { state sentAmount { value } liquidity } }"


async def admin_view(node: OpNode, payment_id: str) -> tuple[str, int, int]:
    """(state, sentAmount, liquidity) as the admin API shows them."""
    data = (await node.admin.data(SENT, {"id": payment_id}))["outgoingPayment"]
    return data["state"], int(data["sentAmount"]["value"]), int(data["liquidity"])


async def test_sent_amount_is_what_the_fulfilled_packets_debited_while_sending(
    path: Path,
) -> None:
    node, bob = path.node, path.bob
    alice = await node.client()
    quoted = await node.admin.data(
        "mutation($input: CreateQuoteInput!) { createQuote(input: $input) { quote { id } } }",
        {
            "input": {
                "walletAddressId": alice.wallet_id,
                "receiver": path.receiver,
                "debitAmount": usd(AMOUNT),
            }
        },
    )
    created = await node.admin.data(
        "mutation($input: CreateOutgoingPaymentInput!) "
        "{ createOutgoingPayment(input: $input) { payment { id } } }",
        {
            "input": {
                "walletAddressId": alice.wallet_id,
                "quoteId": quoted["createQuote"]["quote"]["id"],
            }
        },
    )
    payment_id = created["createOutgoingPayment"]["payment"]["id"]
    token = (
        await alice.interactive_grant(
            [
                {
                    "type": "outgoing-payment",
                    "actions": ["read-all", "list-all"],
                    "identifier": alice.url,
                }
            ]
        )
    )["value"]
    payment_url = f"{node.url}/outgoing-payments/{payment_id}"
    listing = f"{node.url}/outgoing-payments?wallet-address={alice.url}"

    async def open_payments_views() -> list[int]:
        read = await alice.send("GET", payment_url, token=token)
        assert read.status_code == 200, read.text
        listed = await alice.send("GET", listing, token=token)
        assert listed.status_code == 200, listed.text
        (item,) = listed.json()["result"]
        assert item["id"] == payment_url
        return [int(read.json()["sentAmount"]["value"]), int(item["sentAmount"]["value"])]

    assert await admin_view(node, payment_id) == ("FUNDING", 0, 0)
    assert await open_payments_views() == [0, 0]
    await node.admin.data(
        DEPOSIT, {"input": {"outgoingPaymentId": payment_id, "idempotencyKey": str(uuid.uuid4())}}
    )
    # Mid-flight: FREE packets fulfilled, the rest held at bob.
    fulfilled = FREE * MAX_PACKET
    deadline = asyncio.get_running_loop().time() + 60
    while (await admin_view(node, payment_id))[1] < fulfilled or not bob.held:
        assert asyncio.get_running_loop().time() < deadline, (bob.held, bob.received)
        await asyncio.sleep(0.05)
    assert (await admin_view(node, payment_id))[:2] == ("SENDING", fulfilled)
    assert await open_payments_views() == [fulfilled, fulfilled]
    # The worker's progress write lost (as when it dies): the ledger still tells.
    await node.pool.execute(
        "UPDATE outgoing_payments SET sent_amount = 0 WHERE id = $1", uuid.UUID(payment_id)
    )
    assert (await admin_view(node, payment_id))[1] == fulfilled
    assert await open_payments_views() == [fulfilled, fulfilled]

    bob.release.set()
    await wait_state(node, payment_id, "COMPLETED", seconds=60)
    assert await admin_view(node, payment_id) == ("COMPLETED", AMOUNT, 0)
    assert await open_payments_views() == [AMOUNT, AMOUNT]
    assert bob.received == AMOUNT
    row = await node.pool.fetchval(
        "SELECT sent_amount FROM outgoing_payments WHERE id = $1", uuid.UUID(payment_id)
    )
    assert row == AMOUNT
