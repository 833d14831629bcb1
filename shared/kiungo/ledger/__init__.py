"""The double-entry ledger (DESIGN §4): accounts, two-phase transfers, group commit, checks."""

from kiungo.ledger.accounts import Account, AccountKind, Balance
from kiungo.ledger.check import CheckResult, run_checks
from kiungo.ledger.errors import (
    AlreadyPosted,
    AlreadyVoided,
    CreditLimitExceeded,
    DifferentAssets,
    InsufficientBalance,
    InsufficientLiquidity,
    InvalidAmount,
    LedgerError,
    LedgerUnavailable,
    PartialGroup,
    SameAccounts,
    TransferExists,
    TransferExpired,
    UnknownAccount,
    UnknownTransfer,
)
from kiungo.ledger.rules import Leg, Transfer, TransferState
from kiungo.ledger.service import Ledger, account_id_for

__all__ = [
    "Account",
    "AccountKind",
    "AlreadyPosted",
    "AlreadyVoided",
    "Balance",
    "CheckResult",
    "CreditLimitExceeded",
    "DifferentAssets",
    "InsufficientBalance",
    "InsufficientLiquidity",
    "InvalidAmount",
    "Ledger",
    "LedgerError",
    "LedgerUnavailable",
    "Leg",
    "PartialGroup",
    "SameAccounts",
    "Transfer",
    "TransferExists",
    "TransferExpired",
    "TransferState",
    "UnknownAccount",
    "UnknownTransfer",
    "account_id_for",
    "run_checks",
]
