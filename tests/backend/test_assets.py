"""Assets through the admin API: create, read, page, update, delete, fees, liquidity."""

from __future__ import annotations

import uuid

from tests.backend.harness import ASSET_FIELDS, Admin

CREATE = f"""
mutation Create($input: CreateAssetInput!) {{
  createAsset(input: $input) {{ asset {{ {ASSET_FIELDS} }} }}
}}
"""


async def test_create_and_read_an_asset(admin: Admin) -> None:
    data = await admin.data(
        CREATE, {"input": {"code": "USD", "scale": 2, "withdrawalThreshold": "100"}}
    )
    asset = data["createAsset"]["asset"]
    assert asset["code"] == "USD" and asset["scale"] == 2
    assert asset["withdrawalThreshold"] == "100"
    assert asset["liquidity"] == "0"
    read = await admin.data(
        "query($id: String!) { asset(id: $id) { id code } }", {"id": asset["id"]}
    )
    assert read["asset"] == {"id": asset["id"], "code": "USD"}
    by_code = await admin.data('{ assetByCodeAndScale(code: "USD", scale: 2) { id } }')
    assert by_code["assetByCodeAndScale"]["id"] == asset["id"]


async def test_a_duplicate_asset_is_refused(admin: Admin) -> None:
    await admin.create_asset("EUR", 2)
    failure = await admin.error(CREATE, {"input": {"code": "EUR", "scale": 2}})
    assert failure.code == "DUPLICATE"


async def test_unknown_and_malformed_ids(admin: Admin) -> None:
    failure = await admin.error(
        "query($id: String!) { asset(id: $id) { id } }", {"id": str(uuid.uuid4())}
    )
    assert failure.code == "NOT_FOUND"
    failure = await admin.error("query($id: String!) { asset(id: $id) { id } }", {"id": "nope"})
    assert failure.code == "BAD_USER_INPUT"


async def test_deposit_and_withdraw_asset_liquidity(admin: Admin) -> None:
    asset_id = await admin.create_asset()
    await admin.deposit_asset(asset_id, 500)
    data = await admin.data(
        "query($id: String!) { asset(id: $id) { liquidity } }", {"id": asset_id}
    )
    assert data["asset"]["liquidity"] == "500"
