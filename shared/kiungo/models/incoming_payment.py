"""Incoming payments: what a wallet address expects to receive."""

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

__all__ = ["IncomingPayment", "IncomingPaymentState"]


class IncomingPaymentState(enum.StrEnum):
    PENDING = "PENDING"
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"
    EXPIRED = "EXPIRED"


class IncomingPayment(UuidPrimaryKeyMixin, TimestampMixin, Base):
    __tablename__ = "incoming_payments"
    __table_args__ = (
        CheckConstraint("state IN ('PENDING', 'PROCESSING', 'COMPLETED', 'EXPIRED')", name="state"),
        # The expiry worker's question: which open payments are past their time.
        Index(
            "ix_incoming_payments_open_expiry",
            "expires_at",
            postgresql_where=text("state IN ('PENDING', 'PROCESSING')"),
        ),
        Index(
            "ix_incoming_payments_process_at",
            "process_at",
            postgresql_where=text("process_at IS NOT NULL"),
        ),
    )

    wallet_address_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("wallet_addresses.id"), index=True
    )
    asset_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("assets.id"), index=True)
    incoming_amount: Mapped[Decimal | None] = mapped_column(U64)
    received_amount: Mapped[Decimal] = mapped_column(U64, server_default="0")
    state: Mapped[str] = mapped_column(String(16), server_default=IncomingPaymentState.PENDING)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSONB)
    client: Mapped[str | None] = mapped_column(String(2048))
    process_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Rafiki's: when and why the admin API cancelled it, and who the payer said they are.
    cancelled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cancellation_reason: Mapped[str | None] = mapped_column(String(1024))
    sender_wallet_address: Mapped[str | None] = mapped_column(String(2048))
