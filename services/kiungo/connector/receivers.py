"""Local receivers: the wallet addresses and incoming payments STREAM money can be paid into.

A connection's payment tag names its receiver (:mod:`kiungo.payments.receivers`: ``w<hex>`` a
wallet address, ``i<hex>`` an incoming payment). Lookups are cached for a moment, since a STREAM
payment sends many packets to one receiver; what must not be stale is enforced elsewhere: an
incoming payment's amount by the ledger's credit limit, its expiry by the time stored with it.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from kiungo.config import Settings
from kiungo.ledger import AccountKind, Ledger, account_id_for
from kiungo.models import WalletAddressStatus
from kiungo.models.sql import Statement
from kiungo.payments.incoming import States, store
from kiungo.payments.receivers import (
    INCOMING_PAYMENT_RECEIVER_BY_ID,
    WALLET_ADDRESS_RECEIVER_BY_ID,
    WALLET_ADDRESS_RECEIVER_BY_URL,
    ReceiverKind,
    incoming_payment_tag,
    receiver_open,
    wallet_tag,
)

__all__ = ["Receiver", "ReceiverDirectory", "ReceiverKind", "incoming_payment_tag", "wallet_tag"]

log = logging.getLogger("kiungo.connector.receivers")

_CACHE_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Receiver:
    kind: ReceiverKind
    id: uuid.UUID
    wallet_address_id: uuid.UUID
    url: str
    asset_id: uuid.UUID
    asset_code: str
    asset_scale: int
    incoming_amount: int | None = None
    expires_at: datetime | None = None
    state: str = WalletAddressStatus.ACTIVE.value
    created_at: datetime | None = None

    @property
    def tag(self) -> str:
        return f"{self.kind.value}{self.id.hex}"

    @property
    def account_kind(self) -> AccountKind:
        if self.kind is ReceiverKind.WALLET_ADDRESS:
            return AccountKind.WALLET_ADDRESS
        return AccountKind.INCOMING_PAYMENT

    @property
    def account_id(self) -> uuid.UUID:
        return account_id_for(self.account_kind, self.id)

    def open_at(self, now: datetime) -> bool:
        """Still accepting money: active wallet address, or pending incoming payment in time."""
        return receiver_open(self.kind, self.state, self.expires_at, now)


class ReceiverDirectory:
    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self._pool = pool
        self._settings = settings
        self._cache: dict[str, tuple[float, Receiver | None]] = {}

    def forget(self, tag: str) -> None:
        self._cache.pop(tag, None)

    def forget_owner(self, owner_id: uuid.UUID) -> None:
        """Forget a wallet address or incoming payment by its id (a change message)."""
        self.forget(wallet_tag(owner_id))
        self.forget(incoming_payment_tag(owner_id))

    async def by_tag(self, tag: str | None) -> Receiver | None:
        if not tag or len(tag) != 33:
            return None
        cached = self._cache.get(tag)
        now = time.monotonic()
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            kind, receiver_id = ReceiverKind(tag[0]), uuid.UUID(hex=tag[1:])
        except ValueError:
            return None
        if kind is ReceiverKind.WALLET_ADDRESS:
            receiver = await self._wallet_address(WALLET_ADDRESS_RECEIVER_BY_ID, id=receiver_id)
        else:
            receiver = await self.incoming_payment(receiver_id)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[tag] = (now + _CACHE_SECONDS, receiver)
        return receiver

    async def wallet_address_by_url(self, url: str) -> Receiver | None:
        """The wallet address at ``url``; as Rafiki looks them up, case aside (addresses are
        stored lower-cased; one stored before that is still found as written)."""
        found = await self._wallet_address(WALLET_ADDRESS_RECEIVER_BY_URL, url=url)
        if found is None and url != url.lower():
            found = await self._wallet_address(WALLET_ADDRESS_RECEIVER_BY_URL, url=url.lower())
        return found

    async def _wallet_address(self, statement: Statement, **key: object) -> Receiver | None:
        """The wallet address ``statement`` (by id or by URL) reads for ``key``."""
        async with self._pool.acquire() as conn:
            row = await statement.fetchrow(conn, **key)
        if row is None:
            return None
        return Receiver(
            ReceiverKind.WALLET_ADDRESS,
            row["id"],
            row["id"],
            row["url"],
            row["asset_id"],
            row["asset_code"],
            row["asset_scale"],
            state=row["status"],
        )

    async def incoming_payment(self, incoming_payment_id: uuid.UUID) -> Receiver | None:
        async with self._pool.acquire() as conn:
            row = await INCOMING_PAYMENT_RECEIVER_BY_ID.fetchrow(conn, id=incoming_payment_id)
        if row is None:
            return None
        return Receiver(
            ReceiverKind.INCOMING_PAYMENT,
            row["id"],
            row["wallet_address_id"],
            row["url"],
            row["asset_id"],
            row["asset_code"],
            row["asset_scale"],
            incoming_amount=None if row["incoming_amount"] is None else int(row["incoming_amount"]),
            expires_at=row["expires_at"],
            state=row["state"],
            created_at=row["created_at"],
        )

    async def settle(self, receiver: Receiver, ledger: Ledger) -> None:
        """Once money to ``receiver`` is booked: an incoming payment whose account has been
        credited its incoming amount is COMPLETED (with its event); one still PENDING is
        PROCESSING. A wallet address has nothing to update."""
        if receiver.kind is not ReceiverKind.INCOMING_PAYMENT:
            return
        if receiver.incoming_amount is not None:
            balance = await ledger.balance(receiver.account_id)
            if balance.credits_posted >= receiver.incoming_amount:
                if await self.complete(receiver):
                    log.info("incoming payment %s completed", receiver.id)
                return
        if receiver.state == States.PENDING:
            await self.mark_processing(receiver)

    async def mark_processing(self, receiver: Receiver) -> None:
        """A PENDING incoming payment that received its first money is PROCESSING (Rafiki's)."""
        async with self._pool.acquire() as conn:
            await store.mark_processing(conn, receiver.id)
        self.forget(receiver.tag)

    async def complete(self, receiver: Receiver) -> bool:
        """Mark an incoming payment that received its incoming amount COMPLETED (once), with
        its incoming_payment.completed event; True when this call did it."""
        if receiver.incoming_amount is None:
            return False
        async with self._pool.acquire() as conn, conn.transaction():
            moved = await store.complete(
                conn,
                receiver.id,
                receiver.incoming_amount,
                (receiver.asset_code, receiver.asset_scale),
            )
        self.forget(receiver.tag)
        return moved
