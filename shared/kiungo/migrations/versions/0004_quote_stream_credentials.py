"""quotes keep the STREAM credentials their probe resolved, so a payment's first attempt need
not ask the receiver's SPSP endpoint again

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 01:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("quotes", sa.Column("stream_destination", sa.String(1023), nullable=True))
    op.add_column("quotes", sa.Column("stream_shared_secret", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    op.drop_column("quotes", "stream_shared_secret")
    op.drop_column("quotes", "stream_destination")
