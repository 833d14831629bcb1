"""One outgoing payment as the worker sends it: its row and quote, and the outcomes of an
attempt."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction

import asyncpg
from sqlalchemy import bindparam, select

from kiungo import models
from kiungo.connector.inprocess import ResolvedReceiver
from kiungo.connector.peers import PeerInfo, internal_source
from kiungo.ledger import AccountKind, account_id_for
from kiungo.models import OutgoingPayment, Quote
from kiungo.models.sql import Statement, table
from kiungo.stream.server import Asset

__all__ = [
    "PACKET_LIFETIME",
    "PENDING_RECHECK",
    "Completed",
    "Failed",
    "Later",
    "Outcome",
    "Payment",
    "load",
    "log",
    "log_extra",
]

log = logging.getLogger("kiungo.connector.sending")

PACKET_LIFETIME = timedelta(seconds=15)
PENDING_RECHECK = timedelta(seconds=1)

_p = table(OutgoingPayment).alias("p")
_q = table(Quote).alias("q")
_a = table(models.Asset).alias("a")
_LOAD = Statement(
    select(
        _p.c.id,
        _p.c.state_attempts,
        _p.c.sent_amount,
        _p.c.delivered_amount,
        _q.c.asset_id,
        _a.c.code.label("asset_code"),
        _a.c.scale.label("asset_scale"),
        _q.c.receiver,
        _q.c.debit_amount,
        _q.c.fee_amount,
        _q.c.receive_amount,
        _q.c.receive_asset_code,
        _q.c.receive_asset_scale,
        _q.c.max_packet_amount,
        _q.c.min_exchange_rate_numerator,
        _q.c.min_exchange_rate_denominator,
        _q.c.low_estimated_exchange_rate_numerator,
        _q.c.low_estimated_exchange_rate_denominator,
        _q.c.high_estimated_exchange_rate_numerator,
        _q.c.high_estimated_exchange_rate_denominator,
        _q.c.expires_at,
        _q.c.stream_destination,
        _q.c.stream_shared_secret,
    )
    .select_from(_p.join(_q, _q.c.id == _p.c.quote_id).join(_a, _a.c.id == _q.c.asset_id))
    .where(_p.c.id == bindparam("id"))
)


# -- outcomes ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Completed:
    sent: int
    delivered: int


@dataclass(frozen=True, slots=True)
class Failed:
    error: str
    retryable: bool
    sent: int | None  # None: as the row has it
    delivered: int | None


@dataclass(frozen=True, slots=True)
class Later:
    """Not an attempt: look again after ``wait`` (a crashed worker's holds still pending)."""

    wait: timedelta
    sent: int
    delivered: int


Outcome = Completed | Failed | Later


# -- the payment -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Payment:
    id: uuid.UUID
    state_attempts: int
    sent_amount: int
    delivered_amount: int
    asset_id: uuid.UUID
    asset_code: str
    asset_scale: int
    receiver: str
    budget: int  # debit_amount - fee_amount: the most it sends
    receive_amount: int
    receive_asset: Asset
    max_packet_amount: int | None
    min_rate: Fraction
    rate: Fraction  # the quote's low estimated rate: what it expects packets to get
    high_rate: Fraction
    quote_expires_at: datetime
    credentials: ResolvedReceiver | None  # what the quote's probe resolved (remote receivers)

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Payment:
        min_rate = _rate(row, "min_exchange_rate")
        return cls(
            id=row["id"],
            state_attempts=int(row["state_attempts"]),
            sent_amount=int(row["sent_amount"]),
            delivered_amount=int(row["delivered_amount"]),
            asset_id=row["asset_id"],
            asset_code=row["asset_code"],
            asset_scale=row["asset_scale"],
            receiver=row["receiver"],
            budget=int(row["debit_amount"]) - int(row["fee_amount"] or 0),
            receive_amount=int(row["receive_amount"]),
            receive_asset=Asset(row["receive_asset_code"], row["receive_asset_scale"]),
            max_packet_amount=(
                None if row["max_packet_amount"] is None else int(row["max_packet_amount"])
            ),
            min_rate=min_rate,
            rate=max(_rate(row, "low_estimated_exchange_rate"), min_rate),
            high_rate=_rate(row, "high_estimated_exchange_rate"),
            quote_expires_at=row["expires_at"],
            credentials=(
                ResolvedReceiver(row["stream_destination"], bytes(row["stream_shared_secret"]))
                if row["stream_destination"] and row["stream_shared_secret"]
                else None
            ),
        )

    @property
    def account_id(self) -> uuid.UUID:
        return account_id_for(AccountKind.OUTGOING_PAYMENT, self.id)

    def source(self, *, paying: bool) -> PeerInfo:
        """The payment as a packet source: its account pays, or (probing) nothing does."""
        return internal_source(
            self.id,
            self.asset_id,
            self.asset_code,
            self.asset_scale,
            address="",
            account_kind=AccountKind.OUTGOING_PAYMENT if paying else None,
            name="outgoing payment",
        )

    def least_delivered(self, sent: int) -> int:
        """What ``sent`` delivered at least: every packet met the minimum rate."""
        value = sent * self.min_rate
        return -(-value.numerator // value.denominator)

    def done(self, sent: int, delivered: int) -> bool:
        return delivered >= self.receive_amount or sent >= self.budget


def _rate(row: asyncpg.Record, name: str) -> Fraction:
    numerator, denominator = row[f"{name}_numerator"], row[f"{name}_denominator"]
    if numerator is None or not denominator:
        return Fraction(0)
    return Fraction(int(numerator), int(denominator))


def log_extra(payment_id: uuid.UUID) -> dict[str, str]:
    """The log fields naming a payment (LOG_FORMAT=json)."""
    return {"outgoing_payment_id": str(payment_id)}


async def load(conn: asyncpg.Connection, payment_id: uuid.UUID) -> Payment | None:
    """The payment with its quote and asset (None: the row is gone)."""
    row = await _LOAD.fetchrow(conn, id=payment_id)
    return None if row is None else Payment.from_row(row)
