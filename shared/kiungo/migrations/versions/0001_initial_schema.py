"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-23 22:32:05.492866
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "assets",
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("scale", sa.SmallInteger(), nullable=False),
        sa.Column("withdrawal_threshold", sa.Numeric(precision=20, scale=0), nullable=True),
        sa.Column("liquidity_threshold_low", sa.Numeric(precision=20, scale=0), nullable=True),
        sa.Column("liquidity_threshold_high", sa.Numeric(precision=20, scale=0), nullable=True),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("scale >= 0 AND scale <= 255", name=op.f("ck_assets_scale_range")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_assets")),
    )
    op.create_index(
        "uq_assets_code_scale",
        "assets",
        ["code", "scale"],
        unique=True,
        postgresql_where=sa.text("deleted_at IS NULL"),
    )
    op.create_table(
        "ledger_transfers",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("asset_id", sa.Uuid(), nullable=False),
        sa.Column("debit_account_id", sa.Uuid(), nullable=False),
        sa.Column("credit_account_id", sa.Uuid(), nullable=False),
        sa.Column("amount", sa.Numeric(precision=20, scale=0), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("group_id", sa.Uuid(), nullable=True),
        sa.Column(
            "code", sa.String(length=32), server_default=sa.text("'TRANSFER'"), nullable=False
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "state IN ('PENDING', 'POSTED', 'VOIDED', 'EXPIRED')",
            name=op.f("ck_ledger_transfers_state"),
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_ledger_transfers_amount_positive")),
        sa.CheckConstraint(
            "debit_account_id <> credit_account_id",
            name=op.f("ck_ledger_transfers_distinct_accounts"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_transfers")),
    )
    op.create_index(
        op.f("ix_ledger_transfers_credit_account_id"),
        "ledger_transfers",
        ["credit_account_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_ledger_transfers_debit_account_id"),
        "ledger_transfers",
        ["debit_account_id"],
        unique=False,
    )
    op.create_index(
        "ix_ledger_transfers_group_id",
        "ledger_transfers",
        ["group_id"],
        unique=False,
        postgresql_where=sa.text("group_id IS NOT NULL"),
    )
    op.create_index(
        "ix_ledger_transfers_pending_expiry",
        "ledger_transfers",
        ["expires_at"],
        unique=False,
        postgresql_where=sa.text("state = 'PENDING'"),
    )
    op.create_table(
        "fees",
        sa.Column("asset_id", sa.Uuid(), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column(
            "fixed_fee", sa.Numeric(precision=20, scale=0), server_default="0", nullable=False
        ),
        sa.Column("basis_point_fee", sa.Integer(), server_default="0", nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("type IN ('SENDING', 'RECEIVING')", name=op.f("ck_fees_type")),
        sa.CheckConstraint(
            "basis_point_fee >= 0 AND basis_point_fee <= 10000", name=op.f("ck_fees_basis_points")
        ),
        sa.ForeignKeyConstraint(["asset_id"], ["assets.id"], name=op.f("fk_fees_asset_id_assets")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fees")),
    )
    op.create_index(op.f("ix_fees_asset_id"), "fees", ["asset_id"], unique=False)
    op.create_table(
        "ledger_accounts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("asset_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column(
            "debits_posted",
            sa.Numeric(precision=39, scale=0),
            server_default=sa.text("0"),
            nullable=False,
        ),
        sa.Column(
            "credits_posted",
            sa.Numeric(precision=39, scale=0),
            server_default=sa.text("0"),
            nullable=False,
        ),
        sa.Column(
            "debits_pending",
            sa.Numeric(precision=39, scale=0),
            server_default=sa.text("0"),
            nullable=False,
        ),
        sa.Column(
            "credits_pending",
            sa.Numeric(precision=39, scale=0),
            server_default=sa.text("0"),
            nullable=False,
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "kind IN ('SETTLEMENT', 'ASSET_LIQUIDITY', 'PEER_LIQUIDITY', 'WALLET_ADDRESS', "
            "'INCOMING_PAYMENT', 'OUTGOING_PAYMENT')",
            name=op.f("ck_ledger_accounts_kind"),
        ),
        sa.CheckConstraint(
            "debits_posted >= 0 AND credits_posted >= 0 "
            "AND debits_pending >= 0 AND credits_pending >= 0",
            name=op.f("ck_ledger_accounts_balances_non_negative"),
        ),
        sa.ForeignKeyConstraint(
            ["asset_id"], ["assets.id"], name=op.f("fk_ledger_accounts_asset_id_assets")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_accounts")),
        sa.UniqueConstraint("kind", "owner_id", name="uq_ledger_accounts_kind_owner"),
    )
    op.create_index(
        op.f("ix_ledger_accounts_asset_id"), "ledger_accounts", ["asset_id"], unique=False
    )
    op.create_table(
        "peers",
        sa.Column("asset_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("static_ilp_address", sa.String(length=1023), nullable=False),
        sa.Column("http_endpoint", sa.String(length=2048), nullable=False),
        sa.Column("http_outgoing_token", sa.String(length=1024), nullable=False),
        sa.Column("max_packet_amount", sa.Numeric(precision=20, scale=0), nullable=True),
        sa.Column("liquidity_threshold", sa.Numeric(precision=20, scale=0), nullable=True),
        sa.Column("routes", sa.ARRAY(sa.String(length=1023)), server_default="{}", nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(["asset_id"], ["assets.id"], name=op.f("fk_peers_asset_id_assets")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_peers")),
        sa.UniqueConstraint("static_ilp_address", "asset_id", name="uq_peers_address_asset"),
    )
    op.create_index(op.f("ix_peers_asset_id"), "peers", ["asset_id"], unique=False)
    op.create_table(
        "wallet_addresses",
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("public_name", sa.String(length=255), nullable=True),
        sa.Column("asset_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="ACTIVE", nullable=False),
        sa.Column("deactivated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "additional_properties",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default="{}",
            nullable=False,
        ),
        sa.Column(
            "total_events_amount",
            sa.Numeric(precision=20, scale=0),
            server_default="0",
            nullable=False,
        ),
        sa.Column("process_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "status IN ('ACTIVE', 'INACTIVE')", name=op.f("ck_wallet_addresses_status")
        ),
        sa.ForeignKeyConstraint(
            ["asset_id"], ["assets.id"], name=op.f("fk_wallet_addresses_asset_id_assets")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wallet_addresses")),
        sa.UniqueConstraint("url", name=op.f("uq_wallet_addresses_url")),
    )
    op.create_index(
        op.f("ix_wallet_addresses_asset_id"), "wallet_addresses", ["asset_id"], unique=False
    )
    op.create_index(
        "ix_wallet_addresses_process_at",
        "wallet_addresses",
        ["process_at"],
        unique=False,
        postgresql_where=sa.text("process_at IS NOT NULL"),
    )
    op.create_table(
        "webhook_events",
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("data", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("process_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("withdrawal_account_id", sa.Uuid(), nullable=True),
        sa.Column("withdrawal_asset_id", sa.Uuid(), nullable=True),
        sa.Column("withdrawal_amount", sa.Numeric(precision=20, scale=0), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["withdrawal_asset_id"],
            ["assets.id"],
            name=op.f("fk_webhook_events_withdrawal_asset_id_assets"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_events")),
    )
    op.create_index(
        "ix_webhook_events_process_at",
        "webhook_events",
        ["process_at"],
        unique=False,
        postgresql_where=sa.text("process_at IS NOT NULL"),
    )
    op.create_index(op.f("ix_webhook_events_type"), "webhook_events", ["type"], unique=False)
    op.create_index(
        op.f("ix_webhook_events_withdrawal_asset_id"),
        "webhook_events",
        ["withdrawal_asset_id"],
        unique=False,
    )
    op.create_table(
        "incoming_payments",
        sa.Column("wallet_address_id", sa.Uuid(), nullable=False),
        sa.Column("asset_id", sa.Uuid(), nullable=False),
        sa.Column("incoming_amount", sa.Numeric(precision=20, scale=0), nullable=True),
        sa.Column(
            "received_amount", sa.Numeric(precision=20, scale=0), server_default="0", nullable=False
        ),
        sa.Column("state", sa.String(length=16), server_default="PENDING", nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("metadata", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("client", sa.String(length=2048), nullable=True),
        sa.Column("process_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "state IN ('PENDING', 'PROCESSING', 'COMPLETED', 'EXPIRED')",
            name=op.f("ck_incoming_payments_state"),
        ),
        sa.ForeignKeyConstraint(
            ["asset_id"], ["assets.id"], name=op.f("fk_incoming_payments_asset_id_assets")
        ),
        sa.ForeignKeyConstraint(
            ["wallet_address_id"],
            ["wallet_addresses.id"],
            name=op.f("fk_incoming_payments_wallet_address_id_wallet_addresses"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incoming_payments")),
    )
    op.create_index(
        op.f("ix_incoming_payments_asset_id"), "incoming_payments", ["asset_id"], unique=False
    )
    op.create_index(
        "ix_incoming_payments_process_at",
        "incoming_payments",
        ["process_at"],
        unique=False,
        postgresql_where=sa.text("process_at IS NOT NULL"),
    )
    op.create_index(
        op.f("ix_incoming_payments_wallet_address_id"),
        "incoming_payments",
        ["wallet_address_id"],
        unique=False,
    )
    op.create_table(
        "peer_incoming_tokens",
        sa.Column("peer_id", sa.Uuid(), nullable=False),
        sa.Column("token_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["peer_id"],
            ["peers.id"],
            name=op.f("fk_peer_incoming_tokens_peer_id_peers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_peer_incoming_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_peer_incoming_tokens_token_hash")),
    )
    op.create_index(
        op.f("ix_peer_incoming_tokens_peer_id"), "peer_incoming_tokens", ["peer_id"], unique=False
    )
    op.create_table(
        "quotes",
        sa.Column("wallet_address_id", sa.Uuid(), nullable=False),
        sa.Column("asset_id", sa.Uuid(), nullable=False),
        sa.Column("receiver", sa.String(length=2048), nullable=False),
        sa.Column("debit_amount", sa.Numeric(precision=20, scale=0), nullable=False),
        sa.Column("receive_amount", sa.Numeric(precision=20, scale=0), nullable=False),
        sa.Column("receive_asset_code", sa.String(length=32), nullable=False),
        sa.Column("receive_asset_scale", sa.SmallInteger(), nullable=False),
        sa.Column("max_packet_amount", sa.Numeric(precision=20, scale=0), nullable=True),
        sa.Column("min_exchange_rate_numerator", sa.Numeric(precision=40, scale=0), nullable=True),
        sa.Column(
            "min_exchange_rate_denominator", sa.Numeric(precision=40, scale=0), nullable=True
        ),
        sa.Column(
            "low_estimated_exchange_rate_numerator",
            sa.Numeric(precision=40, scale=0),
            nullable=True,
        ),
        sa.Column(
            "low_estimated_exchange_rate_denominator",
            sa.Numeric(precision=40, scale=0),
            nullable=True,
        ),
        sa.Column(
            "high_estimated_exchange_rate_numerator",
            sa.Numeric(precision=40, scale=0),
            nullable=True,
        ),
        sa.Column(
            "high_estimated_exchange_rate_denominator",
            sa.Numeric(precision=40, scale=0),
            nullable=True,
        ),
        sa.Column("estimated_exchange_rate", sa.Numeric(precision=40, scale=20), nullable=True),
        sa.Column("fee_id", sa.Uuid(), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["asset_id"], ["assets.id"], name=op.f("fk_quotes_asset_id_assets")
        ),
        sa.ForeignKeyConstraint(["fee_id"], ["fees.id"], name=op.f("fk_quotes_fee_id_fees")),
        sa.ForeignKeyConstraint(
            ["wallet_address_id"],
            ["wallet_addresses.id"],
            name=op.f("fk_quotes_wallet_address_id_wallet_addresses"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quotes")),
    )
    op.create_index(op.f("ix_quotes_asset_id"), "quotes", ["asset_id"], unique=False)
    op.create_index(op.f("ix_quotes_fee_id"), "quotes", ["fee_id"], unique=False)
    op.create_index(
        op.f("ix_quotes_wallet_address_id"), "quotes", ["wallet_address_id"], unique=False
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["webhook_events.id"],
            name=op.f("fk_webhook_deliveries_event_id_webhook_events"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
    )
    op.create_index(
        op.f("ix_webhook_deliveries_event_id"), "webhook_deliveries", ["event_id"], unique=False
    )
    op.create_table(
        "outgoing_payments",
        sa.Column("wallet_address_id", sa.Uuid(), nullable=False),
        sa.Column("quote_id", sa.Uuid(), nullable=False),
        sa.Column("peer_id", sa.Uuid(), nullable=True),
        sa.Column("state", sa.String(length=16), server_default="FUNDING", nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("state_attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "sent_amount", sa.Numeric(precision=20, scale=0), server_default="0", nullable=False
        ),
        sa.Column(
            "delivered_amount",
            sa.Numeric(precision=20, scale=0),
            server_default="0",
            nullable=False,
        ),
        sa.Column("metadata", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("client", sa.String(length=2048), nullable=True),
        sa.Column("grant_id", sa.String(length=255), nullable=True),
        sa.Column("process_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "state IN ('FUNDING', 'SENDING', 'COMPLETED', 'FAILED', 'CANCELLED')",
            name=op.f("ck_outgoing_payments_state"),
        ),
        sa.ForeignKeyConstraint(
            ["peer_id"], ["peers.id"], name=op.f("fk_outgoing_payments_peer_id_peers")
        ),
        sa.ForeignKeyConstraint(
            ["quote_id"], ["quotes.id"], name=op.f("fk_outgoing_payments_quote_id_quotes")
        ),
        sa.ForeignKeyConstraint(
            ["wallet_address_id"],
            ["wallet_addresses.id"],
            name=op.f("fk_outgoing_payments_wallet_address_id_wallet_addresses"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outgoing_payments")),
        sa.UniqueConstraint("quote_id", name=op.f("uq_outgoing_payments_quote_id")),
    )
    op.create_index(
        op.f("ix_outgoing_payments_peer_id"), "outgoing_payments", ["peer_id"], unique=False
    )
    op.create_index(
        "ix_outgoing_payments_process_at",
        "outgoing_payments",
        ["process_at"],
        unique=False,
        postgresql_where=sa.text("state = 'SENDING'"),
    )
    op.create_index(
        op.f("ix_outgoing_payments_wallet_address_id"),
        "outgoing_payments",
        ["wallet_address_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_outgoing_payments_wallet_address_id"), table_name="outgoing_payments")
    op.drop_index(
        "ix_outgoing_payments_process_at",
        table_name="outgoing_payments",
        postgresql_where=sa.text("state = 'SENDING'"),
    )
    op.drop_index(op.f("ix_outgoing_payments_peer_id"), table_name="outgoing_payments")
    op.drop_table("outgoing_payments")
    op.drop_index(op.f("ix_webhook_deliveries_event_id"), table_name="webhook_deliveries")
    op.drop_table("webhook_deliveries")
    op.drop_index(op.f("ix_quotes_wallet_address_id"), table_name="quotes")
    op.drop_index(op.f("ix_quotes_fee_id"), table_name="quotes")
    op.drop_index(op.f("ix_quotes_asset_id"), table_name="quotes")
    op.drop_table("quotes")
    op.drop_index(op.f("ix_peer_incoming_tokens_peer_id"), table_name="peer_incoming_tokens")
    op.drop_table("peer_incoming_tokens")
    op.drop_index(op.f("ix_incoming_payments_wallet_address_id"), table_name="incoming_payments")
    op.drop_index(
        "ix_incoming_payments_process_at",
        table_name="incoming_payments",
        postgresql_where=sa.text("process_at IS NOT NULL"),
    )
    op.drop_index(op.f("ix_incoming_payments_asset_id"), table_name="incoming_payments")
    op.drop_table("incoming_payments")
    op.drop_index(op.f("ix_webhook_events_withdrawal_asset_id"), table_name="webhook_events")
    op.drop_index(op.f("ix_webhook_events_type"), table_name="webhook_events")
    op.drop_index(
        "ix_webhook_events_process_at",
        table_name="webhook_events",
        postgresql_where=sa.text("process_at IS NOT NULL"),
    )
    op.drop_table("webhook_events")
    op.drop_index(
        "ix_wallet_addresses_process_at",
        table_name="wallet_addresses",
        postgresql_where=sa.text("process_at IS NOT NULL"),
    )
    op.drop_index(op.f("ix_wallet_addresses_asset_id"), table_name="wallet_addresses")
    op.drop_table("wallet_addresses")
    op.drop_index(op.f("ix_peers_asset_id"), table_name="peers")
    op.drop_table("peers")
    op.drop_index(op.f("ix_ledger_accounts_asset_id"), table_name="ledger_accounts")
    op.drop_table("ledger_accounts")
    op.drop_index(op.f("ix_fees_asset_id"), table_name="fees")
    op.drop_table("fees")
    op.drop_index(
        "ix_ledger_transfers_pending_expiry",
        table_name="ledger_transfers",
        postgresql_where=sa.text("state = 'PENDING'"),
    )
    op.drop_index(
        "ix_ledger_transfers_group_id",
        table_name="ledger_transfers",
        postgresql_where=sa.text("group_id IS NOT NULL"),
    )
    op.drop_index(op.f("ix_ledger_transfers_debit_account_id"), table_name="ledger_transfers")
    op.drop_index(op.f("ix_ledger_transfers_credit_account_id"), table_name="ledger_transfers")
    op.drop_table("ledger_transfers")
    op.drop_index(
        "uq_assets_code_scale", table_name="assets", postgresql_where=sa.text("deleted_at IS NULL")
    )
    op.drop_table("assets")
