"""The packet level of the STREAM sender (:mod:`kiungo.stream.sender`), and what a payment
comes to.

:class:`SenderConnection` is one STREAM connection from us to a receiver: its keys, sequence
numbers and what it has learnt of the path. It builds one encrypted Prepare, exchanges it over
the ``send`` coroutine and opens the reply (an authentic one tells what arrived, and the first
one the receiver's asset); it keeps the rate bounds each reply implies and shrinks the packet
size on F08 (at most :data:`MAX_F08_REDUCTIONS` times in a row without a packet getting
through); it sizes the next packet and the least it may deliver, and books each reply of a
payment into its :class:`PaymentResult` (amounts, packets, receipts) or ends the payment with a
:class:`PaymentError`. :class:`kiungo.stream.sender.StreamSender` builds the probe, the payment
loop and the close on it.

Also here: :class:`RateProbe` (what a probe learnt) and :func:`minimum_exchange_rate`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from fractions import Fraction

from kiungo.ilp.errors import decode_amount_too_large_data
from kiungo.ilp.oer import MAX_UINT64, DecodeError
from kiungo.ilp.packet import Fulfill, PacketType, Prepare, Reject, fulfillment_matches
from kiungo.stream.crypto import DecryptionError, StreamKeys, random_condition
from kiungo.stream.packet import (
    ConnectionAssetDetailsFrame,
    ConnectionCloseFrame,
    ConnectionNewAddressFrame,
    Frame,
    StreamCloseFrame,
    StreamPacket,
    StreamReceiptFrame,
    decode_stream_packet,
    encode_stream_packet,
)
from kiungo.stream.receipt import ReceiptError, decode_receipt
from kiungo.stream.server import Asset

__all__ = [
    "MAX_F08_REDUCTIONS",
    "STREAM_ID",
    "PaymentError",
    "PaymentResult",
    "RateProbe",
    "Reply",
    "SendFunction",
    "SenderConnection",
    "minimum_exchange_rate",
]

SendFunction = Callable[[Prepare], Awaitable[Fulfill | Reject]]

STREAM_ID = 1
MAX_F08_REDUCTIONS = 16
"""Packet size reductions (F08) in a row without any packet getting through before the payment
fails. An honest path needs one per hop whose maximum is below ours, and a few more when its
rate moves between packets."""


class PaymentError(Exception):
    """The payment (or probe) cannot go on; ``code`` names the ILP or STREAM reason."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class RateProbe:
    """What the probe learned: rate bounds in destination units per source unit, packet size."""

    lower_rate: Fraction
    upper_rate: Fraction
    max_packet_amount: int
    destination_asset: Asset | None


@dataclass(slots=True)
class PaymentResult:
    amount_sent: int = 0
    amount_delivered: int = 0
    packets_fulfilled: int = 0
    packets_rejected: int = 0
    receipts: list[bytes] = field(default_factory=list)
    error: PaymentError | None = None

    @property
    def latest_receipt(self) -> bytes | None:
        """The receipt for the most received (RFC 39's latest): replies to concurrent packets
        arrive in any order, so the last one in can carry an older total. A receipt that does
        not decode counts as none."""
        latest: bytes | None = None
        most = -1
        for receipt in self.receipts:
            try:
                total = decode_receipt(receipt).total_received
            except ReceiptError:
                continue
            if total >= most:
                latest, most = receipt, total
        return latest


def minimum_exchange_rate(
    price_ratio: Fraction, slippage: Fraction, source_scale: int, destination_scale: int
) -> Fraction:
    """Lowest acceptable rate in destination units per source unit.

    ``price_ratio`` is how many whole destination units one whole source unit is worth.
    """
    if not 0 <= slippage <= 1:
        raise ValueError("slippage must be between 0 and 1")
    return price_ratio * (1 - slippage) * Fraction(10) ** (destination_scale - source_scale)


def _ceil(value: Fraction) -> int:
    return -(-value.numerator // value.denominator)


@dataclass(slots=True)
class Reply:
    """A reply to one of our Prepares, with its STREAM layer if it was authentic."""

    ilp: Fulfill | Reject
    stream: StreamPacket | None

    @property
    def delivered(self) -> int | None:
        return self.stream.prepare_amount if self.stream is not None else None


class SenderConnection:
    """The packet level of one STREAM connection from us to a receiver, over ``send`` (see the
    module docstring); :class:`kiungo.stream.sender.StreamSender` is the whole sender."""

    def __init__(
        self,
        send: SendFunction,
        *,
        destination: str,
        shared_secret: bytes,
        source_address: str,
        source_asset: Asset,
        max_packet_amount: int = MAX_UINT64,
        packet_lifetime: timedelta = timedelta(seconds=30),
        max_in_flight: int = 10,
        max_retries: int = 20,
        now: Callable[[], datetime] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._send = send
        self.destination = destination
        self._keys = StreamKeys(shared_secret)
        self.source_address = source_address
        self.source_asset = source_asset
        self.max_packet_amount = max_packet_amount
        self._lifetime = packet_lifetime
        self._max_in_flight = max(1, max_in_flight)
        self._max_retries = max_retries
        self._now = now or (lambda: datetime.now(UTC))
        self._sleep = sleep
        self._sequence = 0
        self._remote_authenticated = False
        self.destination_asset: Asset | None = None
        self.lower_rate: Fraction | None = None
        self.upper_rate: Fraction | None = None
        self._max_packet_verified = False
        self._f08_reductions = 0
        self._expected_asset: Asset | None = None
        self.closed = False

    # -- packets -------------------------------------------------------------------------------

    def _next_sequence(self) -> int:
        self._sequence += 1
        if self._sequence >= 1 << 31:
            raise PaymentError("connection sent 2^31 packets; it must be closed", "F99")
        return self._sequence

    def build_prepare(
        self, amount: int, min_destination: int, frames: Sequence[Frame], *, fulfillable: bool
    ) -> tuple[Prepare, int]:
        """An encrypted Prepare and its sequence number."""
        sequence = self._next_sequence()
        frame_list: list[Frame] = list(frames)
        if not self._remote_authenticated:
            frame_list[:0] = [
                ConnectionNewAddressFrame(self.source_address),
                ConnectionAssetDetailsFrame(self.source_asset.code, self.source_asset.scale),
            ]
        plain = encode_stream_packet(
            StreamPacket(sequence, PacketType.PREPARE, min_destination, frame_list)
        )
        data = self._keys.encrypt(plain)
        condition = self._keys.condition(data) if fulfillable else random_condition()
        prepare = Prepare(amount, self._now() + self._lifetime, condition, self.destination, data)
        return prepare, sequence

    async def _exchange(self, prepare: Prepare, sequence: int) -> Reply:
        try:
            reply = await self._send(prepare)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a link failure is a temporary error to the sender
            reply = Reject("T01", "", f"send failed: {exc}", b"")
        if isinstance(reply, Fulfill) and not fulfillment_matches(
            reply.fulfillment, prepare.execution_condition
        ):
            reply = Reject("F05", "", "fulfillment does not match the condition", b"")
        stream = self._open_reply(reply, sequence)
        if stream is not None:
            self._remote_authenticated = True
            for frame in stream.frames:
                if type(frame) is ConnectionAssetDetailsFrame and self.destination_asset is None:
                    self.destination_asset = Asset(
                        frame.source_asset_code, frame.source_asset_scale
                    )
        return Reply(reply, stream)

    def _open_reply(self, reply: Fulfill | Reject, sequence: int) -> StreamPacket | None:
        if not reply.data:
            return None
        try:
            packet = decode_stream_packet(self._keys.decrypt(reply.data))
        except (DecryptionError, DecodeError):
            return None
        expected = PacketType.FULFILL if isinstance(reply, Fulfill) else PacketType.REJECT
        if packet.sequence != sequence:
            return None
        # A STREAM "fulfill" may ride in an ILP Reject, never the other way round.
        if isinstance(reply, Fulfill) and packet.ilp_packet_type != expected:
            return None
        return packet

    # -- what replies tell: rate bounds, packet size -------------------------------------------

    def _note_rate(self, sent: int, delivered: int) -> None:
        if sent <= 0:
            return
        lower = Fraction(delivered, sent)
        upper = Fraction(delivered + 1, sent)
        if self.lower_rate is None or lower > self.lower_rate:
            self.lower_rate = lower
        if self.upper_rate is None or upper < self.upper_rate:
            self.upper_rate = upper
        if self.upper_rate <= self.lower_rate:  # the rate moved between probes
            self.upper_rate = self.lower_rate + Fraction(1, sent)

    def _note_f08(self, sent: int, reject: Reject) -> None:
        """Shrink the packet size from F08 data; PaymentError when nothing is left or the path
        has refused :data:`MAX_F08_REDUCTIONS` sizes in a row without taking any packet."""
        try:
            received, maximum = decode_amount_too_large_data(reject.data)
        except DecodeError:
            received, maximum = 0, 0
        # The size the data names, scaled to our units; without data, half.
        usable = received > 0 and maximum < received
        new_max = sent * maximum // received if usable else sent // 2
        if new_max <= 0:
            raise PaymentError("path refuses every packet size (F08)", "F08")
        if new_max < self.max_packet_amount:
            self.max_packet_amount = new_max
            self._max_packet_verified = False
            self._f08_reductions += 1
            if self._f08_reductions > MAX_F08_REDUCTIONS:
                raise PaymentError(
                    f"the path refused {self._f08_reductions} packet sizes in a row as too large "
                    "(F08) without taking any packet: no progress",
                    "F08",
                )

    def _got_through(self) -> None:
        """A packet reached the receiver: the packet size is no longer shrinking blind."""
        self._f08_reductions = 0

    # -- a payment's packets: their size, what each must deliver, its booking ------------------

    def _next_amount(
        self,
        result: PaymentResult,
        source_amount: int | None,
        delivery_amount: int | None,
        in_flight_source: int,
        in_flight_delivery: int,
    ) -> int:
        if source_amount is not None:
            remaining = source_amount - result.amount_sent - in_flight_source
        else:
            assert delivery_amount is not None
            owed = delivery_amount - result.amount_delivered - in_flight_delivery
            if owed <= 0:
                return 0
            rate = self.lower_rate
            if rate is None or rate <= 0:
                raise PaymentError("no exchange rate known: probe first", "F99")
            remaining = _ceil(owed / rate)
        return max(0, min(remaining, self.max_packet_amount))

    def _min_destination(self, amount: int, min_rate: Fraction) -> int:
        """The least a packet of ``amount`` may deliver: ``ceil(amount × min_rate)``, unless
        the path's flooring cannot reach that even though its probed rate is above the minimum
        (a small last packet: 2 units at 0.9 arrive as 1), when it is
        ``floor(amount × min_rate)``: the minimum rate then holds to within one destination
        unit, for that packet only."""
        least = _ceil(amount * min_rate)
        rate = self.lower_rate
        # Only a shortfall of rounding: a path whose rate is itself below the minimum is not
        # let through this way.
        if rate is not None and rate >= min_rate and least > int(amount * rate):
            return int(amount * min_rate)
        return least

    def _settle(self, result: PaymentResult, reply: Reply, amount: int, min_rate: Fraction) -> str:
        """Book one reply into the result: "ok", "shrunk" (F08), "retry", or raise
        PaymentError."""
        expected, told = self._expected_asset, self.destination_asset
        if expected is not None and told is not None and told != expected:
            if isinstance(reply.ilp, Fulfill):
                self._book_fulfill(result, reply, amount, self._min_destination(amount, min_rate))
            raise PaymentError(
                f"the receiver's asset is {told.code} at scale {told.scale}, not the expected "
                f"{expected.code} at scale {expected.scale}",
                "F99",
            )
        stream = reply.stream
        if stream is not None:
            for frame in stream.frames:
                if type(frame) is ConnectionCloseFrame:
                    if isinstance(reply.ilp, Fulfill):
                        self._book_fulfill(result, reply, amount, amount)
                    raise PaymentError(
                        f"receiver closed the connection: {frame.error_message}".strip(), "F99"
                    )
                if type(frame) is StreamCloseFrame and frame.stream_id == STREAM_ID:
                    if isinstance(reply.ilp, Fulfill):
                        self._book_fulfill(result, reply, amount, amount)
                    raise PaymentError("receiver closed the stream", "F99")
        ilp = reply.ilp
        if isinstance(ilp, Fulfill):
            self._book_fulfill(result, reply, amount, self._min_destination(amount, min_rate))
            return "ok"
        result.packets_rejected += 1
        code = ilp.code
        if code == "F08":
            # Not "ok": an F08 is no progress, and must not reset the failures in a row.
            self._note_f08(amount, ilp)
            return "shrunk"
        if code[0] == "T":
            return "retry"
        if code == "F99" and stream is not None:
            if stream.prepare_amount < self._min_destination(amount, min_rate):
                raise PaymentError(
                    f"exchange rate fell below the minimum: {amount} sent would deliver "
                    f"{stream.prepare_amount}",
                    "F99",
                )
            return "retry"
        if code in ("F99", "R01"):
            return "retry"
        raise PaymentError(f"packet rejected: {code} {ilp.message}".strip(), code)

    def _book_fulfill(
        self, result: PaymentResult, reply: Reply, amount: int, assumed_delivery: int
    ) -> None:
        self._got_through()
        result.packets_fulfilled += 1
        result.amount_sent += amount
        delivered = reply.delivered
        result.amount_delivered += assumed_delivery if delivered is None else delivered
        if delivered is not None:
            self._note_rate(amount, delivered)
        if reply.stream is not None:
            for frame in reply.stream.frames:
                if type(frame) is StreamReceiptFrame:
                    result.receipts.append(frame.receipt)
