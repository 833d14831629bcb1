"""Posts owed: fulfilled packets whose money the ledger could not book in time.

Once a packet's Fulfill is relayed (forwarding) or sent (receiving), its money is booked
exactly once, whatever the ledger answers. Its holds are posted; holds that were released
without being posted (expired: the ledger's writer was behind, or the Fulfill took longer than
the hold) are booked again at once as posted LATE_POST transfers, with ids derived from the
holds' (so that a replay, or two replicas booking one packet, books it once). When the database
stays out until the sender would no longer take the Fulfill (forwarding) or until the hold
expires (receiving), or the ledger refuses the late post (its source spent the released money
meanwhile), the post is written to a Redis list, and the Fulfill goes out: the next hop has
been paid, and our peer owes us.

Every connector drains the list every second, booking each entry as above. A received
packet's entry names its receiver, which is settled once the money is booked (an incoming
payment that the packet paid in full becomes COMPLETED). An entry the ledger refuses (say the
peer's liquidity went to other packets meanwhile) stays in the list, logged, and counted by
``kiungo_posts_owed``, for the operator to fund and let drain. An outgoing payment neither
ends nor resumes while an entry debits its account (:meth:`OwedPosts.book_debits_of`): its
leftover would otherwise include money its packets already paid out, offered for withdrawal
before the late post could take it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

from redis.asyncio import Redis
from redis.exceptions import RedisError

from kiungo.ledger import (
    AlreadyPosted,
    AlreadyVoided,
    Ledger,
    LedgerError,
    LedgerUnavailable,
    Leg,
    TransferExpired,
)
from kiungo.runtime.tasks import raise_if_cancelled

__all__ = ["OWED_POSTS_KEY", "OwedPosts", "late_transfer_id"]

log = logging.getLogger("kiungo.connector.owed")

OWED_POSTS_KEY = "posts-owed"
LATE_POST_CODE = "LATE_POST"
_LATE_NAMESPACE = uuid.UUID("0c6f5a3e-2b1d-4e8f-9a7c-3d5e1f2a4b6c")
_DRAIN_SECONDS = 1.0
_RETRY_WAIT_SECONDS = 0.05


def late_transfer_id(hold_id: uuid.UUID) -> uuid.UUID:
    """The id of the posted transfer that books an expired hold's leg again."""
    return uuid.uuid5(_LATE_NAMESPACE, str(hold_id))


def _entry(legs: Sequence[Leg], receiver: str | None) -> str:
    return json.dumps(
        {
            "legs": [
                {
                    "id": str(leg.id),
                    "debit": str(leg.debit_account_id),
                    "credit": str(leg.credit_account_id),
                    "amount": str(leg.amount),
                    "credit_limit": None if leg.credit_limit is None else str(leg.credit_limit),
                }
                for leg in legs
            ],
            "receiver": receiver,
        },
        separators=(",", ":"),
    )


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def _parse(entry: str) -> tuple[list[Leg], str | None]:
    """An entry's legs and receiver tag (entries owed before receivers were named are lists)."""
    data = json.loads(entry)
    items, receiver = (data, None) if isinstance(data, list) else (data["legs"], data["receiver"])
    if receiver is not None and not isinstance(receiver, str):
        raise TypeError("the receiver is not a tag")
    legs = [
        Leg(
            uuid.UUID(item["id"]),
            uuid.UUID(item["debit"]),
            uuid.UUID(item["credit"]),
            int(item["amount"]),
            None if item["credit_limit"] is None else int(item["credit_limit"]),
        )
        for item in items
    ]
    return legs, receiver


class OwedPosts:
    """The fulfilled packets' posts: made now, retried, or owed in Redis until the ledger
    takes them."""

    def __init__(self, ledger: Ledger, redis: Redis, prefix: str) -> None:
        self._ledger = ledger
        self._redis = redis
        # Awaited with the tag of the receiver an entry names, once the entry is booked.
        self.on_booked: Callable[[str], Awaitable[None]] | None = None
        self.key = prefix + OWED_POSTS_KEY
        self.owed = 0  # entries in the list at the last drain

    async def post(
        self, legs: Sequence[Leg], deadline: datetime, *, receiver: str | None = None
    ) -> bool:
        """Book a fulfilled packet's ``legs`` (:meth:`_book`), retrying while the ledger is
        unavailable until ``deadline``; then, or when the ledger refuses them, owe them, naming
        ``receiver`` (the tag of the receiver a received packet paid). True once booked (also
        by an earlier attempt whose answer was lost), False when it is owed."""
        ids = [leg.id for leg in legs]
        wait = _RETRY_WAIT_SECONDS
        while True:
            try:
                await self._book(legs)
                return True
            except LedgerUnavailable as exc:
                left = (deadline - datetime.now(UTC)).total_seconds()
                if left <= 0:
                    await self.owe(legs, exc, receiver=receiver)
                    return False
                log.warning("posting %s failed (%r); retrying", ids, exc)
                await asyncio.sleep(min(wait, left))
                wait = min(wait * 2, 1.0)
            except LedgerError as exc:
                # The Fulfill is out whatever the ledger says: kept until it can be booked.
                await self.owe(legs, exc, receiver=receiver)
                return False

    async def owe(
        self, legs: Sequence[Leg], reason: Exception, *, receiver: str | None = None
    ) -> None:
        entry = _entry(legs, receiver)
        try:
            await self._redis.rpush(self.key, entry)
        except (RedisError, OSError) as exc:
            # Nowhere left to keep it: the log line is the record.
            log.error(
                "a fulfilled packet's post is lost to both stores (ledger: %r, Redis: %r): %s",
                reason, exc, entry,
            )  # fmt: skip
            return
        log.error("the ledger did not book a fulfilled packet (%r); owed: %s", reason, entry)

    async def drain(self) -> int:
        """Book what is owed; returns how many entries were booked. Entries the ledger refuses
        stay (logged); a ledger outage stops the round."""
        entries = await self._redis.lrange(self.key, 0, 99)
        booked = 0
        for raw in entries:
            try:
                if await self._book_entry(raw):
                    booked += 1
            except LedgerUnavailable:
                break
        self.owed = int(await self._redis.llen(self.key))
        return booked

    async def book_debits_of(self, account_id: uuid.UUID) -> int:
        """Book the entries that debit ``account_id`` (an outgoing payment's); returns how many
        are still owed (refused, or the ledger is unavailable)."""
        left = 0
        for raw in await self._redis.lrange(self.key, 0, -1):
            try:
                legs, _ = _parse(_text(raw))
            except (ValueError, KeyError, TypeError):
                continue  # dropped by the drain
            if all(leg.debit_account_id != account_id for leg in legs):
                continue
            try:
                if not await self._book_entry(raw):
                    left += 1
            except LedgerUnavailable:
                left += 1
        return left

    async def _book_entry(self, raw: bytes | str) -> bool:
        """Book one entry of the list and remove it; False when the ledger refuses it (it
        stays). Raises LedgerUnavailable."""
        entry = _text(raw)
        try:
            legs, receiver = _parse(entry)
        except (ValueError, KeyError, TypeError) as exc:
            log.error("dropping an unreadable owed post %r: %r", entry, exc)
            await self._redis.lrem(self.key, 1, entry)
            return False
        try:
            await self._book(legs)
        except LedgerUnavailable:
            raise
        except LedgerError as exc:
            log.error("an owed post is still refused by the ledger (%r): %s", exc, entry)
            return False
        if not await self._redis.lrem(self.key, 1, entry):
            return False  # booked by another replica's drain meanwhile (booked once: ids)
        log.warning("booked an owed post: %s", entry)
        if receiver is not None and self.on_booked is not None:
            try:
                await self.on_booked(receiver)
            except Exception:
                # The money is booked; the receiver's state catches up with its next
                # packet (or completeReceiver).
                log.exception("updating receiver %s after its owed post failed", receiver)
        return True

    async def _book(self, legs: Sequence[Leg]) -> None:
        """Post the holds of ``legs``, or book the legs as LATE_POST transfers when the holds
        were released without being posted. Raises what the ledger refuses."""
        try:
            await self._ledger.post(*(leg.id for leg in legs))
        except AlreadyPosted:
            return
        except (TransferExpired, AlreadyVoided):
            # Released, so never posted: the late transfers are the only booking (voided
            # too, although nothing voids a hold whose Fulfill came back: the sweep expires).
            # Without the credit limit: an incoming payment's limit decided whether to take
            # the packet, and it was taken (its Fulfill went out), so its money is booked even
            # if other packets filled the payment once the hold had expired.
            late = [
                Leg(
                    late_transfer_id(leg.id),
                    leg.debit_account_id,
                    leg.credit_account_id,
                    leg.amount,
                )
                for leg in legs
            ]
            await self._ledger.create_transfers(late, code=LATE_POST_CODE)

    async def run(self) -> None:
        """Drain every second until cancelled."""
        while True:
            raise_if_cancelled()
            try:
                await self.drain()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("draining owed posts failed")
            await asyncio.sleep(_DRAIN_SECONDS)
