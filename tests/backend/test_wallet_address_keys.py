"""Wallet address keys through the admin API: create, list, revoke, and every bad JWK refused."""

from __future__ import annotations

import base64
import os
import uuid
from typing import Any

from tests.backend.harness import Admin, create_wallet_address

KEY = "id walletAddressId revoked createdAt jwk { kid x alg kty crv }"
CREATE = f"""
mutation($input: CreateWalletAddressKeyInput!) {{
  createWalletAddressKey(input: $input) {{ walletAddressKey {{ {KEY} }} }}
}}
"""
REVOKE = f"""
mutation($input: RevokeWalletAddressKeyInput!) {{
  revokeWalletAddressKey(input: $input) {{ walletAddressKey {{ {KEY} }} }}
}}
"""
LIST = f"""
query($id: String!, $first: Int, $after: String) {{
  walletAddress(id: $id) {{
    walletAddressKeys(first: $first, after: $after, sortOrder: ASC) {{
      pageInfo {{ hasNextPage endCursor }}
      edges {{ cursor node {{ {KEY} }} }}
    }}
  }}
}}
"""


def new_x() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()


def jwk(kid: str = "key-1", x: str | None = None, **overrides: Any) -> dict[str, Any]:
    return {
        "kid": kid,
        "x": new_x() if x is None else x,
        "alg": "EdDSA",
        "kty": "OKP",
        "crv": "Ed25519",
    } | (overrides)


async def create_key(admin: Admin, wallet: str, key: dict[str, Any], **extra: Any) -> Any:
    data = await admin.data(CREATE, {"input": {"walletAddressId": wallet, "jwk": key, **extra}})
    return data["createWalletAddressKey"]["walletAddressKey"]


async def test_create_list_and_revoke_keys(admin: Admin) -> None:
    wallet = await create_wallet_address(admin, await admin.create_asset(), "/alice")
    first = jwk("key-1")
    created = await create_key(admin, wallet, first)
    assert created["walletAddressId"] == wallet
    assert created["revoked"] is False
    assert created["jwk"] == first
    second = await create_key(admin, wallet, jwk("key-2"))

    page = await admin.data(LIST, {"id": wallet, "first": 1})
    keys = page["walletAddress"]["walletAddressKeys"]
    assert [e["node"]["id"] for e in keys["edges"]] == [created["id"]]
    assert keys["pageInfo"]["hasNextPage"] is True
    rest = await admin.data(
        LIST, {"id": wallet, "first": 5, "after": keys["pageInfo"]["endCursor"]}
    )
    assert [e["node"]["id"] for e in rest["walletAddress"]["walletAddressKeys"]["edges"]] == [
        second["id"]
    ]

    revoked = (await admin.data(REVOKE, {"input": {"id": created["id"]}}))["revokeWalletAddressKey"]
    assert revoked["walletAddressKey"]["revoked"] is True
    again = (await admin.data(REVOKE, {"input": {"id": created["id"]}}))["revokeWalletAddressKey"]
    assert again["walletAddressKey"] == revoked["walletAddressKey"]
    listed = await admin.data(LIST, {"id": wallet, "first": 5})
    assert [
        e["node"]["revoked"] for e in listed["walletAddress"]["walletAddressKeys"]["edges"]
    ] == [
        True,
        False,
    ]


async def test_an_active_kid_is_unique_per_wallet_address_until_revoked(admin: Admin) -> None:
    asset = await admin.create_asset()
    alice = await create_wallet_address(admin, asset, "/alice")
    bob = await create_wallet_address(admin, asset, "/bob")
    key = await create_key(admin, alice, jwk("shared"))

    duplicate = await admin.error(
        CREATE, {"input": {"walletAddressId": alice, "jwk": jwk("shared")}}
    )
    assert duplicate.code == "DUPLICATE"
    await create_key(admin, bob, jwk("shared"))  # another wallet address's kid is its own
    await admin.data(REVOKE, {"input": {"id": key["id"]}})
    replacement = await create_key(admin, alice, jwk("shared"))
    assert replacement["id"] != key["id"]
    count = "SELECT count(*) FROM wallet_address_keys WHERE NOT revoked"
    assert await admin.pool.fetchval(count) == 2


async def test_bad_jwks_and_unknown_ids_are_refused_and_change_nothing(admin: Admin) -> None:
    wallet = await create_wallet_address(admin, await admin.create_asset(), "/alice")
    short = base64.urlsafe_b64encode(os.urandom(31)).rstrip(b"=").decode()
    long = base64.urlsafe_b64encode(os.urandom(33)).rstrip(b"=").decode()
    # 43 characters whose last one carries bits past the 32 bytes: not canonical base64url.
    not_canonical = new_x()[:42] + "B"
    cases = [
        ({"walletAddressId": wallet, "jwk": jwk(x=short)}, "BAD_USER_INPUT"),
        ({"walletAddressId": wallet, "jwk": jwk(x=long)}, "BAD_USER_INPUT"),
        ({"walletAddressId": wallet, "jwk": jwk(x=new_x() + "=")}, "BAD_USER_INPUT"),
        ({"walletAddressId": wallet, "jwk": jwk(x=new_x()[:42] + "+")}, "BAD_USER_INPUT"),
        ({"walletAddressId": wallet, "jwk": jwk(x=not_canonical)}, "BAD_USER_INPUT"),
        ({"walletAddressId": wallet, "jwk": jwk(x="")}, "BAD_USER_INPUT"),
        ({"walletAddressId": wallet, "jwk": jwk(kid="")}, "BAD_USER_INPUT"),
        ({"walletAddressId": wallet, "jwk": jwk(kid="k" * 256)}, "BAD_USER_INPUT"),
        ({"walletAddressId": wallet, "jwk": jwk(kid="a\nb")}, "BAD_USER_INPUT"),
        ({"walletAddressId": "nope", "jwk": jwk()}, "BAD_USER_INPUT"),
        ({"walletAddressId": str(uuid.uuid4()), "jwk": jwk()}, "NOT_FOUND"),
    ]
    for given, code in cases:
        failure = await admin.error(CREATE, {"input": given})
        assert failure.code == code, given
    # Another key type or curve is not even a value of the enums: GraphQL refuses it.
    for field, value in (("kty", "RSA"), ("crv", "X25519"), ("alg", "ES256")):
        failure = await admin.error(
            CREATE, {"input": {"walletAddressId": wallet, "jwk": jwk(**{field: value})}}
        )
        assert failure.errors, field
    missing = await admin.error(REVOKE, {"input": {"id": str(uuid.uuid4())}})
    assert missing.code == "NOT_FOUND"
    assert await admin.pool.fetchval("SELECT count(*) FROM wallet_address_keys") == 0


async def test_create_key_is_idempotent_by_key(admin: Admin) -> None:
    wallet = await create_wallet_address(admin, await admin.create_asset(), "/alice")
    key = jwk("key-1")
    first = await create_key(admin, wallet, key, idempotencyKey="k1")
    second = await create_key(admin, wallet, key, idempotencyKey="k1")
    assert first == second
    assert await admin.pool.fetchval("SELECT count(*) FROM wallet_address_keys") == 1
