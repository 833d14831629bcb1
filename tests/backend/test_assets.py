"""Assets through the admin API: create, read, page, update, delete, fees, liquidity."""

from __future__ import annotations

import asyncio
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


UPDATE = """
mutation($input: UpdateAssetInput!) {
  updateAsset(input: $input) { asset { id withdrawalThreshold liquidityThreshold
                                      liquidityThresholdHigh } }
}
"""
DELETE = "mutation($id: ID!) { deleteAsset(input: {id: $id}) { asset { id } } }"
WITHDRAW = """
mutation($input: CreateAssetLiquidityWithdrawalInput!) {
  createAssetLiquidityWithdrawal(input: $input) { success }
}
"""
POST = """
mutation($id: String!, $key: String!) {
  postLiquidityWithdrawal(input: {withdrawalId: $id, idempotencyKey: $key}) { success }
}
"""
VOID = """
mutation($id: String!, $key: String!) {
  voidLiquidityWithdrawal(input: {withdrawalId: $id, idempotencyKey: $key}) { success }
}
"""


async def liquidity(admin: Admin, asset_id: str) -> str:
    data = await admin.data(
        "query($id: String!) { asset(id: $id) { liquidity } }", {"id": asset_id}
    )
    value: str = data["asset"]["liquidity"]
    return value


def withdrawal(asset_id: str, amount: int, timeout: int, key: str) -> dict[str, object]:
    return {
        "input": {
            "assetId": asset_id,
            "amount": str(amount),
            "id": str(uuid.uuid4()),
            "idempotencyKey": key,
            "timeoutSeconds": str(timeout),
        }
    }


async def test_update_keeps_omitted_fields_and_clears_nulls(admin: Admin) -> None:
    asset_id = await admin.create_asset(withdrawalThreshold="5", liquidityThreshold="10")
    data = await admin.data(UPDATE, {"input": {"id": asset_id, "liquidityThresholdHigh": "99"}})
    assert data["updateAsset"]["asset"] == {
        "id": asset_id,
        "withdrawalThreshold": "5",
        "liquidityThreshold": "10",
        "liquidityThresholdHigh": "99",
    }
    data = await admin.data(UPDATE, {"input": {"id": asset_id, "withdrawalThreshold": None}})
    assert data["updateAsset"]["asset"]["withdrawalThreshold"] is None
    bad = await admin.error(UPDATE, {"input": {"id": asset_id, "liquidityThresholdHigh": "1"}})
    assert bad.code == "BAD_USER_INPUT"
    missing = await admin.error(UPDATE, {"input": {"id": str(uuid.uuid4())}})
    assert missing.code == "NOT_FOUND"


async def test_bad_asset_inputs_change_nothing(admin: Admin) -> None:
    for given in (
        {"code": "US D", "scale": 2},
        {"code": "", "scale": 2},
        {"code": "USD", "scale": 256},
        {"code": "USD", "scale": -1},
        {"code": "USD", "scale": 2, "withdrawalThreshold": "-1"},
        {"code": "USD", "scale": 2, "withdrawalThreshold": "18446744073709551616"},
        {"code": "USD", "scale": 2, "liquidityThreshold": "10", "liquidityThresholdHigh": "5"},
    ):
        failure = await admin.error(CREATE, {"input": given})
        assert failure.code == "BAD_USER_INPUT", given
    assert await admin.pool.fetchval("SELECT count(*) FROM assets") == 0


async def test_pages_of_assets_and_lookup_by_code(admin: Admin) -> None:
    ids = [await admin.create_asset(code, 2) for code in ("AAA", "BBB", "CCC")]
    page = await admin.data(
        "{ assets(first: 2, sortOrder: ASC) { pageInfo { hasNextPage endCursor }"
        " edges { node { id } } } }"
    )
    assert [e["node"]["id"] for e in page["assets"]["edges"]] == ids[:2]
    newest = await admin.data("{ assets(first: 1) { edges { node { code } } } }")
    assert newest["assets"]["edges"][0]["node"]["code"] == "CCC"
    none = await admin.data('{ assetByCodeAndScale(code: "ZZZ", scale: 2) { id } }')
    assert none["assetByCodeAndScale"] is None


async def test_delete_an_asset_only_when_unused(admin: Admin) -> None:
    unused = await admin.create_asset("AAA", 2)
    deleted = await admin.data(DELETE, {"id": unused})
    assert deleted["deleteAsset"]["asset"]["id"] == unused
    gone = await admin.error("query($id: String!) { asset(id: $id) { id } }", {"id": unused})
    assert gone.code == "NOT_FOUND"
    again = await admin.error(DELETE, {"id": unused})
    assert again.code == "NOT_FOUND"
    # The code and scale are free again.
    await admin.create_asset("AAA", 2)

    funded = await admin.create_asset("BBB", 2)
    await admin.deposit_asset(funded, 10)
    refused = await admin.error(DELETE, {"id": funded})
    assert refused.code == "FORBIDDEN"
    used = await admin.create_asset("CCC", 2)
    await admin.data(
        "mutation($id: String!) { createWalletAddress(input: {assetId: $id,"
        ' address: "https://wallet.example/c"}) { walletAddress { id } } }',
        {"id": used},
    )
    refused = await admin.error(DELETE, {"id": used})
    assert refused.code == "FORBIDDEN"
    assert await admin.pool.fetchval("SELECT count(*) FROM assets WHERE deleted_at IS NULL") == 3


async def test_fees(admin: Admin) -> None:
    asset_id = await admin.create_asset()
    set_fee = """
    mutation($input: SetFeeInput!) { setFee(input: $input) { fee { id type fixed basisPoints } } }
    """
    first = await admin.data(
        set_fee,
        {
            "input": {
                "assetId": asset_id,
                "type": "SENDING",
                "fee": {"fixed": "5", "basisPoints": 100},
            }
        },
    )
    assert first["setFee"]["fee"]["fixed"] == "5"
    await admin.data(
        set_fee,
        {
            "input": {
                "assetId": asset_id,
                "type": "SENDING",
                "fee": {"fixed": "7", "basisPoints": 50},
            }
        },
    )
    data = await admin.data(
        "query($id: String!) { asset(id: $id) { sendingFee { fixed basisPoints }"
        " receivingFee { id } fees { edges { node { fixed } } } } }",
        {"id": asset_id},
    )
    assert data["asset"]["sendingFee"] == {"fixed": "7", "basisPoints": 50}
    assert data["asset"]["receivingFee"] is None
    assert [e["node"]["fixed"] for e in data["asset"]["fees"]["edges"]] == ["7", "5"]
    for bad, code in (
        (
            {"assetId": asset_id, "type": "SENDING", "fee": {"fixed": "1", "basisPoints": 10001}},
            "BAD_USER_INPUT",
        ),
        (
            {"assetId": asset_id, "type": "SENDING", "fee": {"fixed": "1", "basisPoints": -1}},
            "BAD_USER_INPUT",
        ),
        (
            {
                "assetId": str(uuid.uuid4()),
                "type": "SENDING",
                "fee": {"fixed": "1", "basisPoints": 1},
            },
            "NOT_FOUND",
        ),
    ):
        failure = await admin.error(set_fee, {"input": bad})
        assert failure.code == code, bad
    assert await admin.pool.fetchval("SELECT count(*) FROM fees") == 2


async def test_asset_withdrawals_one_and_two_phase(admin: Admin) -> None:
    asset_id = await admin.create_asset()
    await admin.deposit_asset(asset_id, 1000)
    await admin.data(WITHDRAW, withdrawal(asset_id, 100, 0, "w1"))
    assert await liquidity(admin, asset_id) == "900"

    too_much = await admin.error(WITHDRAW, withdrawal(asset_id, 901, 0, "w2"))
    assert too_much.code == "FORBIDDEN"
    zero = await admin.error(WITHDRAW, withdrawal(asset_id, 0, 0, "w3"))
    assert zero.code == "BAD_USER_INPUT"
    assert await liquidity(admin, asset_id) == "900"

    held = withdrawal(asset_id, 300, 60, "w4")
    await admin.data(WITHDRAW, held)
    assert await liquidity(admin, asset_id) == "600"
    voided = await admin.data(VOID, {"id": held["input"]["id"], "key": "v1"})  # type: ignore[index]
    assert voided["voidLiquidityWithdrawal"]["success"] is True
    assert await liquidity(admin, asset_id) == "900"
    posted_after_void = await admin.error(POST, {"id": held["input"]["id"], "key": "p1"})  # type: ignore[index]
    assert posted_after_void.code == "CONFLICT"
    unknown = await admin.error(POST, {"id": str(uuid.uuid4()), "key": "p2"})
    assert unknown.code == "NOT_FOUND"
    not_uuid = await admin.error(POST, {"id": "nope", "key": "p3"})
    assert not_uuid.code == "BAD_USER_INPUT"


async def test_posting_an_expired_withdrawal_is_refused_and_the_money_stays(
    admin: Admin,
) -> None:
    asset_id = await admin.create_asset()
    await admin.deposit_asset(asset_id, 500)
    held = withdrawal(asset_id, 200, 2, "w1")  # 2 s: read as held even on a loaded machine
    await admin.data(WITHDRAW, held)
    assert await liquidity(admin, asset_id) == "300"
    deadline = asyncio.get_running_loop().time() + 20
    while await liquidity(admin, asset_id) != "500":  # released at its timeout
        assert asyncio.get_running_loop().time() < deadline, "the withdrawal's hold never expired"
        await asyncio.sleep(0.05)
    expired = await admin.error(POST, {"id": held["input"]["id"], "key": "p1"})  # type: ignore[index]
    assert expired.code == "CONFLICT"
    assert await liquidity(admin, asset_id) == "500"


async def test_a_deposit_needs_a_uuid_a_positive_amount_and_a_known_asset(admin: Admin) -> None:
    asset_id = await admin.create_asset()
    deposit = (
        "mutation($input: DepositAssetLiquidityInput!) {"
        " depositAssetLiquidity(input: $input) { success } }"
    )
    for given, code in (
        ({"assetId": asset_id, "amount": "0", "id": str(uuid.uuid4())}, "BAD_USER_INPUT"),
        ({"assetId": asset_id, "amount": "-3", "id": str(uuid.uuid4())}, "BAD_USER_INPUT"),
        ({"assetId": asset_id, "amount": "3", "id": "not-a-uuid"}, "BAD_USER_INPUT"),
        ({"assetId": str(uuid.uuid4()), "amount": "3", "id": str(uuid.uuid4())}, "NOT_FOUND"),
    ):
        failure = await admin.error(
            deposit, {"input": {**given, "idempotencyKey": str(uuid.uuid4())}}
        )
        assert failure.code == code, given
    missing_key = await admin.error(
        deposit, {"input": {"assetId": asset_id, "amount": "3", "id": str(uuid.uuid4())}}
    )
    assert missing_key.code == "BAD_USER_INPUT"
    assert await liquidity(admin, asset_id) == "0"
