"""Ledger tables: accounts with their running balances, and transfers (DESIGN §4).

Balances are kept on the account row and changed only by the ledger service under row locks,
in the same transaction that writes the transfers; ``kiungo ledger check`` recomputes them
from the transfers.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    String,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from kiungo.models.base import U64, U128, Base, TimestampMixin

__all__ = ["LedgerAccount", "LedgerTransfer"]

_ACCOUNT_KINDS = (
    "'SETTLEMENT', 'ASSET_LIQUIDITY', 'PEER_LIQUIDITY', 'WALLET_ADDRESS', "
    "'INCOMING_PAYMENT', 'OUTGOING_PAYMENT'"
)
_TRANSFER_STATES = "'PENDING', 'POSTED', 'VOIDED', 'EXPIRED'"


class LedgerAccount(TimestampMixin, Base):
    __tablename__ = "ledger_accounts"
    __table_args__ = (
        UniqueConstraint("kind", "owner_id", name="uq_ledger_accounts_kind_owner"),
        CheckConstraint(f"kind IN ({_ACCOUNT_KINDS})", name="kind"),
        CheckConstraint(
            "debits_posted >= 0 AND credits_posted >= 0 "
            "AND debits_pending >= 0 AND credits_pending >= 0",
            name="balances_non_negative",
        ),
    )

    # Derived from (kind, owner) so every service can name an account without a lookup.
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    asset_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("assets.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    owner_id: Mapped[uuid.UUID]
    debits_posted: Mapped[Decimal] = mapped_column(U128, server_default=text("0"))
    credits_posted: Mapped[Decimal] = mapped_column(U128, server_default=text("0"))
    debits_pending: Mapped[Decimal] = mapped_column(U128, server_default=text("0"))
    credits_pending: Mapped[Decimal] = mapped_column(U128, server_default=text("0"))


class LedgerTransfer(TimestampMixin, Base):
    __tablename__ = "ledger_transfers"
    __table_args__ = (
        CheckConstraint(f"state IN ({_TRANSFER_STATES})", name="state"),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("debit_account_id <> credit_account_id", name="distinct_accounts"),
        # Few indexes on purpose: posting a transfer rewrites its row, and every index on it.
        # Expired holds are found through this partial index, which only pending rows enter.
        Index(
            "ix_ledger_transfers_pending_expiry",
            "expires_at",
            postgresql_where=text("state = 'PENDING'"),
        ),
        Index(
            "ix_ledger_transfers_group_id",
            "group_id",
            postgresql_where=text("group_id IS NOT NULL"),
        ),
    )

    # Chosen by the caller: the same id again never moves money twice.
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    # No foreign keys here on purpose: the ledger service writes a transfer only after loading
    # and locking both accounts, and the per-row FK triggers were half the cost of a batch.
    # `kiungo ledger check` verifies every transfer's accounts and asset.
    asset_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    debit_account_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    credit_account_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    amount: Mapped[Decimal] = mapped_column(U64)
    state: Mapped[str] = mapped_column(String(16))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    group_id: Mapped[uuid.UUID | None]
    code: Mapped[str] = mapped_column(String(32), server_default=text("'TRANSFER'"))
