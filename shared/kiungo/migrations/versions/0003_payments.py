"""payments: the sending fee a quote charges

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "quotes",
        sa.Column(
            "fee_amount", sa.Numeric(precision=20, scale=0), server_default="0", nullable=False
        ),
    )


def downgrade() -> None:
    op.drop_column("quotes", "fee_amount")
