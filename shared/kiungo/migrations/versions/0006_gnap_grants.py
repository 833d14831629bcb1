"""GNAP grants and access tokens: the authorization server's grants (client wallet address,
access, state, the continuation token's hash) and their access tokens (hash, expiry, revoked)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 04:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _timestamps() -> list[sa.Column[object]]:
    return [
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
    ]


def upgrade() -> None:
    op.create_table(
        "grants",
        sa.Column("client", sa.Text(), nullable=False),
        sa.Column("access", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("continue_token_hash", sa.String(length=64), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_grants")),
        sa.UniqueConstraint("continue_token_hash", name=op.f("uq_grants_continue_token_hash")),
    )
    op.create_table(
        "grant_access_tokens",
        sa.Column("grant_id", sa.Uuid(), nullable=False),
        sa.Column("value_hash", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        *_timestamps(),
        sa.ForeignKeyConstraint(
            ["grant_id"], ["grants.id"], name=op.f("fk_grant_access_tokens_grant_id_grants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_grant_access_tokens")),
        sa.UniqueConstraint("value_hash", name=op.f("uq_grant_access_tokens_value_hash")),
    )
    op.create_index(
        op.f("ix_grant_access_tokens_grant_id"), "grant_access_tokens", ["grant_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_grant_access_tokens_grant_id"), table_name="grant_access_tokens")
    op.drop_table("grant_access_tokens")
    op.drop_table("grants")
