"""How Kiungo's accounts and transfers are written as TigerBeetle records, and read back.

**Accounts.** An asset's TigerBeetle ledger is the number Postgres already gives every asset
(``assets.ledger``, an identity column, unique and never reused: what Rafiki does and what
``accountingTransfers`` reports); the asset's uuid is also in each account's
``user_data_128``. An account's ``code`` is its kind (:data:`KIND_CODES`), its flags the kind's
rule (liquidity accounts ``debits_must_not_exceed_credits``, settlement accounts
``credits_must_not_exceed_debits``).

**Transfers.** Several legs are one linked chain. A leg's ``user_data_128`` is the first leg's
Kiungo id (its group when ``user_data_32``, the number of legs, is above 1); ``user_data_64``
bit 0 says it carries a hidden limit leg (kiungo.ledger.tigerbeetle, "Credit limits") and bits
8-15 which try of its id it is (kiungo.ledger.tigerbeetle_ids). The Kiungo id of a transfer
read back is its own id on a first try, else ``user_data_128`` for a single leg; the later legs
of a retried multi-leg transfer are listed (``transfers_of``, ``history``) under their try's id.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import tigerbeetle as tb

from kiungo.ledger.accounts import AccountKind
from kiungo.ledger.rules import Transfer, TransferState

__all__ = [
    "ATTEMPT_SHIFT",
    "CONTROL_CODE",
    "HAS_LIMIT_LEG",
    "KINDS",
    "KIND_CODES",
    "LIMIT_CODE",
    "SINK_CODE",
    "TRANSFER_CODES",
    "copy_transfer",
    "expiry",
    "from_tb",
    "tb_account",
    "within_flags",
]

KIND_CODES: dict[AccountKind, int] = {
    AccountKind.SETTLEMENT: 1,
    AccountKind.ASSET_LIQUIDITY: 2,
    AccountKind.PEER_LIQUIDITY: 3,
    AccountKind.WALLET_ADDRESS: 4,
    AccountKind.INCOMING_PAYMENT: 5,
    AccountKind.OUTGOING_PAYMENT: 6,
}
KINDS = {code: kind for kind, code in KIND_CODES.items()}
# Accounts of the TigerBeetle ledger's own, not in ledger_accounts: limit sinks and controls.
SINK_CODE = 100
CONTROL_CODE = 101

# Every code the services give a transfer (kiungo.connector.owed's LATE_POST among them).
TRANSFER_CODES = {"TRANSFER": 1, "DEPOSIT": 2, "WITHDRAWAL": 3, "LATE_POST": 4}
_CODE_NAMES = {code: name for name, code in TRANSFER_CODES.items()}
LIMIT_CODE = 100

HAS_LIMIT_LEG = 1
# user_data_64 bits 8 to 15: which try of its Kiungo id a transfer is.
ATTEMPT_SHIFT = 8
_F = tb.TransferFlags


def tb_account(
    account_id: uuid.UUID, asset_id: uuid.UUID, kind: AccountKind, ledger: int
) -> tb.Account:
    flags = tb.AccountFlags.NONE
    if kind.debits_must_not_exceed_credits:
        flags |= tb.AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
    if kind.credits_must_not_exceed_debits:
        flags |= tb.AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS
    return tb.Account(
        id=account_id.int,
        user_data_128=asset_id.int,
        ledger=ledger,
        code=KIND_CODES[kind],
        flags=flags,
    )


def within_flags(kind: AccountKind, a: tb.Account) -> bool:
    if kind.debits_must_not_exceed_credits:
        return a.debits_posted + a.debits_pending <= a.credits_posted
    if kind.credits_must_not_exceed_debits:
        return a.credits_posted + a.credits_pending <= a.debits_posted
    return True


def expiry(timestamp: int, timeout: int) -> datetime:
    return datetime.fromtimestamp(timestamp / 1e9 + timeout, UTC)


def from_tb(t: tb.Transfer, asset_id: uuid.UUID, kiungo_id: uuid.UUID | None = None) -> Transfer:
    """Kiungo's view of a TigerBeetle transfer. Its Kiungo id is ``kiungo_id`` when known,
    else its own id on a first try, else (a later try) the one in ``user_data_128`` for a
    transfer of one leg; a later leg of a retried multi-leg transfer shows its try's id."""
    pending = bool(t.flags & _F.PENDING)
    attempt = (t.user_data_64 >> ATTEMPT_SHIFT) & 0xFF
    several = t.user_data_32 > 1
    if kiungo_id is None:
        kiungo_id = uuid.UUID(int=t.user_data_128 if attempt and not several else t.id)
    return Transfer(
        kiungo_id,
        asset_id,
        uuid.UUID(int=t.debit_account_id),
        uuid.UUID(int=t.credit_account_id),
        t.amount,
        TransferState.PENDING if pending else TransferState.POSTED,
        expiry(t.timestamp, t.timeout) if pending else None,
        uuid.UUID(int=t.user_data_128) if several else None,
        _CODE_NAMES.get(t.code, str(t.code)),
    )


def copy_transfer(t: Transfer) -> Transfer:
    return Transfer(
        t.id,
        t.asset_id,
        t.debit_account_id,
        t.credit_account_id,
        t.amount,
        t.state,
        t.expires_at,
        t.group_id,
        t.code,
    )
