"""Wallet address keys in the admin API, as Rafiki names them: ``createWalletAddressKey``,
``revokeWalletAddressKey`` and ``WalletAddress.walletAddressKeys``; the rules and the storage
are :mod:`kiungo.openpayments.wallet_address_keys`."""

from __future__ import annotations

import enum
import uuid
from typing import Any

import asyncpg
import strawberry
from sqlalchemy import bindparam

from kiungo.backend.api.common import PageInfo, iso, parse_uuid
from kiungo.backend.api.pagination import Listing, PageRequest, connection, fetch_listing
from kiungo.backend.context import Context
from kiungo.backend.errors import ApiError, ErrorCode
from kiungo.models import WalletAddressKey as WalletAddressKeyModel
from kiungo.models.sql import table
from kiungo.openpayments import wallet_address_keys as domain

__all__ = [
    "WalletAddressKey",
    "WalletAddressKeyConnection",
    "WalletAddressKeyMutation",
    "page_wallet_address_keys",
]

# What each refusal of the key domain is in the API.
_CODES: tuple[tuple[type[domain.KeyRefusal], ErrorCode], ...] = (
    (domain.InvalidJwk, ErrorCode.BAD_USER_INPUT),
    (domain.DuplicateKey, ErrorCode.DUPLICATE),
    (domain.KeyNotFound, ErrorCode.NOT_FOUND),
    (domain.WalletAddressNotFound, ErrorCode.NOT_FOUND),
)
_KEYS = Listing(
    domain.KEY_QUERY.where(
        table(WalletAddressKeyModel).c.wallet_address_id == bindparam("wallet_address_id")
    )
)


def _api_error(error: domain.KeyRefusal) -> ApiError:
    code = next(
        (code for kind, code in _CODES if isinstance(error, kind)),
        ErrorCode.INTERNAL_SERVER_ERROR,
    )
    return ApiError(code, error.message, **error.details)


# GraphQL enum values are the members' names: Rafiki's spellings.
@strawberry.enum
class Alg(enum.Enum):
    EdDSA = "EdDSA"


@strawberry.enum
class Kty(enum.Enum):
    OKP = "OKP"


@strawberry.enum
class Crv(enum.Enum):
    Ed25519 = "Ed25519"


@strawberry.type
class Jwk:
    kid: str = strawberry.field(description="Key id.")
    x: str = strawberry.field(description="Base64url-encoded public key.")
    alg: Alg = strawberry.field(description="Cryptographic algorithm family: EdDSA only.")
    kty: Kty = strawberry.field(description="Key type: OKP only.")
    crv: Crv = strawberry.field(description="Curve the key pair is derived from: Ed25519 only.")


@strawberry.input
class JwkInput:
    kid: str
    x: str
    alg: Alg
    kty: Kty
    crv: Crv


@strawberry.type
class WalletAddressKey:
    id: strawberry.ID
    wallet_address_id: strawberry.ID
    jwk: Jwk
    revoked: bool
    created_at: str

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> WalletAddressKey:
        return cls(
            id=strawberry.ID(str(row["id"])),
            wallet_address_id=strawberry.ID(str(row["wallet_address_id"])),
            jwk=Jwk(kid=row["kid"], x=row["x"], alg=Alg.EdDSA, kty=Kty.OKP, crv=Crv.Ed25519),
            revoked=row["revoked"],
            created_at=iso(row["created_at"]),
        )


@strawberry.type
class WalletAddressKeyEdge:
    node: WalletAddressKey
    cursor: str


@strawberry.type
class WalletAddressKeyConnection:
    page_info: PageInfo
    edges: list[WalletAddressKeyEdge]


async def page_wallet_address_keys(
    ctx: Context, wallet_address_id: uuid.UUID, page: PageRequest
) -> WalletAddressKeyConnection:
    rows, page_info, cursors = await fetch_listing(
        ctx.pool, _KEYS, page, {"wallet_address_id": wallet_address_id}
    )
    return connection(
        WalletAddressKeyConnection,
        WalletAddressKeyEdge,
        WalletAddressKey.from_row,
        rows,
        page_info,
        cursors,
    )


@strawberry.input
class CreateWalletAddressKeyInput:
    wallet_address_id: str
    jwk: JwkInput
    idempotency_key: str | None = None


@strawberry.input
class RevokeWalletAddressKeyInput:
    id: str
    idempotency_key: str | None = None


@strawberry.type
class CreateWalletAddressKeyMutationResponse:
    wallet_address_key: WalletAddressKey | None


@strawberry.type
class RevokeWalletAddressKeyMutationResponse:
    wallet_address_key: WalletAddressKey | None


async def _load(ctx: Context, record: dict[str, Any]) -> WalletAddressKey:
    try:
        row = await domain.load_key(ctx.pool, uuid.UUID(record["id"]))
    except domain.KeyRefusal as error:
        raise _api_error(error) from None
    return WalletAddressKey.from_row(row)


@strawberry.type
class WalletAddressKeyMutation:
    @strawberry.mutation(
        description="Add a public key (an Ed25519 JWK) to a wallet address: Open Payments "
        "requests signed with it are the wallet address's. At most one active key per kid."
    )
    async def create_wallet_address_key(
        self, info: strawberry.Info[Context, None], input: CreateWalletAddressKeyInput
    ) -> CreateWalletAddressKeyMutationResponse | None:
        ctx = info.context
        wallet_id = parse_uuid(input.wallet_address_id, "walletAddressId")
        given = input.jwk
        try:
            jwk = domain.parse_jwk(
                kid=given.kid,
                x=given.x,
                kty=given.kty.value,
                crv=given.crv.value,
                alg=given.alg.value,
            )
        except domain.KeyRefusal as error:
            raise _api_error(error) from None

        async def run() -> tuple[dict[str, Any], CreateWalletAddressKeyMutationResponse]:
            try:
                row = await domain.create_key(ctx.pool, wallet_id, jwk)
            except domain.KeyRefusal as error:
                raise _api_error(error) from None
            return {"id": str(row["id"])}, CreateWalletAddressKeyMutationResponse(
                wallet_address_key=WalletAddressKey.from_row(row)
            )

        async def replay(record: dict[str, Any]) -> CreateWalletAddressKeyMutationResponse:
            return CreateWalletAddressKeyMutationResponse(
                wallet_address_key=await _load(ctx, record)
            )

        return await ctx.idempotent(
            "createWalletAddressKey", input.idempotency_key, input, run, replay
        )

    @strawberry.mutation(
        description="Revoke a wallet address key: requests signed with it are refused from now "
        "on. Revoking a revoked key changes nothing."
    )
    async def revoke_wallet_address_key(
        self, info: strawberry.Info[Context, None], input: RevokeWalletAddressKeyInput
    ) -> RevokeWalletAddressKeyMutationResponse | None:
        ctx = info.context
        key_id = parse_uuid(input.id, "id")

        async def run() -> tuple[dict[str, Any], RevokeWalletAddressKeyMutationResponse]:
            try:
                row = await domain.revoke_key(ctx.pool, key_id)
            except domain.KeyRefusal as error:
                raise _api_error(error) from None
            return {"id": str(row["id"])}, RevokeWalletAddressKeyMutationResponse(
                wallet_address_key=WalletAddressKey.from_row(row)
            )

        async def replay(record: dict[str, Any]) -> RevokeWalletAddressKeyMutationResponse:
            return RevokeWalletAddressKeyMutationResponse(
                wallet_address_key=await _load(ctx, record)
            )

        return await ctx.idempotent(
            "revokeWalletAddressKey", input.idempotency_key, input, run, replay
        )
