"""Quotes: what sending to a receiver will debit and deliver, valid until they expire."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import DateTime, ForeignKey, LargeBinary, Numeric, SmallInteger, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from kiungo.models.base import U64, Base, TimestampMixin, UuidPrimaryKeyMixin

__all__ = ["Quote"]

# Exchange rates are exact fractions kept as numerator/denominator, or high-precision decimals.
RATE = Numeric(40, 20)


class Quote(UuidPrimaryKeyMixin, TimestampMixin, Base):
    __tablename__ = "quotes"

    wallet_address_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("wallet_addresses.id"), index=True
    )
    asset_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("assets.id"), index=True)
    receiver: Mapped[str] = mapped_column(String(2048))
    # The Open Payments client that asked for it (NULL through the admin API): a grant's
    # ``read`` reaches only its own client's quotes.
    client: Mapped[str | None] = mapped_column(String(2048))
    debit_amount: Mapped[Decimal] = mapped_column(U64)
    # The sending fee in debit_amount: a payment sends at most debit_amount - fee_amount.
    fee_amount: Mapped[Decimal] = mapped_column(U64, server_default="0")
    receive_amount: Mapped[Decimal] = mapped_column(U64)
    receive_asset_code: Mapped[str] = mapped_column(String(32))
    receive_asset_scale: Mapped[int] = mapped_column(SmallInteger)
    max_packet_amount: Mapped[Decimal | None] = mapped_column(U64)
    min_exchange_rate_numerator: Mapped[Decimal | None] = mapped_column(Numeric(40, 0))
    min_exchange_rate_denominator: Mapped[Decimal | None] = mapped_column(Numeric(40, 0))
    low_estimated_exchange_rate_numerator: Mapped[Decimal | None] = mapped_column(Numeric(40, 0))
    low_estimated_exchange_rate_denominator: Mapped[Decimal | None] = mapped_column(Numeric(40, 0))
    high_estimated_exchange_rate_numerator: Mapped[Decimal | None] = mapped_column(Numeric(40, 0))
    high_estimated_exchange_rate_denominator: Mapped[Decimal | None] = mapped_column(Numeric(40, 0))
    estimated_exchange_rate: Mapped[Decimal | None] = mapped_column(RATE)
    fee_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("fees.id"), index=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # The STREAM credentials a remote receiver's SPSP endpoint gave the quote's probe: a
    # payment's first attempt pays on them (a resumed one asks again).
    stream_destination: Mapped[str | None] = mapped_column(String(1023))
    stream_shared_secret: Mapped[bytes | None] = mapped_column(LargeBinary)
