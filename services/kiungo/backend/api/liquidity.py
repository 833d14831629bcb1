"""Moving liquidity: deposits, withdrawals (one- or two-phase) and their post/void; the
mutations that move an asset's or a peer's own liquidity.

Every movement is a ledger transfer with a caller-chosen id, so it happens once whatever is
retried; withdrawals with a timeout hold the money until ``postLiquidityWithdrawal`` or
``voidLiquidityWithdrawal`` (or the timeout, which releases it).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from datetime import timedelta
from typing import Any

import strawberry
from sqlalchemy import ARRAY, String, any_, bindparam, select

from kiungo.backend import peers
from kiungo.backend.api.assets import load_asset
from kiungo.backend.api.common import UInt64, parse_uuid
from kiungo.backend.context import Context
from kiungo.backend.errors import ApiError, ErrorCode, NotFound, Refusal, refusals_as
from kiungo.ledger import (
    AccountKind,
    AlreadyPosted,
    AlreadyVoided,
    InsufficientBalance,
    InvalidAmount,
    LedgerError,
    LedgerUnavailable,
    TransferExists,
    TransferExpired,
    UnknownAccount,
    UnknownTransfer,
)
from kiungo.ledger.rules import TransferState
from kiungo.models import WebhookEvent
from kiungo.models.sql import Statement, table

__all__ = [
    "AssetLiquidityMutation",
    "LiquidityMutation",
    "LiquidityMutationResponse",
    "PeerLiquidityMutation",
    "deposit",
    "ledger_errors",
    "replay_success",
    "success_response",
    "transfer_id",
    "withdraw",
    "withdraw_payment",
]

# The longest a two-phase withdrawal may hold money (Rafiki sets no bound; a year is plenty).
_MAX_TIMEOUT_SECONDS = 365 * 24 * 3600


@strawberry.type
class LiquidityMutationResponse:
    success: bool


@contextlib.contextmanager
def ledger_errors() -> Iterator[None]:
    """Ledger refusals as typed API errors, with Rafiki's LiquidityError name alongside."""
    try:
        yield
    except InsufficientBalance:
        raise ApiError(
            ErrorCode.FORBIDDEN, "insufficient balance", liquidityError="InsufficientBalance"
        ) from None
    except TransferExists:
        raise ApiError(
            ErrorCode.DUPLICATE,
            "a transfer with this id already exists",
            liquidityError="TransferExists",
        ) from None
    except UnknownTransfer:
        raise ApiError(
            ErrorCode.NOT_FOUND, "unknown transfer", liquidityError="UnknownTransfer"
        ) from None
    except AlreadyPosted:
        raise ApiError(
            ErrorCode.CONFLICT, "the transfer is already posted", liquidityError="AlreadyPosted"
        ) from None
    except AlreadyVoided:
        raise ApiError(
            ErrorCode.CONFLICT, "the transfer is already voided", liquidityError="AlreadyVoided"
        ) from None
    except TransferExpired:
        raise ApiError(
            ErrorCode.CONFLICT,
            "the withdrawal expired and its money was released",
            liquidityError="TransferExpired",
        ) from None
    except InvalidAmount:
        raise ApiError(
            ErrorCode.BAD_USER_INPUT, "amount must be above zero", liquidityError="AmountZero"
        ) from None
    except UnknownAccount:
        raise ApiError(ErrorCode.NOT_FOUND, "unknown account") from None
    except LedgerUnavailable:
        raise ApiError(
            ErrorCode.INTERNAL_SERVER_ERROR, "the ledger is unavailable; retry with the same id"
        ) from None
    except LedgerError as exc:
        raise ApiError(ErrorCode.FORBIDDEN, f"the ledger refused: {exc}") from None


def transfer_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except (ValueError, TypeError):
        raise ApiError(
            ErrorCode.BAD_USER_INPUT,
            f"id must be a UUID, not {value!r}",
            liquidityError="InvalidId",
        ) from None


def _amount(value: int) -> int:
    if value <= 0:
        raise ApiError(
            ErrorCode.BAD_USER_INPUT, "amount must be above zero", liquidityError="AmountZero"
        )
    return value


async def deposit(
    ctx: Context,
    kind: AccountKind,
    owner_id: uuid.UUID,
    asset_id: uuid.UUID,
    transfer: uuid.UUID,
    amount: int,
) -> None:
    _amount(amount)
    account = await ctx.ledger.ensure_account(kind, owner_id, asset_id)
    with ledger_errors():
        await ctx.ledger.deposit(transfer, account, amount)


async def withdraw(
    ctx: Context,
    kind: AccountKind,
    owner_id: uuid.UUID,
    asset_id: uuid.UUID,
    transfer: uuid.UUID,
    amount: int,
    timeout_seconds: int,
) -> None:
    _amount(amount)
    if timeout_seconds > _MAX_TIMEOUT_SECONDS:
        raise ApiError(
            ErrorCode.BAD_USER_INPUT, f"timeoutSeconds must be at most {_MAX_TIMEOUT_SECONDS}"
        )
    account = await ctx.ledger.ensure_account(kind, owner_id, asset_id)
    hold = timedelta(seconds=timeout_seconds) if timeout_seconds else None
    with ledger_errors():
        await ctx.ledger.withdraw(transfer, account, amount, hold_for=hold)


# Withdrawal ids of payments whose announcing event is gone (never, unless deleted by hand).
_PAYMENT_WITHDRAWALS = uuid.UUID("6f1c1d55-3d0a-4f51-9a43-2b7de1c0e8a1")
_events = table(WebhookEvent)
# The latest of a payment's events of these types.
_LATEST_EVENT = Statement(
    select(_events.c.id)
    .where(
        _events.c.resource_id == bindparam("resource_id"),
        _events.c.type == any_(bindparam("types", type_=ARRAY(String))),
    )
    .order_by(_events.c.seq.desc())
    .limit(1)
)


async def withdraw_payment(
    ctx: Context,
    kind: AccountKind,
    payment_id: uuid.UUID,
    asset_id: uuid.UUID,
    events: Sequence[str],
    timeout_seconds: int,
    what: str,
) -> None:
    """Withdraw everything a payment's account holds (an incoming payment's receipts, an
    outgoing payment's leftover). As Rafiki's, the withdrawal's id is that of the latest of
    ``events`` of the payment (the one that announced the money), which is what
    ``postLiquidityWithdrawal`` then takes, so the money is withdrawn once."""
    amount = await ctx.backend.available(kind, payment_id)
    if amount <= 0:
        raise ApiError(
            ErrorCode.BAD_USER_INPUT,
            f"the {what} has nothing to withdraw",
            liquidityError="AmountZero",
        )
    event_id = await _LATEST_EVENT.fetchval(ctx.pool, resource_id=payment_id, types=list(events))
    withdrawal_id = event_id or uuid.uuid5(_PAYMENT_WITHDRAWALS, str(payment_id))
    await withdraw(ctx, kind, payment_id, asset_id, withdrawal_id, amount, timeout_seconds)


async def _withdrawal(ctx: Context, withdrawal_id: str) -> uuid.UUID:
    transfer = transfer_id(withdrawal_id)
    found = await ctx.ledger.transfer(transfer)
    # Only withdrawals: a packet's hold is the connector's to post or void.
    if found is None or found.code != "WITHDRAWAL":
        raise ApiError(ErrorCode.NOT_FOUND, "unknown withdrawal", liquidityError="UnknownTransfer")
    if found.state is TransferState.POSTED:
        raise ApiError(
            ErrorCode.CONFLICT, "the withdrawal is already posted", liquidityError="AlreadyPosted"
        )
    if found.state is TransferState.VOIDED:
        raise ApiError(
            ErrorCode.CONFLICT, "the withdrawal is already voided", liquidityError="AlreadyVoided"
        )
    return transfer


@strawberry.input
class PostLiquidityWithdrawalInput:
    withdrawal_id: str
    idempotency_key: str


@strawberry.input
class VoidLiquidityWithdrawalInput:
    withdrawal_id: str
    idempotency_key: str


_SUCCESS: dict[str, Any] = {"success": True}


async def replay_success(_record: dict[str, Any]) -> LiquidityMutationResponse:
    """The replay of a liquidity mutation's result (it has no other than success)."""
    return LiquidityMutationResponse(success=True)


async def _settle_withdrawal(
    ctx: Context,
    mutation: str,
    input: PostLiquidityWithdrawalInput | VoidLiquidityWithdrawalInput,
    settle: Callable[[uuid.UUID], Awaitable[object]],
) -> LiquidityMutationResponse:
    """Post or void (``settle``) a two-phase withdrawal, once per idempotency key."""

    async def run() -> tuple[dict[str, Any], LiquidityMutationResponse]:
        transfer = await _withdrawal(ctx, input.withdrawal_id)
        with ledger_errors():
            await settle(transfer)
        return success_response()

    return await ctx.idempotent(mutation, input.idempotency_key, input, run, replay_success)


@strawberry.type
class LiquidityMutation:
    @strawberry.mutation(description="Post a two-phase liquidity withdrawal: the money leaves.")
    async def post_liquidity_withdrawal(
        self, info: strawberry.Info[Context, None], input: PostLiquidityWithdrawalInput
    ) -> LiquidityMutationResponse | None:
        return await _settle_withdrawal(
            info.context, "postLiquidityWithdrawal", input, info.context.ledger.post
        )

    @strawberry.mutation(description="Void a two-phase liquidity withdrawal: the money stays.")
    async def void_liquidity_withdrawal(
        self, info: strawberry.Info[Context, None], input: VoidLiquidityWithdrawalInput
    ) -> LiquidityMutationResponse | None:
        return await _settle_withdrawal(
            info.context, "voidLiquidityWithdrawal", input, info.context.ledger.void
        )


def success_response() -> tuple[dict[str, Any], LiquidityMutationResponse]:
    return _SUCCESS, LiquidityMutationResponse(success=True)


# -- an asset's and a peer's own liquidity ------------------------------------------------


@strawberry.input
class DepositAssetLiquidityInput:
    asset_id: str
    amount: UInt64
    id: str
    idempotency_key: str


@strawberry.input
class CreateAssetLiquidityWithdrawalInput:
    asset_id: str
    amount: UInt64
    id: str
    idempotency_key: str
    timeout_seconds: UInt64


@strawberry.input
class DepositPeerLiquidityInput:
    peer_id: str
    amount: UInt64
    id: str
    idempotency_key: str


@strawberry.input
class CreatePeerLiquidityWithdrawalInput:
    peer_id: str
    amount: UInt64
    id: str
    idempotency_key: str
    timeout_seconds: UInt64


# A peer's liquidity mutations refuse only an unknown peer.
_PEER_REFUSALS: tuple[tuple[type[Refusal], ErrorCode], ...] = ((NotFound, ErrorCode.NOT_FOUND),)

_OwnerLiquidityInput = (
    DepositAssetLiquidityInput
    | CreateAssetLiquidityWithdrawalInput
    | DepositPeerLiquidityInput
    | CreatePeerLiquidityWithdrawalInput
)


async def _asset_itself(ctx: Context, asset_id: uuid.UUID) -> uuid.UUID:
    await load_asset(ctx, asset_id)
    return asset_id


async def _peer_asset(ctx: Context, peer_id: uuid.UUID) -> uuid.UUID:
    with refusals_as(_PEER_REFUSALS):
        return await peers.peer_asset(ctx.pool, peer_id)


def _owner_mutation(
    owner: str,
    kind: AccountKind,
    asset_of: Callable[[Context, uuid.UUID], Awaitable[uuid.UUID]],
    input_type: type[_OwnerLiquidityInput],
    *,
    withdrawal: bool,
    description: str,
) -> Any:
    """The mutation depositing into (or, ``withdrawal``, withdrawing from) an asset's or a
    peer's liquidity account (``owner``: "asset" or "peer", whose id the input's
    ``<owner>_id`` is), once per idempotency key; ``asset_of`` refuses an unknown owner."""
    title = owner.capitalize()
    mutation = f"create{title}LiquidityWithdrawal" if withdrawal else f"deposit{title}Liquidity"

    async def resolve(
        info: strawberry.Info[Context, None], input: Any
    ) -> LiquidityMutationResponse | None:
        ctx = info.context
        owner_id = parse_uuid(getattr(input, f"{owner}_id"), f"{owner}Id")
        transfer = transfer_id(input.id)

        async def run() -> tuple[dict[str, Any], LiquidityMutationResponse]:
            asset_id = await asset_of(ctx, owner_id)
            if withdrawal:
                timeout = input.timeout_seconds
                await withdraw(ctx, kind, owner_id, asset_id, transfer, input.amount, timeout)
            else:
                await deposit(ctx, kind, owner_id, asset_id, transfer, input.amount)
            return success_response()

        return await ctx.idempotent(mutation, input.idempotency_key, input, run, replay_success)

    # The GraphQL argument's type: the input of this mutation.
    resolve.__annotations__ = {**resolve.__annotations__, "input": input_type}
    return strawberry.mutation(resolver=resolve, description=description)


@strawberry.type
class AssetLiquidityMutation:
    deposit_asset_liquidity = _owner_mutation(
        "asset",
        AccountKind.ASSET_LIQUIDITY,
        _asset_itself,
        DepositAssetLiquidityInput,
        withdrawal=False,
        description="Deposit liquidity into an asset (settlement → liquidity).",
    )
    create_asset_liquidity_withdrawal = _owner_mutation(
        "asset",
        AccountKind.ASSET_LIQUIDITY,
        _asset_itself,
        CreateAssetLiquidityWithdrawalInput,
        withdrawal=True,
        description="Withdraw asset liquidity; with timeoutSeconds > 0 it waits to be posted.",
    )


@strawberry.type
class PeerLiquidityMutation:
    deposit_peer_liquidity = _owner_mutation(
        "peer",
        AccountKind.PEER_LIQUIDITY,
        _peer_asset,
        DepositPeerLiquidityInput,
        withdrawal=False,
        description="Deposit liquidity into a peer (settlement → liquidity).",
    )
    create_peer_liquidity_withdrawal = _owner_mutation(
        "peer",
        AccountKind.PEER_LIQUIDITY,
        _peer_asset,
        CreatePeerLiquidityWithdrawalInput,
        withdrawal=True,
        description="Withdraw peer liquidity; with timeoutSeconds > 0 it waits to be posted.",
    )
