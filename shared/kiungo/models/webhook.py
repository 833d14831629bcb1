"""Webhook events (an outbox written with each state change) and their delivery attempts."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Identity,
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

__all__ = ["WebhookDelivery", "WebhookEvent"]


class WebhookEvent(UuidPrimaryKeyMixin, TimestampMixin, Base):
    __tablename__ = "webhook_events"
    __table_args__ = (
        Index(
            "ix_webhook_events_process_at",
            "process_at",
            postgresql_where=text("process_at IS NOT NULL"),
        ),
        # Events of one resource are delivered in order: the worker takes a resource's earliest
        # undelivered event only.
        Index(
            "ix_webhook_events_resource_pending",
            "resource_id",
            "seq",
            postgresql_where=text("process_at IS NOT NULL"),
        ),
        Index("ix_webhook_events_seq", "seq", unique=True),
    )

    # The order events were written in (a created_at tie-breaker that never repeats).
    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=False))
    # The asset, peer, wallet address or payment the event is about.
    resource_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    type: Mapped[str] = mapped_column(String(64), index=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSONB)
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    status_code: Mapped[int | None] = mapped_column(Integer)
    # When the next delivery is due; NULL once delivered or given up.
    process_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    withdrawal_account_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    withdrawal_asset_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("assets.id"), index=True
    )
    withdrawal_amount: Mapped[Decimal | None] = mapped_column(U64)


class WebhookDelivery(UuidPrimaryKeyMixin, TimestampMixin, Base):
    __tablename__ = "webhook_deliveries"

    event_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("webhook_events.id", ondelete="CASCADE"), index=True
    )
    attempt: Mapped[int] = mapped_column(Integer)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int | None] = mapped_column(Integer)
