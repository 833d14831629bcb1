"""TigerBeetle's answers to a create, post or void as Kiungo's ledger errors
(kiungo.ledger.errors): one function for creates, one for posts and voids."""

from __future__ import annotations

import uuid

import tigerbeetle as tb

from kiungo.ledger import errors
from kiungo.ledger.accounts import AccountKind
from kiungo.ledger.rules import Leg

__all__ = ["create_error", "resolve_error"]

_S = tb.CreateTransferStatus


def create_error(
    status: tb.CreateTransferStatus,
    leg: Leg,
    role: str,
    kinds: dict[uuid.UUID, AccountKind],
) -> errors.LedgerError:
    if role == "limit":
        if status is _S.EXCEEDS_CREDITS:
            return errors.CreditLimitExceeded(
                f"account {leg.credit_account_id} would exceed {leg.credit_limit}"
            )
        if status is _S.EXISTS:
            return errors.TransferExists(f"transfer {leg.id} exists")
    if status is _S.EXCEEDS_CREDITS:
        kind = kinds.get(leg.debit_account_id)
        if kind is not None and kind.is_liquidity_pool:
            return errors.InsufficientLiquidity(
                f"account {leg.debit_account_id} has insufficient liquidity", leg.debit_account_id
            )
        return errors.InsufficientBalance(
            f"account {leg.debit_account_id} has insufficient balance", leg.debit_account_id
        )
    if status is _S.EXCEEDS_DEBITS:
        return errors.InsufficientBalance(
            f"account {leg.credit_account_id} cannot be credited that much", leg.credit_account_id
        )
    if status in (_S.DEBIT_ACCOUNT_NOT_FOUND, _S.CREDIT_ACCOUNT_NOT_FOUND):
        return errors.UnknownAccount(f"an account of transfer {leg.id} does not exist")
    if status is _S.ACCOUNTS_MUST_BE_DIFFERENT:
        return errors.SameAccounts("a transfer cannot debit and credit one account")
    if status in (
        _S.ACCOUNTS_MUST_HAVE_THE_SAME_LEDGER,
        _S.TRANSFER_MUST_HAVE_THE_SAME_LEDGER_AS_ACCOUNTS,
    ):
        return errors.DifferentAssets("both accounts of a leg must hold the same asset")
    if status is _S.CREDIT_ACCOUNT_ALREADY_CLOSED:
        return errors.CreditLimitExceeded(f"account {leg.credit_account_id} takes no more")
    if status is _S.DEBIT_ACCOUNT_ALREADY_CLOSED:
        return errors.InsufficientBalance(
            f"account {leg.debit_account_id} is closed", leg.debit_account_id
        )
    if status is _S.ID_ALREADY_FAILED:
        # TigerBeetle remembers an id whose transfer failed for a reason that may pass later
        # (a balance): the same id is refused for good, so a retry needs a new one.
        return errors.TransferExists(
            f"transfer {leg.id} failed before; its id cannot be used again"
        )
    if status.name.startswith("EXISTS") or status is _S.EXISTS:
        return errors.TransferExists(f"transfer {leg.id} exists")
    if status.name.startswith("OVERFLOWS"):
        return errors.InvalidAmount(f"transfer {leg.id} would overflow a balance")
    return errors.LedgerError(f"TigerBeetle refused transfer {leg.id}: {status.name}")


def resolve_error(
    status: tb.CreateTransferStatus, transfer_id: uuid.UUID, posting: bool
) -> errors.LedgerError:
    if status is _S.EXISTS:
        # The post (or void) under this transfer's derived id was created before.
        if posting:
            return errors.AlreadyPosted(f"transfer {transfer_id} is already posted")
        return errors.AlreadyVoided(f"transfer {transfer_id} is already voided")
    if status in (_S.PENDING_TRANSFER_ALREADY_POSTED, _S.PENDING_TRANSFER_NOT_PENDING):
        return errors.AlreadyPosted(f"transfer {transfer_id} is already posted")
    if status is _S.PENDING_TRANSFER_ALREADY_VOIDED:
        return errors.AlreadyVoided(f"transfer {transfer_id} is already voided")
    if status is _S.PENDING_TRANSFER_EXPIRED:
        return errors.TransferExpired(f"transfer {transfer_id} expired")
    if status is _S.PENDING_TRANSFER_NOT_FOUND:
        return errors.UnknownTransfer(f"transfer {transfer_id} does not exist")
    if status.name.startswith("EXISTS"):
        if posting:
            return errors.AlreadyPosted(f"transfer {transfer_id} is already posted")
        return errors.AlreadyVoided(f"transfer {transfer_id} is already voided")
    return errors.LedgerError(f"TigerBeetle refused to resolve {transfer_id}: {status.name}")
