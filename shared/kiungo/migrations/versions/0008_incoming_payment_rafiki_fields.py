"""Incoming payments: Rafiki's cancelledAt, cancellationReason and senderWalletAddress

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 06:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "incoming_payments", sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column(
        "incoming_payments", sa.Column("cancellation_reason", sa.String(1024), nullable=True)
    )
    op.add_column(
        "incoming_payments", sa.Column("sender_wallet_address", sa.String(2048), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("incoming_payments", "sender_wallet_address")
    op.drop_column("incoming_payments", "cancellation_reason")
    op.drop_column("incoming_payments", "cancelled_at")
