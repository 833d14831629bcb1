"""The chart of accounts (DESIGN §4), as Rafiki's: one ledger per asset, each with a settlement
and a liquidity account; a liquidity account per peer, wallet address, incoming and outgoing
payment. Liquidity accounts can never be debited below zero; settlement accounts are their
mirror image (never credited beyond what was debited), so every ledger sums to zero.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass

__all__ = ["Account", "AccountKind", "Balance"]


class AccountKind(enum.StrEnum):
    SETTLEMENT = "SETTLEMENT"
    ASSET_LIQUIDITY = "ASSET_LIQUIDITY"
    PEER_LIQUIDITY = "PEER_LIQUIDITY"
    WALLET_ADDRESS = "WALLET_ADDRESS"
    INCOMING_PAYMENT = "INCOMING_PAYMENT"
    OUTGOING_PAYMENT = "OUTGOING_PAYMENT"

    @property
    def debits_must_not_exceed_credits(self) -> bool:
        return self is not AccountKind.SETTLEMENT

    @property
    def credits_must_not_exceed_debits(self) -> bool:
        return self is AccountKind.SETTLEMENT

    @property
    def is_liquidity_pool(self) -> bool:
        """Accounts whose shortfall is reported as InsufficientLiquidity (ILP T04)."""
        return self in (AccountKind.ASSET_LIQUIDITY, AccountKind.PEER_LIQUIDITY)


@dataclass(slots=True)
class Account:
    """An account row as the batch sees it: balances move in memory, then are written once."""

    id: uuid.UUID
    asset_id: uuid.UUID
    kind: AccountKind
    debits_posted: int
    credits_posted: int
    debits_pending: int
    credits_pending: int

    def copy(self) -> Account:
        return Account(
            self.id,
            self.asset_id,
            self.kind,
            self.debits_posted,
            self.credits_posted,
            self.debits_pending,
            self.credits_pending,
        )


@dataclass(frozen=True, slots=True)
class Balance:
    account_id: uuid.UUID
    kind: AccountKind
    debits_posted: int
    credits_posted: int
    debits_pending: int
    credits_pending: int

    @property
    def posted(self) -> int:
        """Credits minus debits that are final (for a settlement account, negative)."""
        return self.credits_posted - self.debits_posted

    @property
    def available(self) -> int:
        """What can still be debited: posted balance less pending debits."""
        return self.credits_posted - self.debits_posted - self.debits_pending
