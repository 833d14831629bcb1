"""Fees an asset charges: fixed plus basis points, for sending or receiving."""

from __future__ import annotations

import enum
import uuid
from decimal import Decimal

from sqlalchemy import CheckConstraint, ForeignKey, Integer, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from kiungo.models.base import U64, Base, TimestampMixin, UuidPrimaryKeyMixin

__all__ = ["Fee", "FeeType"]


class FeeType(enum.StrEnum):
    SENDING = "SENDING"
    RECEIVING = "RECEIVING"


class Fee(UuidPrimaryKeyMixin, TimestampMixin, Base):
    __tablename__ = "fees"
    __table_args__ = (
        CheckConstraint("basis_point_fee >= 0 AND basis_point_fee <= 10000", name="basis_points"),
        CheckConstraint("type IN ('SENDING', 'RECEIVING')", name="type"),
    )

    asset_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("assets.id"), index=True)
    type: Mapped[str] = mapped_column(String(16))
    fixed_fee: Mapped[Decimal] = mapped_column(U64, server_default="0")
    basis_point_fee: Mapped[int] = mapped_column(Integer, server_default="0")
