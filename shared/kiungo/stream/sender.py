"""The STREAM sender (RFC 29 §6.8 of our protocol notes): probes the path, then pays.

It speaks through any ``send(prepare) -> reply`` coroutine (the connector's pipeline, an HTTP
link, a test double of a real peer), so it holds no sockets; the clock and the sleep used for
backoff are passed in. The algorithm follows what @interledger/pay does, in its own terms:

* **Probe**: unfulfillable packets of 10^12 … 10^3 source units in parallel. An authentic reply
  tells what arrived, bounding the path's rate in ``[delivered/sent, (delivered+1)/sent)`` because
  each hop floors; an F08 tells the maximum packet amount (scaled back to our units), which is then
  probed exactly. The first packets carry ConnectionNewAddress and ConnectionAssetDetails so the
  receiver answers with its asset.
* **Pay**: a fixed source amount, or a fixed delivery amount sized from the probed lower-bound
  rate, in packets of at most the maximum packet amount; each packet asks the receiver to refuse
  less than ``ceil(amount × minimum rate)``. T errors back off exponentially; F08 shrinks packets
  to the size its data names (by half without data), at most
  :data:`~kiungo.stream.sender_connection.MAX_F08_REDUCTIONS` times in a row without a packet
  getting through: a path that keeps naming a size just below the last one (an F08 saying
  "received a, max a − 1" for ever) would otherwise be sent a packet per unit of the packet size.
  F99 and R01 are retried a few times; every other F/R code, a ConnectionClose, or a StreamClose
  of our stream ends the payment. Receipts in fulfills are collected.
* **Close**: a zero-amount ConnectionClose packet that the receiver rejects with F99.

The packet level (the connection's state, one Prepare and its reply, the rate bounds, packet
size and receipts each reply gives, booking replies into the result) is
:class:`kiungo.stream.sender_connection.SenderConnection`, which :class:`StreamSender` extends
with the probe, the payment loop and the close.
"""

from __future__ import annotations

import asyncio
from fractions import Fraction

from kiungo.ilp.oer import MAX_UINT64
from kiungo.ilp.packet import Reject
from kiungo.stream.packet import ConnectionCloseFrame, ErrorCode, StreamMoneyFrame
from kiungo.stream.sender_connection import (
    STREAM_ID,
    PaymentError,
    PaymentResult,
    RateProbe,
    Reply,
    SenderConnection,
)

__all__ = ["PROBE_AMOUNTS", "StreamSender"]

PROBE_AMOUNTS = (10**12, 10**9, 10**6, 10**3)
"""The first probe volley (below the known maximum packet). An F08 with its data tells the
path's maximum exactly, so every third decade is enough; every packet costs both ends CPU."""
_INITIAL_BACKOFF = 0.05
_MAX_BACKOFF = 5.0


class StreamSender(SenderConnection):
    """One STREAM connection from us to a receiver, over ``send``."""

    # -- probing -------------------------------------------------------------------------------

    async def probe(self) -> RateProbe:
        """Discover the rate bounds and the largest packet the path carries.

        Bounded by ``max_retries`` volleys; wrap in ``asyncio.timeout`` for a deadline.
        """
        backoff = _INITIAL_BACKOFF
        failures = 0
        amounts = [a for a in PROBE_AMOUNTS if a < self.max_packet_amount]
        if self.max_packet_amount <= PROBE_AMOUNTS[0]:
            amounts.insert(0, self.max_packet_amount)
        while True:
            results = await asyncio.gather(*(self._probe_one(a) for a in amounts))
            largest_ok = 0
            temporary = False
            for amount, reply in zip(amounts, results, strict=True):
                if reply.delivered is not None:
                    self._note_rate(amount, reply.delivered)
                    self._got_through()
                    largest_ok = max(largest_ok, amount)
                    continue
                ilp = reply.ilp
                if isinstance(ilp, Reject) and ilp.code == "F08":
                    self._note_f08(amount, ilp)
                elif isinstance(ilp, Reject) and ilp.code[0] == "T":
                    temporary = True
                elif isinstance(ilp, Reject):
                    raise PaymentError(
                        f"rate probe rejected: {ilp.code} {ilp.message}".strip(), ilp.code
                    )
            if largest_ok >= self.max_packet_amount:
                self._max_packet_verified = True
            elif largest_ok >= PROBE_AMOUNTS[0] and self.max_packet_amount == MAX_UINT64:
                self.max_packet_amount = largest_ok  # big enough; no need to find the ceiling
                self._max_packet_verified = True
            if self._max_packet_verified and self.lower_rate is not None:
                assert self.upper_rate is not None
                return RateProbe(
                    self.lower_rate,
                    self.upper_rate,
                    self.max_packet_amount,
                    self.destination_asset,
                )
            if temporary or largest_ok == 0:
                failures += 1
                if failures > self._max_retries:
                    raise PaymentError("rate probe kept failing", "T00")
                await self._sleep(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF)
            amounts = [self.max_packet_amount]

    def assume(self, probe: RateProbe) -> None:
        """Pay on an earlier probe of this path (a quote's) instead of probing again: its rate
        bounds and packet size (F08s still shrink packets). Its destination asset is checked
        against the receiver's first reply: a receiver in another asset stops the payment
        after that one packet."""
        self.lower_rate, self.upper_rate = probe.lower_rate, probe.upper_rate
        self.max_packet_amount = probe.max_packet_amount
        self._expected_asset = probe.destination_asset

    async def _probe_one(self, amount: int) -> Reply:
        prepare, sequence = self.build_prepare(amount, 0, [], fulfillable=False)
        return await self._exchange(prepare, sequence)

    # -- paying --------------------------------------------------------------------------------

    async def pay(
        self,
        *,
        source_amount: int | None = None,
        delivery_amount: int | None = None,
        min_exchange_rate: Fraction = Fraction(0),
    ) -> PaymentResult:
        """Send exactly ``source_amount``, or deliver at least ``delivery_amount``.

        Never raises for a failed payment: the result carries what was sent and delivered
        and the error that stopped it.
        """
        if (source_amount is None) == (delivery_amount is None):
            raise ValueError("give exactly one of source_amount and delivery_amount")
        result = PaymentResult()
        try:
            await self._pay(result, source_amount, delivery_amount, min_exchange_rate)
        except PaymentError as exc:
            result.error = exc
        return result

    async def _pay(
        self,
        result: PaymentResult,
        source_amount: int | None,
        delivery_amount: int | None,
        min_rate: Fraction,
    ) -> None:
        if delivery_amount is not None and self.lower_rate is None:
            await self.probe()
        in_flight: dict[asyncio.Task[Reply], tuple[int, int]] = {}
        in_flight_source = 0
        in_flight_delivery = 0
        backoff = _INITIAL_BACKOFF
        failures = 0
        try:
            while True:
                while len(in_flight) < self._max_in_flight:
                    amount = self._next_amount(
                        result, source_amount, delivery_amount, in_flight_source, in_flight_delivery
                    )
                    if amount <= 0:
                        break
                    min_destination = self._min_destination(amount, min_rate)
                    expected = (
                        max(min_destination, int(amount * self.lower_rate))
                        if self.lower_rate is not None
                        else min_destination
                    )
                    prepare, sequence = self.build_prepare(
                        amount, min_destination, [StreamMoneyFrame(STREAM_ID, 1)], fulfillable=True
                    )
                    task = asyncio.ensure_future(self._exchange(prepare, sequence))
                    in_flight[task] = (amount, expected)
                    in_flight_source += amount
                    in_flight_delivery += expected
                    # Until the receiver has answered once, one packet at a time.
                    if not self._remote_authenticated:
                        break
                if not in_flight:
                    return
                done, _ = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                temporary = False
                for task in done:
                    amount, expected = in_flight.pop(task)
                    in_flight_source -= amount
                    in_flight_delivery -= expected
                    reply = task.result()
                    outcome = self._settle(result, reply, amount, min_rate)
                    if outcome == "ok":
                        failures = 0
                        backoff = _INITIAL_BACKOFF
                    elif outcome == "retry":
                        temporary = True
                if temporary:
                    failures += 1
                    if failures > self._max_retries:
                        raise PaymentError("too many failed packets in a row", "T00")
                    await self._sleep(backoff)
                    backoff = min(backoff * 2, _MAX_BACKOFF)
        finally:
            for task in in_flight:
                task.cancel()
            if in_flight:
                await asyncio.gather(*in_flight, return_exceptions=True)

    # -- closing -------------------------------------------------------------------------------

    async def close(self) -> None:
        """Tell the receiver the connection is done (it answers F99 with its own close)."""
        if self.closed:
            return
        self.closed = True
        prepare, sequence = self.build_prepare(
            0, 0, [ConnectionCloseFrame(ErrorCode.NO_ERROR, "")], fulfillable=False
        )
        await self._exchange(prepare, sequence)
