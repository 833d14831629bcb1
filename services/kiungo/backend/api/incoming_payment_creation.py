"""Creating an incoming payment, as ``createIncomingPayment`` and ``createReceiver`` both do:
the request's checks with their GraphQL errors, then
:func:`kiungo.payments.incoming.store.create` (the payment and its event)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from kiungo.backend.api.common import AmountInput, JSONObject, metadata_json
from kiungo.backend.context import Context
from kiungo.backend.errors import ApiError, ErrorCode, bad_input
from kiungo.models import WalletAddressStatus
from kiungo.payments.incoming import InvalidExpiry, expiry, store

__all__ = ["NewIncomingPayment", "create_incoming_payment", "new_incoming_payment"]


@dataclass(frozen=True, slots=True)
class NewIncomingPayment:
    """A request to create an incoming payment, checked as far as it can be without reading."""

    created_at: datetime
    expires_at: datetime
    incoming_amount: AmountInput | None
    metadata: JSONObject | None
    sender_wallet_address: str | None = None


def new_incoming_payment(
    ctx: Context,
    expires_at: str | None,
    incoming_amount: AmountInput | None,
    metadata: JSONObject | None,
    sender_wallet_address: str | None = None,
) -> NewIncomingPayment:
    """The request's own checks (BAD_USER_INPUT), before anything is read or written."""
    now = datetime.now(UTC)
    longest = timedelta(milliseconds=ctx.backend.settings.incoming_payment_expiry_max_ms)
    try:
        moment = expiry(expires_at, now, longest)
    except InvalidExpiry as exc:
        raise bad_input(str(exc), field="expiresAt") from None
    metadata_json(metadata)
    if incoming_amount is not None and incoming_amount.value <= 0:
        raise bad_input("incomingAmount must be above zero", field="incomingAmount")
    return NewIncomingPayment(now, moment, incoming_amount, metadata, sender_wallet_address)


async def create_incoming_payment(
    ctx: Context, wallet: asyncpg.Record, new: NewIncomingPayment
) -> dict[str, Any]:
    """Create ``new`` on ``wallet`` (a row of
    :data:`~kiungo.payments.receivers.WALLET_ADDRESS_RECEIVER_BY_ID`): INACTIVE for an inactive
    wallet address, BAD_USER_INPUT for an amount in another asset."""
    if wallet["status"] != WalletAddressStatus.ACTIVE:
        raise ApiError(ErrorCode.INACTIVE, "the wallet address is inactive")
    code, scale = wallet["asset_code"], wallet["asset_scale"]
    amount = new.incoming_amount
    if amount is not None and (amount.asset_code, amount.asset_scale) != (code, scale):
        raise bad_input(
            f"incomingAmount must be in the wallet address's asset, {code} at scale {scale}",
            field="incomingAmount",
        )
    return await store.create(
        ctx.pool,
        wallet,
        incoming_amount=None if amount is None else amount.value,
        expires_at=new.expires_at,
        metadata=new.metadata,
        created_at=new.created_at,
        sender_wallet_address=new.sender_wallet_address,
    )
