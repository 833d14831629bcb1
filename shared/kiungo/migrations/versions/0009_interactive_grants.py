"""Interactive grants: a grant's GNAP interaction (its id, nonces, state, reference, expiry,
browser session and the client's finish URI) and why a finalized grant ended; the Open
Payments client of a quote

Revision ID: 0009
Revises: 0008 (0008 is another branch's: whoever merges both chains 0009 after 0008)
Create Date: 2026-12-07 06:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = (
    ("finalization_reason", sa.String(length=16)),
    ("interact_id", sa.Uuid()),
    ("interact_nonce", sa.String(length=64)),
    ("interact_state", sa.String(length=16)),
    ("interact_ref", sa.String(length=64)),
    ("interact_expires_at", sa.DateTime(timezone=True)),
    ("interact_session_hash", sa.String(length=64)),
    ("client_nonce", sa.Text()),
    ("finish_uri", sa.Text()),
)


def upgrade() -> None:
    for name, kind in _COLUMNS:
        op.add_column("grants", sa.Column(name, kind, nullable=True))
    op.create_unique_constraint(op.f("uq_grants_interact_id"), "grants", ["interact_id"])
    op.add_column("quotes", sa.Column("client", sa.String(length=2048), nullable=True))


def downgrade() -> None:
    op.drop_column("quotes", "client")
    op.drop_constraint(op.f("uq_grants_interact_id"), "grants", type_="unique")
    for name, _kind in reversed(_COLUMNS):
        op.drop_column("grants", name)
