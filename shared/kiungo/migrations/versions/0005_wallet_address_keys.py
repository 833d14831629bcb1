"""wallet address keys: the Ed25519 JWKs wallet addresses sign Open Payments requests with, at
most one active per kid and wallet address

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 03:40:05.431530
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "wallet_address_keys",
        sa.Column("wallet_address_id", sa.Uuid(), nullable=False),
        sa.Column("kid", sa.String(length=255), nullable=False),
        sa.Column("x", sa.String(length=43), nullable=False),
        sa.Column("revoked", sa.Boolean(), server_default=sa.text("false"), nullable=False),
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
            ["wallet_address_id"],
            ["wallet_addresses.id"],
            name=op.f("fk_wallet_address_keys_wallet_address_id_wallet_addresses"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wallet_address_keys")),
    )
    op.create_index(
        op.f("ix_wallet_address_keys_wallet_address_id"),
        "wallet_address_keys",
        ["wallet_address_id"],
        unique=False,
    )
    op.create_index(
        "uq_wallet_address_keys_active_kid",
        "wallet_address_keys",
        ["wallet_address_id", "kid"],
        unique=True,
        postgresql_where=sa.text("NOT revoked"),
    )


def downgrade() -> None:
    op.drop_index(
        "uq_wallet_address_keys_active_kid",
        table_name="wallet_address_keys",
        postgresql_where=sa.text("NOT revoked"),
    )
    op.drop_index(
        op.f("ix_wallet_address_keys_wallet_address_id"), table_name="wallet_address_keys"
    )
    op.drop_table("wallet_address_keys")
