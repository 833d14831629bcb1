"""Our STREAM sender paying our STREAM receiver through an in-process path.

The path behaves like a chain of connectors: it enforces a maximum packet amount (F08 with its
data), converts at an exact rate flooring the result, and can fail packets temporarily.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction

import pytest

from kiungo.ilp.errors import AmountTooLargeError
from kiungo.ilp.packet import Fulfill, Prepare, Reject
from kiungo.stream.receipt import create_receipt, verify_receipt
from kiungo.stream.receiver import IncomingMoney, StreamReceiver
from kiungo.stream.sender import PROBE_AMOUNTS, StreamSender
from kiungo.stream.sender_connection import (
    MAX_F08_REDUCTIONS,
    PaymentError,
    PaymentResult,
    RateProbe,
    minimum_exchange_rate,
)
from kiungo.stream.server import Asset, ReceiptSetup, StreamServer

CONNECTOR = "test.connector"
RECEIVER = "test.receiver"


@dataclass
class Path:
    receiver: StreamReceiver
    rate: Fraction = Fraction(1)
    max_packet: int | None = None
    fail_every: int = 0
    total_received: dict[str, int] = field(default_factory=dict)
    received_by_tag: dict[str | None, int] = field(default_factory=dict)
    prepares: int = 0
    decline: Callable[[IncomingMoney], Reject | None] | None = None

    async def send(self, prepare: Prepare) -> Fulfill | Reject:
        self.prepares += 1
        if self.fail_every and self.prepares % self.fail_every == 0:
            return Reject("T02", CONNECTOR, "busy", b"")
        if self.max_packet is not None and prepare.amount > self.max_packet:
            return AmountTooLargeError(prepare.amount, self.max_packet).to_reject(CONNECTOR)
        out = Prepare(
            int(prepare.amount * self.rate),
            prepare.expires_at,
            prepare.execution_condition,
            prepare.destination,
            prepare.data,
        )
        result = self.receiver.receive(out)
        if not isinstance(result, IncomingMoney):
            return result
        if self.decline is not None:
            declined = self.decline(result)
            if declined is not None:
                return declined
        total = self.total_received.get(result.connection_id, 0) + result.amount
        self.total_received[result.connection_id] = total
        tag = result.payment_tag
        self.received_by_tag[tag] = self.received_by_tag.get(tag, 0) + result.amount
        return result.accept(total)


def make_path(**kwargs: object) -> tuple[Path, StreamServer]:
    server = StreamServer(os.urandom(32), RECEIVER)
    return Path(StreamReceiver(server), **kwargs), server  # type: ignore[arg-type]


def make_sender(path: Path, server: StreamServer, **creds: object) -> StreamSender:
    credentials = server.generate_credentials(**creds)  # type: ignore[arg-type]
    return StreamSender(
        path.send,
        destination=credentials.destination_account,
        shared_secret=credentials.shared_secret,
        source_address="test.sender",
        source_asset=Asset("USD", 2),
        sleep=_no_sleep,
    )


async def _no_sleep(_: float) -> None:
    return None


async def test_fixed_source_payment_split_by_f08_delivers_exactly() -> None:
    path, server = make_path(max_packet=300)
    sender = make_sender(path, server, payment_tag="invoice-1")
    result = await sender.pay(source_amount=1000)
    assert result.error is None
    assert result.amount_sent == 1000
    assert result.amount_delivered == 1000
    assert path.received_by_tag == {"invoice-1": 1000}
    assert result.packets_fulfilled == 4


async def test_probe_finds_rate_bounds_and_max_packet_amount() -> None:
    path, server = make_path(rate=Fraction(9, 10), max_packet=123_456)
    sender = make_sender(path, server, asset=Asset("EUR", 2))
    probe = await sender.probe()
    assert probe.max_packet_amount == 123_456
    assert probe.lower_rate <= Fraction(9, 10) < probe.upper_rate
    assert probe.destination_asset == Asset("EUR", 2)


async def test_paying_on_an_earlier_probe_sends_no_probe_packets() -> None:
    path, server = make_path(rate=Fraction(9, 10), max_packet=100)
    sender = make_sender(path, server, asset=Asset("EUR", 2))
    sender.assume(RateProbe(Fraction(9, 10), Fraction(91, 100), 100, Asset("EUR", 2)))
    result = await sender.pay(delivery_amount=450, min_exchange_rate=Fraction(891, 1000))
    assert result.error is None
    assert (result.amount_sent, result.amount_delivered) == (500, 450)
    assert path.prepares == 5  # five packets of 100, no probe


async def test_paying_on_an_earlier_probe_stops_at_a_receiver_in_another_asset() -> None:
    path, server = make_path(rate=Fraction(9, 10), max_packet=100)
    sender = make_sender(path, server, asset=Asset("GBP", 2))
    sender.assume(RateProbe(Fraction(9, 10), Fraction(91, 100), 100, Asset("EUR", 2)))
    result = await sender.pay(delivery_amount=450, min_exchange_rate=Fraction(891, 1000))
    assert result.error is not None and "GBP" in str(result.error)
    # The first packet (alone until the receiver has answered) told the asset; it was
    # fulfilled and is counted, and nothing more went.
    assert path.prepares == 1
    assert (result.amount_sent, result.amount_delivered) == (100, 90)


async def test_fixed_delivery_payment_delivers_at_least_the_amount_cross_currency() -> None:
    path, server = make_path(rate=Fraction(3, 2), max_packet=1000)
    sender = make_sender(path, server)
    result = await sender.pay(delivery_amount=4500)
    assert result.error is None
    assert result.amount_delivered == 4500
    assert result.amount_sent == 3000


async def test_a_small_last_packet_is_not_lost_to_rounding_against_the_minimum_rate() -> None:
    # 0.9 per unit with 1 % slippage: the last unit owed needs 2 units sent, which arrive as 1;
    # ceil(2 × 0.891) = 2 would refuse it although the path is exactly at the quoted rate.
    path, server = make_path(rate=Fraction(9, 10), max_packet=10)
    sender = make_sender(path, server)
    min_rate = Fraction(9, 10) * Fraction(99, 100)
    result = await sender.pay(delivery_amount=1000, min_exchange_rate=min_rate)
    assert result.error is None
    assert result.amount_delivered == 1000
    assert result.amount_sent <= 1112  # ceil(1000 / 0.9) plus nothing lost


async def test_the_minimum_rate_still_binds_a_small_packet_to_within_one_unit() -> None:
    # A path far below the minimum: even the rounding allowance refuses it.
    path, server = make_path(rate=Fraction(1, 2), max_packet=10)
    sender = make_sender(path, server)
    await sender.probe()
    result = await sender.pay(source_amount=2, min_exchange_rate=Fraction(9, 10))
    assert isinstance(result.error, PaymentError)
    assert path.total_received == {}


async def test_minimum_rate_violation_stops_the_payment() -> None:
    path, server = make_path(rate=Fraction(1, 2))
    sender = make_sender(path, server)
    min_rate = minimum_exchange_rate(Fraction(1), Fraction(1, 100), 2, 2)
    result = await sender.pay(source_amount=100, min_exchange_rate=min_rate)
    assert isinstance(result.error, PaymentError)
    assert result.amount_sent == 0
    assert path.total_received == {}


async def test_temporary_errors_are_retried() -> None:
    path, server = make_path(max_packet=100, fail_every=3)
    sender = make_sender(path, server)
    result = await sender.pay(source_amount=1000)
    assert result.error is None
    assert result.amount_delivered == 1000


async def test_receipts_are_collected_and_verify() -> None:
    secret = os.urandom(32)
    nonce = os.urandom(16)
    path, server = make_path(max_packet=250)
    sender = make_sender(path, server, receipt_setup=ReceiptSetup(nonce, secret))
    result = await sender.pay(source_amount=1000)
    assert result.error is None
    assert result.latest_receipt is not None
    totals = sorted(verify_receipt(r, secret).total_received for r in result.receipts)
    assert totals[-1] == 1000
    assert verify_receipt(result.latest_receipt, secret).nonce == nonce


def test_the_latest_receipt_is_the_one_for_the_most_received() -> None:
    # Replies to concurrent packets arrive in any order: the last one in may be older.
    secret, nonce = os.urandom(32), os.urandom(16)
    receipts = [create_receipt(nonce, 1, total, secret) for total in (300, 1000, 900)]
    result = PaymentResult(receipts=[b"not a receipt", *receipts, b"\x01" * 3])
    assert result.latest_receipt == receipts[1]
    assert PaymentResult(receipts=[b"junk"]).latest_receipt is None
    assert PaymentResult().latest_receipt is None


async def test_final_decline_ends_the_payment() -> None:
    path, server = make_path(max_packet=100)
    path.decline = lambda money: money.decline_finally()
    sender = make_sender(path, server)
    result = await sender.pay(source_amount=1000)
    assert isinstance(result.error, PaymentError)
    assert result.amount_delivered == 0


async def test_close_is_answered_with_f99_by_the_receiver() -> None:
    path, server = make_path()
    sender = make_sender(path, server)
    await sender.close()
    assert sender.closed
    assert path.prepares == 1


@dataclass
class ShrinkingPath:
    """A receiver that answers every packet F08(received=a, max=a - 1): each answer names a
    size one unit below the packet's. It gives up (F06, final) after ``limit`` packets so that
    a sender that does not converge fails this test instead of running for hours."""

    limit: int = 5_000
    prepares: int = 0

    async def send(self, prepare: Prepare) -> Fulfill | Reject:
        self.prepares += 1
        if self.prepares > self.limit:
            return Reject("F06", RECEIVER, "test limit reached", b"")
        return AmountTooLargeError(prepare.amount, prepare.amount - 1).to_reject(RECEIVER)


def _shrinking_sender(path: ShrinkingPath) -> StreamSender:
    return StreamSender(
        path.send,
        destination=f"{RECEIVER}.x",
        shared_secret=os.urandom(32),
        source_address="test.sender",
        source_asset=Asset("USD", 2),
        sleep=_no_sleep,
    )


async def test_a_receiver_shrinking_every_packet_by_one_unit_fails_the_payment_quickly() -> None:
    path = ShrinkingPath()
    sender = _shrinking_sender(path)
    sender.assume(RateProbe(Fraction(1), Fraction(2), 10**9, Asset("USD", 2)))
    result = await sender.pay(delivery_amount=10**9)
    assert result.error is not None and result.error.code == "F08"
    assert "no progress" in str(result.error)
    assert path.prepares <= MAX_F08_REDUCTIONS + 1
    assert result.amount_sent == 0


async def test_a_probe_shrunk_by_one_unit_at_a_time_gives_up_quickly() -> None:
    path = ShrinkingPath()
    sender = _shrinking_sender(path)
    with pytest.raises(PaymentError, match="no progress"):
        await sender.probe()
    assert path.prepares <= len(PROBE_AMOUNTS) + 1 + MAX_F08_REDUCTIONS


async def test_f08_reductions_are_counted_only_until_a_packet_gets_through() -> None:
    # More reductions in all than the limit, but a packet gets through after each one.
    sizes = [10**k for k in range(18, 0, -1)]
    assert len(sizes) > MAX_F08_REDUCTIONS + 1
    path, server = make_path(max_packet=sizes[0])
    credentials = server.generate_credentials()
    shrinking = iter(sizes[1:])

    async def hop(prepare: Prepare) -> Fulfill | Reject:
        reply = await path.send(prepare)
        if isinstance(reply, Fulfill):
            path.max_packet = next(shrinking, path.max_packet)  # the next one meets less
        return reply

    sender = StreamSender(
        hop,
        destination=credentials.destination_account,
        shared_secret=credentials.shared_secret,
        source_address="test.sender",
        source_asset=Asset("USD", 2),
        max_in_flight=1,
        sleep=_no_sleep,
    )
    sender.assume(RateProbe(Fraction(1), Fraction(2), sizes[0], Asset("USD", 2)))
    result = await sender.pay(source_amount=sum(sizes))
    assert result.error is None, result.error
    assert result.amount_sent == sum(sizes)
    assert path.prepares < 2 * len(sizes)  # each size: at most one F08, then a Fulfill
