"""Our STREAM sender pays @interledger/stream-receiver and the ilp-protocol-stream server."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from fractions import Fraction

import httpx
import pytest
from tests.interop.node import NodeProcess, node_script

from kiungo.ilp.errors import AmountTooLargeError
from kiungo.ilp.packet import Fulfill, Prepare, Reject, decode_reply, encode_packet
from kiungo.spsp import query
from kiungo.stream.receipt import verify_receipt
from kiungo.stream.sender import StreamSender
from kiungo.stream.server import Asset

pytestmark = pytest.mark.interop

HOP = "test.kiungo.connector"
MAX_PACKET = 300


def connector_hop(
    client: httpx.AsyncClient, ilp_url: str
) -> Callable[[Prepare], Awaitable[Fulfill | Reject]]:
    """What a connector in front of the receiver does with our packets: F08 above 300, else
    ILP-over-HTTP to the receiver."""

    async def send(prepare: Prepare) -> Fulfill | Reject:
        if prepare.amount > MAX_PACKET:
            return AmountTooLargeError(prepare.amount, MAX_PACKET).to_reject(HOP)
        response = await client.post(
            ilp_url,
            content=encode_packet(prepare),
            headers={"Content-Type": "application/octet-stream"},
        )
        response.raise_for_status()
        return decode_reply(response.content)

    return send


@pytest.fixture(params=["stream_receiver.js", "stream_server.js"])
async def js_receiver(request: pytest.FixtureRequest) -> AsyncIterator[tuple[NodeProcess, str]]:
    args = ("--address", "test.js.receiver", "--asset-code", "USD", "--asset-scale", "2")
    async with node_script(request.param, *args) as node:
        ready = await node.read()
        yield node, f"http://127.0.0.1:{ready['port']}"


@contextlib.asynccontextmanager
async def sender_to(
    url: str, receipts: tuple[bytes, bytes] | None = None
) -> AsyncIterator[StreamSender]:
    """A sender on a connection set up over SPSP, closed on exit."""
    nonce, secret = receipts if receipts else (None, None)
    async with httpx.AsyncClient() as client:
        credentials = await query(
            f"{url}/spsp", client=client, receipt_nonce=nonce, receipt_secret=secret
        )
        sender = StreamSender(
            connector_hop(client, f"{url}/ilp"),
            destination=credentials.destination_account,
            shared_secret=credentials.shared_secret,
            source_address="test.kiungo.sender",
            source_asset=Asset("USD", 2),
        )
        yield sender
        await sender.close()


async def test_we_pay_1000_split_by_f08_and_the_js_receiver_agrees(
    js_receiver: tuple[NodeProcess, str],
) -> None:
    node, url = js_receiver
    async with sender_to(url) as sender:
        result = await sender.pay(source_amount=1000, min_exchange_rate=Fraction(99, 100))
    assert result.error is None, result
    assert result.amount_sent == 1000
    assert result.amount_delivered == 1000
    assert (await node.command("total"))["totalReceived"] == "1000"


async def test_the_probe_finds_the_packet_limit_and_the_rate(
    js_receiver: tuple[NodeProcess, str],
) -> None:
    node, url = js_receiver
    async with sender_to(url) as sender:
        probe = await sender.probe()
    assert probe.max_packet_amount == MAX_PACKET
    assert probe.lower_rate <= 1 < probe.upper_rate
    assert probe.destination_asset == Asset("USD", 2)
    assert (await node.command("total"))["totalReceived"] == "0"


async def test_receipts_from_stream_receiver_verify_for_what_we_delivered() -> None:
    nonce, secret = os.urandom(16), os.urandom(32)
    args = ("--address", "test.js.receiver", "--asset-code", "USD", "--asset-scale", "2")
    async with node_script("stream_receiver.js", *args) as node:
        ready = await node.read()
        async with sender_to(f"http://127.0.0.1:{ready['port']}", (nonce, secret)) as sender:
            result = await sender.pay(source_amount=1000)
    assert result.error is None
    assert result.receipts
    assert result.latest_receipt is not None
    latest = verify_receipt(result.latest_receipt, secret)
    assert (latest.nonce, latest.total_received) == (nonce, 1000)
