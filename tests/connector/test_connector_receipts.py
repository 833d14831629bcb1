"""STREAM receipts through the connector: a receipt never counts more than was credited.

Receipts (RFC 39) are proof of payment for Web Monetization verifiers, so a packet is counted
in its connection's total only once its Fulfill is going out and its money will be posted:
never a packet whose sender hung up before the reply, never one the ledger declined.
"""

from __future__ import annotations

import asyncio
import base64
import os
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from tests.connector.harness import (
    Connector,
    create_incoming_payment,
)

from kiungo.ilp.packet import Fulfill, Prepare, Reject, encode_packet
from kiungo.ledger import AccountKind, account_id_for
from kiungo.spsp import SpspResponse
from kiungo.stream.crypto import StreamKeys
from kiungo.stream.packet import (
    StreamMoneyFrame,
    StreamPacket,
    StreamReceiptFrame,
    decode_stream_packet,
    encode_stream_packet,
)
from kiungo.stream.receipt import verify_receipt


class ReceiptConnection:
    """One STREAM connection to a receiver of the connector, opened over SPSP with receipts."""

    def __init__(self, credentials: SpspResponse, receipt_secret: bytes) -> None:
        self.destination = credentials.destination_account
        self.keys = StreamKeys(credentials.shared_secret)
        self.receipt_secret = receipt_secret
        self.sequence = 0

    @classmethod
    async def open(cls, connector: Connector, path: str) -> ReceiptConnection:
        nonce, secret = os.urandom(16), os.urandom(32)
        response = await connector.client.get(
            f"{connector.url}{path}",
            headers={
                "Accept": "application/spsp4+json",
                "Receipt-Nonce": base64.b64encode(nonce).decode(),
                "Receipt-Secret": base64.b64encode(secret).decode(),
            },
        )
        assert response.status_code == 200, response.text
        return cls(SpspResponse.from_json(response.json()), secret)

    def prepare(self, amount: int) -> Prepare:
        self.sequence += 1
        packet = StreamPacket(self.sequence, 12, 0, [StreamMoneyFrame(1, 1)])
        data = self.keys.encrypt(encode_stream_packet(packet))
        expires = datetime.now(UTC) + timedelta(seconds=30)
        return Prepare(amount, expires, self.keys.condition(data), self.destination, data)

    def receipt_total(self, reply: Fulfill) -> int:
        stream = decode_stream_packet(self.keys.decrypt(reply.data))
        receipt = next(f for f in stream.frames if isinstance(f, StreamReceiptFrame))
        return verify_receipt(receipt.receipt, self.receipt_secret).total_received


async def send_and_hang_up(connector: Connector, prepare: Prepare) -> None:
    """POST the Prepare over a socket of its own and close it at once, without the reply."""
    parts = urlsplit(connector.url)
    assert parts.hostname is not None and parts.port is not None
    body = encode_packet(prepare)
    _, writer = await asyncio.open_connection(parts.hostname, parts.port)
    writer.write(
        b"POST /ilp HTTP/1.1\r\nHost: connector\r\nAuthorization: Bearer alice-token\r\n"
        b"Content-Type: application/octet-stream\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    await writer.drain()
    writer.close()
    await writer.wait_closed()


async def transfer_states(connector: Connector, account: uuid.UUID) -> list[str]:
    if connector.ledger is not None:
        transfers = await connector.ledger.transfers_of(account)
        return sorted(t.state.value for t in transfers if t.credit_account_id == account)
    async with connector.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT state FROM ledger_transfers WHERE credit_account_id = $1", account
        )
    return sorted(row["state"] for row in rows)


async def test_prepares_whose_sender_hangs_up_count_in_no_receipt(
    connector_on_each_backend: Connector,
) -> None:
    connector = connector_on_each_backend
    carol = connector.seeded.wallets["carol"]
    carol_account = account_id_for(AccountKind.WALLET_ADDRESS, carol)
    connection = await ReceiptConnection.open(connector, "/carol")
    hung_up = 10
    for _ in range(hung_up):
        await send_and_hang_up(connector, connection.prepare(100))
    # Each of them was held, then voided at once (not left to expire after RECEIVE_HOLD, 5 s)
    # or, had the connector not seen the hang-up in time, fulfilled and posted.
    states: list[str] = []
    for _ in range(150):
        states = await transfer_states(connector, carol_account)
        if len(states) == hung_up and "PENDING" not in states:
            break
        await asyncio.sleep(0.02)
    assert len(states) == hung_up and "PENDING" not in states, states
    assert "VOIDED" in states, states  # the hang-ups were seen: the test tests something

    reply = await connector.send(connection.prepare(7))
    assert isinstance(reply, Fulfill), reply
    await connector.settled()
    credited = await connector.balance(AccountKind.WALLET_ADDRESS, carol)
    assert connection.receipt_total(reply) == credited
    assert credited == 7 + 100 * states.count("POSTED")


async def test_a_packet_the_ledger_declines_counts_in_no_concurrent_receipt(
    connector_on_each_backend: Connector,
) -> None:
    connector = connector_on_each_backend
    carol = connector.seeded.wallets["carol"]
    async with connector.pool.acquire() as conn:
        payment = await create_incoming_payment(conn, carol, connector.seeded.usd, 100)
    path = f"/carol/incoming-payments/{payment}"
    rounds = 20
    for _ in range(rounds):
        # On a new connection each round: one packet more than the payment can still take,
        # and one that fits, at once; the first is declined by the payment's credit limit.
        connection = await ReceiptConnection.open(connector, path)
        too_much, fits = connection.prepare(1000), connection.prepare(1)
        declined, accepted = await asyncio.gather(connector.send(too_much), connector.send(fits))
        assert isinstance(declined, Reject) and declined.code == "F99", declined
        assert isinstance(accepted, Fulfill), accepted
        assert connection.receipt_total(accepted) == 1
    await connector.settled()
    assert await connector.balance(AccountKind.INCOMING_PAYMENT, payment) == rounds
