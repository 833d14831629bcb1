"""Wallet addresses (payment pointers) of the node's users."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import CheckConstraint, DateTime, ForeignKey, Index, String, Uuid, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from kiungo.models.base import U64, Base, TimestampMixin, UuidPrimaryKeyMixin

__all__ = ["WalletAddress", "WalletAddressStatus"]


class WalletAddressStatus(enum.StrEnum):
    ACTIVE = "ACTIVE"
    INACTIVE = "INACTIVE"


class WalletAddress(UuidPrimaryKeyMixin, TimestampMixin, Base):
    __tablename__ = "wallet_addresses"
    __table_args__ = (
        CheckConstraint("status IN ('ACTIVE', 'INACTIVE')", name="status"),
        Index(
            "ix_wallet_addresses_process_at",
            "process_at",
            postgresql_where=text("process_at IS NOT NULL"),
        ),
    )

    url: Mapped[str] = mapped_column(String(2048), unique=True)
    public_name: Mapped[str | None] = mapped_column(String(255))
    asset_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("assets.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), server_default=WalletAddressStatus.ACTIVE)
    deactivated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    additional_properties: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")
    # Web Monetization receipts not yet reported in a wallet_address.web_monetization event.
    total_events_amount: Mapped[Decimal] = mapped_column(U64, server_default="0")
    process_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
