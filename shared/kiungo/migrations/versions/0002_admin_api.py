"""admin api: webhook ordering per resource, liquidity alerts, asset ledger numbers

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 21:08:06.006957
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("assets", sa.Column("liquidity_alert", sa.String(length=8), nullable=True))
    op.add_column(
        "assets", sa.Column("ledger", sa.Integer(), sa.Identity(always=False), nullable=False)
    )
    op.create_unique_constraint(op.f("uq_assets_ledger"), "assets", ["ledger"])
    op.add_column(
        "peers",
        sa.Column("liquidity_threshold_high", sa.Numeric(precision=20, scale=0), nullable=True),
    )
    op.add_column("peers", sa.Column("liquidity_alert", sa.String(length=8), nullable=True))
    op.add_column(
        "webhook_events",
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=False), nullable=False),
    )
    op.add_column("webhook_events", sa.Column("resource_id", sa.Uuid(), nullable=True))
    op.add_column(
        "webhook_events", sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.create_index(
        "ix_webhook_events_resource_pending",
        "webhook_events",
        ["resource_id", "seq"],
        unique=False,
        postgresql_where=sa.text("process_at IS NOT NULL"),
    )
    op.create_index("ix_webhook_events_seq", "webhook_events", ["seq"], unique=True)
    op.create_index(
        "ix_incoming_payments_open_expiry",
        "incoming_payments",
        ["expires_at"],
        unique=False,
        postgresql_where=sa.text("state IN ('PENDING', 'PROCESSING')"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_incoming_payments_open_expiry",
        table_name="incoming_payments",
        postgresql_where=sa.text("state IN ('PENDING', 'PROCESSING')"),
    )
    op.drop_index("ix_webhook_events_seq", table_name="webhook_events")
    op.drop_index(
        "ix_webhook_events_resource_pending",
        table_name="webhook_events",
        postgresql_where=sa.text("process_at IS NOT NULL"),
    )
    op.drop_column("webhook_events", "delivered_at")
    op.drop_column("webhook_events", "resource_id")
    op.drop_column("webhook_events", "seq")
    op.drop_column("peers", "liquidity_alert")
    op.drop_column("peers", "liquidity_threshold_high")
    op.drop_constraint(op.f("uq_assets_ledger"), "assets", type_="unique")
    op.drop_column("assets", "ledger")
    op.drop_column("assets", "liquidity_alert")
