"""Outgoing payments: a state machine worked by the connector's sender."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    Uuid,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from kiungo.models.base import U64, Base, TimestampMixin, UuidPrimaryKeyMixin

__all__ = ["OutgoingPayment", "OutgoingPaymentState"]


class OutgoingPaymentState(enum.StrEnum):
    FUNDING = "FUNDING"
    SENDING = "SENDING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


class OutgoingPayment(UuidPrimaryKeyMixin, TimestampMixin, Base):
    __tablename__ = "outgoing_payments"
    __table_args__ = (
        CheckConstraint(
            "state IN ('FUNDING', 'SENDING', 'COMPLETED', 'FAILED', 'CANCELLED')",
            name="state",
        ),
        Index(
            "ix_outgoing_payments_process_at",
            "process_at",
            postgresql_where=text("state = 'SENDING'"),
        ),
    )

    wallet_address_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("wallet_addresses.id"), index=True
    )
    # One payment per quote.
    quote_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("quotes.id"), unique=True)
    peer_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("peers.id"), index=True)
    state: Mapped[str] = mapped_column(String(16), server_default=OutgoingPaymentState.FUNDING)
    error: Mapped[str | None] = mapped_column(Text)
    state_attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    sent_amount: Mapped[Decimal] = mapped_column(U64, server_default="0")
    delivered_amount: Mapped[Decimal] = mapped_column(U64, server_default="0")
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSONB)
    client: Mapped[str | None] = mapped_column(String(2048))
    grant_id: Mapped[str | None] = mapped_column(String(255))
    process_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
