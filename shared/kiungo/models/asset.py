"""Assets: a currency at a scale, each its own ledger (Rafiki's ``assets``)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    Identity,
    Index,
    Integer,
    SmallInteger,
    String,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from kiungo.models.base import U64, Base, TimestampMixin, UuidPrimaryKeyMixin

__all__ = ["Asset"]


class Asset(UuidPrimaryKeyMixin, TimestampMixin, Base):
    __tablename__ = "assets"
    __table_args__ = (
        CheckConstraint("scale >= 0 AND scale <= 255", name="scale_range"),
        # A deleted asset frees its code and scale for a new one.
        Index(
            "uq_assets_code_scale",
            "code",
            "scale",
            unique=True,
            postgresql_where=text("deleted_at IS NULL"),
        ),
    )

    code: Mapped[str] = mapped_column(String(32))
    scale: Mapped[int] = mapped_column(SmallInteger)
    withdrawal_threshold: Mapped[Decimal | None] = mapped_column(U64)
    liquidity_threshold_low: Mapped[Decimal | None] = mapped_column(U64)
    liquidity_threshold_high: Mapped[Decimal | None] = mapped_column(U64)
    # The liquidity alert last raised ('LOW' or 'HIGH'), so each crossing raises one event.
    liquidity_alert: Mapped[str | None] = mapped_column(String(8))
    # A small number naming the asset's ledger, as Rafiki's accountingTransfers report it.
    ledger: Mapped[int] = mapped_column(Integer, Identity(always=False), unique=True)
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
