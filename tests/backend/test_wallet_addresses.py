"""Wallet addresses through the admin API."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from tests.backend.harness import WALLET_BASE, Admin, create_wallet_address, credit

FIELDS = (
    "id address publicName status liquidity asset { code }"
    " additionalProperties { key value visibleInOpenPayments }"
)
CREATE = f"""
mutation($input: CreateWalletAddressInput!) {{
  createWalletAddress(input: $input) {{ walletAddress {{ {FIELDS} }} }}
}}
"""
UPDATE = f"""
mutation($input: UpdateWalletAddressInput!) {{
  updateWalletAddress(input: $input) {{ walletAddress {{ {FIELDS} }} }}
}}
"""
WITHDRAW = """
mutation($input: CreateWalletAddressWithdrawalInput!) {
  createWalletAddressWithdrawal(input: $input) { withdrawal { id amount walletAddress { id } } }
}
"""


async def test_create_read_update_a_wallet_address(admin: Admin) -> None:
    asset = await admin.create_asset()
    created = await admin.data(
        CREATE,
        {
            "input": {
                "assetId": asset,
                "address": "$wallet.example/alice/",
                "publicName": "Alice",
                "additionalProperties": [
                    {"key": "iban", "value": "NL00", "visibleInOpenPayments": False}
                ],
            }
        },
    )
    wallet = created["createWalletAddress"]["walletAddress"]
    assert wallet["address"] == f"{WALLET_BASE}/alice"
    assert wallet["status"] == "ACTIVE" and wallet["liquidity"] == "0"
    assert wallet["asset"] == {"code": "USD"}
    assert wallet["additionalProperties"][0]["key"] == "iban"
    by_url = await admin.data(
        "query($url: String!) { walletAddressByUrl(url: $url) { id } }",
        {"url": f"{WALLET_BASE}/alice"},
    )
    assert by_url["walletAddressByUrl"]["id"] == wallet["id"]
    updated = await admin.data(UPDATE, {"input": {"id": wallet["id"], "status": "INACTIVE"}})
    after = updated["updateWalletAddress"]["walletAddress"]
    assert after["status"] == "INACTIVE" and after["publicName"] == "Alice"
    renamed = await admin.data(UPDATE, {"input": {"id": wallet["id"], "publicName": None}})
    assert renamed["updateWalletAddress"]["walletAddress"]["publicName"] is None


async def test_wallet_address_bad_inputs_change_nothing(admin: Admin) -> None:
    asset = await admin.create_asset()
    await create_wallet_address(admin, asset, "/bob")
    cases = [
        ({"assetId": asset, "address": f"{WALLET_BASE}/bob"}, "DUPLICATE"),
        ({"assetId": str(uuid.uuid4()), "address": f"{WALLET_BASE}/x"}, "NOT_FOUND"),
        ({"assetId": "nope", "address": f"{WALLET_BASE}/x"}, "BAD_USER_INPUT"),
        ({"assetId": asset, "address": "ftp://wallet.example/x"}, "BAD_USER_INPUT"),
        ({"assetId": asset, "address": "https://elsewhere.example/x"}, "BAD_USER_INPUT"),
        ({"assetId": asset, "address": f"{WALLET_BASE}/"}, "BAD_USER_INPUT"),
    ]
    for given, code in cases:
        failure = await admin.error(CREATE, {"input": given})
        assert failure.code == code, given
    assert await admin.pool.fetchval("SELECT count(*) FROM wallet_addresses") == 1
    failure = await admin.error(UPDATE, {"input": {"id": str(uuid.uuid4()), "publicName": "x"}})
    assert failure.code == "NOT_FOUND"


async def test_pages_of_wallet_addresses(admin: Admin) -> None:
    asset = await admin.create_asset()
    ids = [await create_wallet_address(admin, asset, f"/w{i}") for i in range(5)]
    query = """
    query($first: Int, $after: String, $last: Int, $before: String) {
      walletAddresses(first: $first, after: $after, last: $last, before: $before,
                      sortOrder: ASC) {
        pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
        edges { cursor node { id } }
      }
    }
    """
    first = (await admin.data(query, {"first": 2}))["walletAddresses"]
    assert [e["node"]["id"] for e in first["edges"]] == ids[:2]
    assert first["pageInfo"]["hasNextPage"] is True
    second = (await admin.data(query, {"first": 3, "after": first["pageInfo"]["endCursor"]}))[
        "walletAddresses"
    ]
    assert [e["node"]["id"] for e in second["edges"]] == ids[2:]
    assert second["pageInfo"]["hasNextPage"] is False
    back = (await admin.data(query, {"last": 2, "before": second["pageInfo"]["endCursor"]}))[
        "walletAddresses"
    ]
    assert [e["node"]["id"] for e in back["edges"]] == ids[2:4]
    failure = await admin.error(query, {"first": 101})
    assert failure.code == "BAD_USER_INPUT"
    failure = await admin.error(query, {"first": 1, "after": "garbage"})
    assert failure.code == "BAD_USER_INPUT"


async def test_web_monetization_money_events_and_withdrawal(admin: Admin) -> None:
    asset = await admin.create_asset(withdrawalThreshold="100")
    wallet = await create_wallet_address(admin, asset, "/wm")
    await credit(admin, "WALLET_ADDRESS", wallet, 60)
    await asyncio.sleep(0.3)  # below the threshold: no event
    assert await _events(admin, wallet) == []
    await credit(admin, "WALLET_ADDRESS", wallet, 50)
    events = await _wait_events(admin, wallet, 1)
    assert events[0]["walletAddress"]["received"] == "110"
    assert events[0]["withdrawal"]["amount"] == "110"

    withdrawal_id = str(uuid.uuid4())
    data = await admin.data(
        WITHDRAW,
        {
            "input": {
                "walletAddressId": wallet,
                "id": withdrawal_id,
                "idempotencyKey": "wm-1",
                "timeoutSeconds": "0",
            }
        },
    )
    assert data["createWalletAddressWithdrawal"]["withdrawal"] == {
        "id": withdrawal_id,
        "amount": "110",
        "walletAddress": {"id": wallet},
    }
    liquidity = await admin.data(
        "query($id: String!) { walletAddress(id: $id) { liquidity } }", {"id": wallet}
    )
    assert liquidity["walletAddress"]["liquidity"] == "0"
    failure = await admin.error(
        WITHDRAW,
        {
            "input": {
                "walletAddressId": wallet,
                "id": str(uuid.uuid4()),
                "idempotencyKey": "wm-2",
                "timeoutSeconds": "0",
            }
        },
    )
    assert failure.code == "BAD_USER_INPUT"


async def test_trigger_wallet_address_events_ignores_the_threshold(admin: Admin) -> None:
    asset = await admin.create_asset(withdrawalThreshold="1000")
    wallets = [await create_wallet_address(admin, asset, f"/t{i}") for i in range(3)]
    for wallet in wallets:
        await credit(admin, "WALLET_ADDRESS", wallet, 5)
    data = await admin.data("mutation { triggerWalletAddressEvents(input: {limit: 2}) { count } }")
    assert data["triggerWalletAddressEvents"]["count"] == 2
    data = await admin.data("mutation { triggerWalletAddressEvents(input: {limit: 10}) { count } }")
    assert data["triggerWalletAddressEvents"]["count"] == 1
    failure = await admin.error(
        "mutation { triggerWalletAddressEvents(input: {limit: 0}) { count } }"
    )
    assert failure.code == "BAD_USER_INPUT"


async def _events(admin: Admin, wallet: str) -> list[dict[str, Any]]:
    import json

    rows = await admin.pool.fetch(
        "SELECT data FROM webhook_events WHERE resource_id = $1 ORDER BY seq",
        uuid.UUID(wallet),
    )
    return [json.loads(r["data"]) if isinstance(r["data"], str) else r["data"] for r in rows]


async def _wait_events(admin: Admin, wallet: str, count: int) -> list[dict[str, Any]]:
    deadline = asyncio.get_running_loop().time() + 20
    while asyncio.get_running_loop().time() < deadline:
        events = await _events(admin, wallet)
        if len(events) >= count:
            return events
        await asyncio.sleep(0.05)
    raise AssertionError(f"expected {count} events, got {await _events(admin, wallet)}")


async def test_create_wallet_address_by_path_or_name_lower_cased(admin: Admin) -> None:
    """As Rafiki: a bare name or a path is relative to OPEN_PAYMENTS_URL; the URL is stored
    lower-cased."""
    asset = await admin.create_asset()
    made = {}
    for given in ("Alice", "/shop/Bob", f"{WALLET_BASE}/CAROL"):
        created = await admin.data(CREATE, {"input": {"assetId": asset, "address": given}})
        made[given] = created["createWalletAddress"]["walletAddress"]["address"]
    assert made == {
        "Alice": f"{WALLET_BASE}/alice",
        "/shop/Bob": f"{WALLET_BASE}/shop/bob",
        f"{WALLET_BASE}/CAROL": f"{WALLET_BASE}/carol",
    }
    failure = await admin.error(CREATE, {"input": {"assetId": asset, "address": "ALICE"}})
    assert failure.code == "DUPLICATE"
    for bad in ("", "/", "a?b", "ftp://wallet.example/a"):
        failure = await admin.error(CREATE, {"input": {"assetId": asset, "address": bad}})
        assert failure.code == "BAD_USER_INPUT", bad
    by_url = await admin.data(
        "query($url: String!) { walletAddressByUrl(url: $url) { address } }",
        {"url": f"{WALLET_BASE}/ALICE"},
    )
    assert by_url["walletAddressByUrl"]["address"] == f"{WALLET_BASE}/alice"
    assert await admin.pool.fetchval("SELECT count(*) FROM wallet_addresses") == 3
