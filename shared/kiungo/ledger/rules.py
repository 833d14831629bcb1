"""The ledger's rules, applied in memory to one batch of operations (sans-IO).

The service loads and locks every account and transfer a batch touches, calls
:func:`apply_batch`, and writes back what changed: new transfers, transfers whose state moved,
and each changed account once. Operations are applied in arrival order, each all-or-nothing,
so a batch gives exactly the results the same operations would give one at a time.

Invariants (TigerBeetle's, DESIGN §4):
* every leg debits one account and credits another of the same asset by the same amount, so
  each ledger's debits equal its credits, posted and pending alike;
* an account whose kind says debits must not exceed credits never has
  ``debits_posted + debits_pending > credits_posted`` (and the mirror rule for settlement);
* a transfer id names one transfer forever; replaying it returns the original;
* a pending transfer past its timeout is expired: its hold is released and it cannot be posted.

``now`` is the database's clock as the batch read it (:mod:`kiungo.ledger.batch_commit`): a hold's
timeout is set and judged on that one clock, whichever replica creates, posts or sweeps it.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from kiungo.ilp.oer import MAX_UINT64
from kiungo.ledger import errors
from kiungo.ledger.accounts import Account

__all__ = [
    "BatchOutcome",
    "CreateTransfers",
    "ExpireTransfers",
    "Leg",
    "Operation",
    "PostTransfers",
    "Transfer",
    "TransferState",
    "VoidTransfers",
    "apply_batch",
]


class TransferState(enum.StrEnum):
    PENDING = "PENDING"
    POSTED = "POSTED"
    VOIDED = "VOIDED"
    EXPIRED = "EXPIRED"


@dataclass(frozen=True, slots=True)
class Leg:
    """One debit and credit. ``credit_limit`` caps what the credit account may have received
    (posted and pending), checked atomically with the transfer: an incoming payment's amount.
    ``credit_until`` is when the credit account stops taking it (on the batch's clock, the
    database's): an incoming payment's expiry, so that no packet lands after the payment's
    expiry worker has read what it received."""

    id: uuid.UUID
    debit_account_id: uuid.UUID
    credit_account_id: uuid.UUID
    amount: int
    credit_limit: int | None = None
    credit_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class CreateTransfers:
    """Legs that succeed or fail together; pending (two-phase) when ``timeout`` is given."""

    legs: tuple[Leg, ...]
    timeout: timedelta | None = None
    code: str = "TRANSFER"


@dataclass(frozen=True, slots=True)
class PostTransfers:
    ids: tuple[uuid.UUID, ...]


@dataclass(frozen=True, slots=True)
class VoidTransfers:
    ids: tuple[uuid.UUID, ...]


@dataclass(frozen=True, slots=True)
class ExpireTransfers:
    """Release these holds if they are past their timeout, and nothing else: the sweep's
    operation. (A void would release a hold that is not due, say one whose Fulfill is on its
    way back, as VOIDED.)"""

    ids: tuple[uuid.UUID, ...]


Operation = CreateTransfers | PostTransfers | VoidTransfers | ExpireTransfers


@dataclass(slots=True)
class Transfer:
    id: uuid.UUID
    asset_id: uuid.UUID
    debit_account_id: uuid.UUID
    credit_account_id: uuid.UUID
    amount: int
    state: TransferState
    expires_at: datetime | None
    group_id: uuid.UUID | None
    code: str


@dataclass(slots=True)
class BatchOutcome:
    results: list[list[Transfer] | errors.LedgerError]
    created: list[Transfer]
    state_changed: dict[uuid.UUID, Transfer]
    accounts_changed: dict[uuid.UUID, Account]


def _check(account: Account) -> bool:
    kind = account.kind
    if kind.debits_must_not_exceed_credits:
        return account.debits_posted + account.debits_pending <= account.credits_posted
    if kind.credits_must_not_exceed_debits:
        return account.credits_posted + account.credits_pending <= account.debits_posted
    return True


def _release(transfer: Transfer, accounts: dict[uuid.UUID, Account], state: TransferState) -> None:
    accounts[transfer.debit_account_id].debits_pending -= transfer.amount
    accounts[transfer.credit_account_id].credits_pending -= transfer.amount
    transfer.state = state


def apply_batch(
    operations: list[Operation],
    accounts: dict[uuid.UUID, Account],
    transfers: dict[uuid.UUID, Transfer],
    now: datetime,
) -> BatchOutcome:
    """Apply ``operations`` in order to the loaded ``accounts`` and ``transfers`` (mutated)."""
    outcome = BatchOutcome([], [], {}, {})
    changed_accounts = outcome.accounts_changed
    state_changed = outcome.state_changed
    # The legs of each multi-leg transfer among those loaded (and those this batch creates).
    groups: dict[uuid.UUID, set[uuid.UUID]] = {}

    # Holds past their timeout release themselves before anything else looks at a balance.
    for transfer in transfers.values():
        if transfer.group_id is not None:
            groups.setdefault(transfer.group_id, set()).add(transfer.id)
        if (
            transfer.state is TransferState.PENDING
            and transfer.expires_at is not None
            and transfer.expires_at <= now
            and transfer.debit_account_id in accounts
            and transfer.credit_account_id in accounts
        ):
            _release(transfer, accounts, TransferState.EXPIRED)
            state_changed[transfer.id] = transfer
            changed_accounts[transfer.debit_account_id] = accounts[transfer.debit_account_id]
            changed_accounts[transfer.credit_account_id] = accounts[transfer.credit_account_id]

    for operation in operations:
        try:
            if isinstance(operation, CreateTransfers):
                result = _create(operation, accounts, transfers, now, outcome, groups)
            elif isinstance(operation, ExpireTransfers):
                # Loaded, so released above if they are due: what they are now.
                result = [transfers[i] for i in operation.ids if i in transfers]
            else:
                _resolve(operation, accounts, transfers, now, outcome, groups)
                result = [transfers[i] for i in operation.ids]
        except errors.LedgerError as error:
            outcome.results.append(error)
        else:
            outcome.results.append(result)
    return outcome


def _create(
    operation: CreateTransfers,
    accounts: dict[uuid.UUID, Account],
    transfers: dict[uuid.UUID, Transfer],
    now: datetime,
    outcome: BatchOutcome,
    groups: dict[uuid.UUID, set[uuid.UUID]],
) -> list[Transfer]:
    legs = operation.legs
    if not legs:
        raise errors.InvalidAmount("a transfer needs at least one leg")
    pending = operation.timeout is not None
    if pending and operation.timeout is not None and operation.timeout <= timedelta(0):
        raise errors.InvalidAmount("a pending transfer's timeout must be positive")
    # A request whose legs share an id is malformed whatever exists already (checked before the
    # replay test, as TigerBeetle's ledger does: it refused where this answered a replay).
    if len({leg.id for leg in legs}) != len(legs):
        raise errors.TransferExists("two legs share one id")
    existing = [transfers.get(leg.id) for leg in legs]
    if any(t is not None for t in existing):
        if all(
            t is not None
            and t.debit_account_id == leg.debit_account_id
            and t.credit_account_id == leg.credit_account_id
            and t.amount == leg.amount
            and (t.expires_at is not None) == pending
            for t, leg in zip(existing, legs, strict=True)
        ):
            return [t for t in existing if t is not None]  # a replay: the original result
        raise errors.TransferExists(
            f"transfer {next(t for t in existing if t is not None).id} exists"
        )

    scratch: dict[uuid.UUID, Account] = {}
    for leg in legs:
        if not 0 < leg.amount <= MAX_UINT64:
            raise errors.InvalidAmount(f"amount {leg.amount} is not between 1 and 2^64-1")
        if leg.debit_account_id == leg.credit_account_id:
            raise errors.SameAccounts("a transfer cannot debit and credit one account")
        for account_id in (leg.debit_account_id, leg.credit_account_id):
            if account_id not in scratch:
                account = accounts.get(account_id)
                if account is None:
                    raise errors.UnknownAccount(f"account {account_id} does not exist")
                scratch[account_id] = account.copy()
        debit = scratch[leg.debit_account_id]
        credit = scratch[leg.credit_account_id]
        if debit.asset_id != credit.asset_id:
            raise errors.DifferentAssets("both accounts of a leg must hold the same asset")
        if pending:
            debit.debits_pending += leg.amount
            credit.credits_pending += leg.amount
        else:
            debit.debits_posted += leg.amount
            credit.credits_posted += leg.amount
        if not _check(debit):
            if debit.kind.is_liquidity_pool:
                raise errors.InsufficientLiquidity(
                    f"account {debit.id} has insufficient liquidity", debit.id
                )
            raise errors.InsufficientBalance(
                f"account {debit.id} has insufficient balance", debit.id
            )
        if not _check(credit):
            raise errors.InsufficientBalance(
                f"account {credit.id} cannot be credited that much", credit.id
            )
        if (
            leg.credit_limit is not None
            and credit.credits_posted + credit.credits_pending > leg.credit_limit
        ):
            raise errors.CreditLimitExceeded(f"account {credit.id} would exceed {leg.credit_limit}")
        if leg.credit_until is not None and now >= leg.credit_until:
            raise errors.CreditLimitExceeded(
                f"account {credit.id} takes nothing after {leg.credit_until}"
            )

    for account_id, account in scratch.items():
        accounts[account_id] = account
        outcome.accounts_changed[account_id] = account
    expires_at = now + operation.timeout if operation.timeout is not None else None
    group_id = legs[0].id if len(legs) > 1 else None
    state = TransferState.PENDING if pending else TransferState.POSTED
    created = []
    for leg in legs:
        transfer = Transfer(
            leg.id,
            scratch[leg.debit_account_id].asset_id,
            leg.debit_account_id,
            leg.credit_account_id,
            leg.amount,
            state,
            expires_at,
            group_id,
            operation.code,
        )
        transfers[leg.id] = transfer
        outcome.created.append(transfer)
        created.append(transfer)
    if group_id is not None:
        groups[group_id] = {leg.id for leg in legs}
    return created


def _resolve(
    operation: PostTransfers | VoidTransfers,
    accounts: dict[uuid.UUID, Account],
    transfers: dict[uuid.UUID, Transfer],
    now: datetime,
    outcome: BatchOutcome,
    groups: dict[uuid.UUID, set[uuid.UUID]],
) -> None:
    posting = isinstance(operation, PostTransfers)
    if not operation.ids:
        raise errors.UnknownTransfer("no transfer named")
    targets = []
    for transfer_id in operation.ids:
        transfer = transfers.get(transfer_id)
        if transfer is None:
            raise errors.UnknownTransfer(f"transfer {transfer_id} does not exist")
        if transfer.state is TransferState.POSTED:
            raise errors.AlreadyPosted(f"transfer {transfer_id} is already posted")
        if transfer.state is TransferState.VOIDED:
            raise errors.AlreadyVoided(f"transfer {transfer_id} is already voided")
        if transfer.state is TransferState.EXPIRED or (
            transfer.expires_at is not None and transfer.expires_at <= now
        ):
            raise errors.TransferExpired(f"transfer {transfer_id} expired")
        if transfer.debit_account_id not in accounts or transfer.credit_account_id not in accounts:
            raise errors.UnknownAccount(f"accounts of transfer {transfer_id} are not loaded")
        targets.append(transfer)
    named = {t.id for t in targets}
    if len(named) != len(targets):
        raise errors.UnknownTransfer("a transfer is named twice")
    for transfer in targets:
        if transfer.group_id is not None and not groups.get(transfer.group_id, set()) <= named:
            raise errors.PartialGroup(
                f"transfer {transfer.id} is one leg of several: name them all"
            )
    for transfer in targets:
        debit = accounts[transfer.debit_account_id]
        credit = accounts[transfer.credit_account_id]
        _release(transfer, accounts, TransferState.POSTED if posting else TransferState.VOIDED)
        if posting:
            debit.debits_posted += transfer.amount
            credit.credits_posted += transfer.amount
        outcome.state_changed[transfer.id] = transfer
        outcome.accounts_changed[debit.id] = debit
        outcome.accounts_changed[credit.id] = credit
