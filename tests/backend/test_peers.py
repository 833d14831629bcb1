"""Peers through the admin API: create, read, page, update, delete, liquidity, idempotency."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from typing import Any

from tests.backend.harness import Admin, GraphQLFailure

from kiungo.store.channels import PEERS_CHANGED_CHANNEL

PEER_FIELDS = (
    "id maxPacketAmount http { outgoing { authToken endpoint } } asset { id code } "
    "staticIlpAddress name liquidityThreshold liquidityThresholdHigh routes liquidity createdAt"
)

CREATE = f"""
mutation Create($input: CreatePeerInput!) {{
  createPeer(input: $input) {{ peer {{ {PEER_FIELDS} }} }}
}}
"""

UPDATE = f"""
mutation Update($input: UpdatePeerInput!) {{
  updatePeer(input: $input) {{ peer {{ {PEER_FIELDS} }} }}
}}
"""

DELETE = """
mutation Delete($input: DeletePeerInput!) { deletePeer(input: $input) { success } }
"""

READ = f"query($id: String!) {{ peer(id: $id) {{ {PEER_FIELDS} }} }}"

PAGE = """
query($first: Int, $last: Int, $after: String, $before: String, $sortOrder: SortOrder) {
  peers(first: $first, last: $last, after: $after, before: $before, sortOrder: $sortOrder) {
    pageInfo { startCursor endCursor hasNextPage hasPreviousPage }
    edges { cursor node { id staticIlpAddress } }
  }
}
"""

DEPOSIT = """
mutation($input: DepositPeerLiquidityInput!) { depositPeerLiquidity(input: $input) { success } }
"""

WITHDRAW = """
mutation($input: CreatePeerLiquidityWithdrawalInput!) {
  createPeerLiquidityWithdrawal(input: $input) { success }
}
"""

POST = """
mutation($input: PostLiquidityWithdrawalInput!) {
  postLiquidityWithdrawal(input: $input) { success }
}
"""

VOID = """
mutation($input: VoidLiquidityWithdrawalInput!) {
  voidLiquidityWithdrawal(input: $input) { success }
}
"""

OUTGOING_TOKEN = "outgoing-secret-token-0123456789"


def peer_input(asset_id: str, address: str = "g.peer.alice", **extra: Any) -> dict[str, Any]:
    return {
        "assetId": asset_id,
        "staticIlpAddress": address,
        "http": {
            "incoming": {"authTokens": [f"incoming-{address}"]},
            "outgoing": {"authToken": OUTGOING_TOKEN, "endpoint": "https://alice.example/ilp"},
        },
        **extra,
    }


async def create_peer(
    admin: Admin, asset_id: str, address: str = "g.peer.alice", **extra: Any
) -> str:
    data = await admin.data(CREATE, {"input": peer_input(asset_id, address, **extra)})
    peer_id: str = data["createPeer"]["peer"]["id"]
    return peer_id


async def read_peer(admin: Admin, peer_id: str) -> dict[str, Any]:
    data = await admin.data(READ, {"id": peer_id})
    peer: dict[str, Any] = data["peer"]
    return peer


async def liquidity(admin: Admin, peer_id: str) -> str | None:
    data = await admin.data("query($id: String!) { peer(id: $id) { liquidity } }", {"id": peer_id})
    value: str | None = data["peer"]["liquidity"]
    return value


async def deposit(admin: Admin, peer_id: str, amount: int) -> None:
    await admin.data(
        DEPOSIT,
        {
            "input": {
                "peerId": peer_id,
                "amount": str(amount),
                "id": str(uuid.uuid4()),
                "idempotencyKey": str(uuid.uuid4()),
            }
        },
    )


async def withdrawal(admin: Admin, peer_id: str, amount: int, hold_seconds: int = 0) -> str:
    withdrawal_id = str(uuid.uuid4())
    await admin.data(
        WITHDRAW,
        {
            "input": {
                "peerId": peer_id,
                "amount": str(amount),
                "id": withdrawal_id,
                "idempotencyKey": str(uuid.uuid4()),
                "timeoutSeconds": str(hold_seconds),
            }
        },
    )
    return withdrawal_id


async def peer_rows(admin: Admin) -> list[dict[str, Any]]:
    rows = await admin.pool.fetch("SELECT * FROM peers ORDER BY created_at, id")
    return [dict(r) for r in rows]


async def token_hashes(admin: Admin, peer_id: str | None = None) -> set[bytes]:
    if peer_id is None:
        rows = await admin.pool.fetch("SELECT token_hash FROM peer_incoming_tokens")
    else:
        rows = await admin.pool.fetch(
            "SELECT token_hash FROM peer_incoming_tokens WHERE peer_id = $1", uuid.UUID(peer_id)
        )
    return {bytes(r["token_hash"]) for r in rows}


def sha256(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


# -- create and read ----------------------------------------------------------------------------


async def test_create_and_read_a_peer(admin: Admin) -> None:
    asset_id = await admin.create_asset()
    data = await admin.data(
        CREATE,
        {
            "input": peer_input(
                asset_id,
                name="Alice",
                maxPacketAmount="1000",
                liquidityThreshold="10",
                liquidityThresholdHigh="5000",
                routes=["g.alice", "test.alice.sub"],
            )
        },
    )
    peer = data["createPeer"]["peer"]
    assert peer["staticIlpAddress"] == "g.peer.alice"
    assert peer["name"] == "Alice"
    assert peer["maxPacketAmount"] == "1000"
    assert peer["liquidityThreshold"] == "10"
    assert peer["liquidityThresholdHigh"] == "5000"
    assert peer["routes"] == ["g.alice", "test.alice.sub"]
    assert peer["asset"] == {"id": asset_id, "code": "USD"}
    assert peer["liquidity"] == "0"
    assert peer["createdAt"].endswith("Z")
    outgoing = peer["http"]["outgoing"]
    assert outgoing["endpoint"] == "https://alice.example/ilp"
    # The outgoing token is never returned in full.
    assert outgoing["authToken"] == OUTGOING_TOKEN[:4] + "…"
    assert OUTGOING_TOKEN not in str(data)

    assert await read_peer(admin, peer["id"]) == peer
    by_address = await admin.data(
        "query($a: String!, $asset: String!) {"
        " peerByAddressAndAsset(staticIlpAddress: $a, assetId: $asset) { id } }",
        {"a": "g.peer.alice", "asset": asset_id},
    )
    assert by_address["peerByAddressAndAsset"] == {"id": peer["id"]}

    # Incoming tokens are kept as their SHA-256 only; the outgoing one as given.
    assert await token_hashes(admin, peer["id"]) == {sha256("incoming-g.peer.alice")}
    (row,) = await peer_rows(admin)
    assert row["http_outgoing_token"] == OUTGOING_TOKEN


async def test_short_outgoing_tokens_are_fully_masked(admin: Admin) -> None:
    asset_id = await admin.create_asset()
    payload = peer_input(asset_id)
    payload["http"]["outgoing"]["authToken"] = "short"
    data = await admin.data(CREATE, {"input": payload})
    assert data["createPeer"]["peer"]["http"]["outgoing"]["authToken"] == "*****"


async def test_minimal_peer(admin: Admin) -> None:
    asset_id = await admin.create_asset()
    payload = peer_input(asset_id)
    del payload["http"]["incoming"]
    data = await admin.data(CREATE, {"input": payload})
    peer = data["createPeer"]["peer"]
    assert peer["name"] is None and peer["maxPacketAmount"] is None
    assert peer["liquidityThreshold"] is None and peer["liquidityThresholdHigh"] is None
    assert peer["routes"] == []
    assert await token_hashes(admin, peer["id"]) == set()


async def test_initial_liquidity(admin: Admin) -> None:
    asset_id = await admin.create_asset()
    peer_id = await create_peer(admin, asset_id, initialLiquidity="500")
    assert await liquidity(admin, peer_id) == "500"


async def test_a_failed_initial_deposit_undoes_the_peer_so_a_retry_can_create_it(
    admin: Admin,
) -> None:
    asset_id = await admin.create_asset()
    # The ledger's batch fails on Postgres for this one amount (as a database that went away).
    await admin.pool.execute(
        "CREATE FUNCTION refuse_777() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN IF NEW.amount = 777 THEN RAISE EXCEPTION 'refused'; END IF; RETURN NEW; END $$; "
        "CREATE TRIGGER refuse_777 BEFORE INSERT ON ledger_transfers "
        "FOR EACH ROW EXECUTE FUNCTION refuse_777()"
    )
    payload = peer_input(asset_id, initialLiquidity="777", idempotencyKey=str(uuid.uuid4()))
    failure = await admin.error(CREATE, {"input": payload})
    assert failure.code == "INTERNAL_SERVER_ERROR"
    assert await peer_rows(admin) == []
    assert await token_hashes(admin) == set()

    await admin.pool.execute("DROP TRIGGER refuse_777 ON ledger_transfers")
    data = await admin.data(CREATE, {"input": payload})
    peer_id = data["createPeer"]["peer"]["id"]
    assert [str(row["id"]) for row in await peer_rows(admin)] == [peer_id]
    assert await liquidity(admin, peer_id) == "777"


async def test_unknown_and_malformed_ids(admin: Admin) -> None:
    failure = await admin.error(READ, {"id": str(uuid.uuid4())})
    assert failure.code == "NOT_FOUND"
    failure = await admin.error(READ, {"id": "nope"})
    assert failure.code == "BAD_USER_INPUT"
    asset_id = await admin.create_asset()
    data = await admin.data(
        "query($asset: String!) {"
        ' peerByAddressAndAsset(staticIlpAddress: "g.nobody", assetId: $asset) { id } }',
        {"asset": asset_id},
    )
    assert data["peerByAddressAndAsset"] is None


async def test_page_through_peers(admin: Admin) -> None:
    asset_id = await admin.create_asset()
    ids = [await create_peer(admin, asset_id, f"g.peer.p{i}") for i in range(5)]
    newest_first = list(reversed(ids))

    async def page(**args: Any) -> dict[str, Any]:
        data = await admin.data(PAGE, args)
        peers: dict[str, Any] = data["peers"]
        return peers

    def node_ids(connection: dict[str, Any]) -> list[str]:
        return [edge["node"]["id"] for edge in connection["edges"]]

    everything = await page()
    assert node_ids(everything) == newest_first

    first = await page(first=2)
    assert node_ids(first) == newest_first[:2]
    assert first["pageInfo"]["hasNextPage"] is True
    assert first["pageInfo"]["hasPreviousPage"] is False
    assert first["pageInfo"]["endCursor"] == first["edges"][-1]["cursor"]

    second = await page(first=2, after=first["pageInfo"]["endCursor"])
    assert node_ids(second) == newest_first[2:4]
    assert second["pageInfo"]["hasNextPage"] is True
    assert second["pageInfo"]["hasPreviousPage"] is True

    third = await page(first=2, after=second["pageInfo"]["endCursor"])
    assert node_ids(third) == newest_first[4:]
    assert third["pageInfo"]["hasNextPage"] is False

    back = await page(last=2, before=third["pageInfo"]["startCursor"])
    assert node_ids(back) == newest_first[2:4]
    assert back["pageInfo"]["hasPreviousPage"] is True
    assert back["pageInfo"]["hasNextPage"] is True

    last = await page(last=2)
    assert node_ids(last) == newest_first[3:]
    assert last["pageInfo"]["hasPreviousPage"] is True

    ascending = await page(first=3, sortOrder="ASC")
    assert node_ids(ascending) == ids[:3]
    rest = await page(first=3, sortOrder="ASC", after=ascending["pageInfo"]["endCursor"])
    assert node_ids(rest) == ids[3:]

    failure = await admin.error(PAGE, {"after": "not-a-cursor"})
    assert failure.code == "BAD_USER_INPUT"


# -- update -------------------------------------------------------------------------------------


async def test_update_keeps_omitted_fields_and_clears_nulls(admin: Admin) -> None:
    asset_id = await admin.create_asset()
    peer_id = await create_peer(
        admin,
        asset_id,
        name="Alice",
        maxPacketAmount="1000",
        liquidityThreshold="10",
        liquidityThresholdHigh="5000",
        routes=["g.alice"],
    )
    before = await read_peer(admin, peer_id)

    # Only the name: everything else is kept.
    data = await admin.data(UPDATE, {"input": {"id": peer_id, "name": "Alice B"}})
    assert data["updatePeer"]["peer"] == {**before, "name": "Alice B"}

    # Explicit nulls clear the nullable fields.
    data = await admin.data(
        UPDATE,
        {
            "input": {
                "id": peer_id,
                "name": None,
                "maxPacketAmount": None,
                "liquidityThreshold": None,
                "liquidityThresholdHigh": None,
                "routes": None,
            }
        },
    )
    peer = data["updatePeer"]["peer"]
    assert peer["name"] is None and peer["maxPacketAmount"] is None
    assert peer["liquidityThreshold"] is None and peer["liquidityThresholdHigh"] is None
    assert peer["routes"] == []
    assert peer["staticIlpAddress"] == "g.peer.alice"

    # New values, and a new address.
    data = await admin.data(
        UPDATE,
        {
            "input": {
                "id": peer_id,
                "staticIlpAddress": "g.peer.alice2",
                "maxPacketAmount": "7",
                "routes": ["g.x", "g.y"],
                "liquidityThreshold": "1",
            }
        },
    )
    peer = data["updatePeer"]["peer"]
    assert peer["staticIlpAddress"] == "g.peer.alice2"
    assert peer["maxPacketAmount"] == "7"
    assert peer["routes"] == ["g.x", "g.y"]
    assert peer["liquidityThreshold"] == "1"
    assert await read_peer(admin, peer_id) == peer


async def test_update_http_replaces_tokens(admin: Admin) -> None:
    asset_id = await admin.create_asset()
    peer_id = await create_peer(admin, asset_id)
    original = await token_hashes(admin, peer_id)

    # Outgoing only: the incoming tokens are kept.
    new_outgoing = "another-outgoing-token-abcdef"
    data = await admin.data(
        UPDATE,
        {
            "input": {
                "id": peer_id,
                "http": {"outgoing": {"authToken": new_outgoing, "endpoint": "http://b.example"}},
            }
        },
    )
    outgoing = data["updatePeer"]["peer"]["http"]["outgoing"]
    assert outgoing == {"authToken": "anot…", "endpoint": "http://b.example"}
    assert await token_hashes(admin, peer_id) == original
    (row,) = await peer_rows(admin)
    assert row["http_outgoing_token"] == new_outgoing

    # With incoming: they are replaced.
    await admin.data(
        UPDATE,
        {
            "input": {
                "id": peer_id,
                "http": {
                    "incoming": {"authTokens": ["in-1", "in-2"]},
                    "outgoing": {"authToken": new_outgoing, "endpoint": "http://b.example"},
                },
            }
        },
    )
    assert await token_hashes(admin, peer_id) == {sha256("in-1"), sha256("in-2")}

    # Replacing the tokens with the ones it already has is fine.
    await admin.data(
        UPDATE,
        {
            "input": {
                "id": peer_id,
                "http": {
                    "incoming": {"authTokens": ["in-2"]},
                    "outgoing": {"authToken": new_outgoing, "endpoint": "http://b.example"},
                },
            }
        },
    )
    assert await token_hashes(admin, peer_id) == {sha256("in-2")}


async def test_bad_updates_change_nothing(admin: Admin) -> None:
    asset_id = await admin.create_asset()
    peer_id = await create_peer(admin, asset_id, liquidityThreshold="100")
    other_id = await create_peer(admin, asset_id, "g.peer.bob")
    rows = await peer_rows(admin)
    tokens = await token_hashes(admin)
    outgoing = {"authToken": OUTGOING_TOKEN, "endpoint": "https://alice.example/ilp"}
    cases: list[tuple[dict[str, Any], str]] = [
        ({"staticIlpAddress": "not an address"}, "BAD_USER_INPUT"),
        ({"staticIlpAddress": None}, "BAD_USER_INPUT"),
        ({"routes": ["g.ok", "bad route"]}, "BAD_USER_INPUT"),
        ({"maxPacketAmount": "0"}, "BAD_USER_INPUT"),
        ({"liquidityThresholdHigh": "100"}, "BAD_USER_INPUT"),
        ({"liquidityThreshold": "5", "liquidityThresholdHigh": "4"}, "BAD_USER_INPUT"),
        ({"http": None}, "BAD_USER_INPUT"),
        ({"http": {"outgoing": {**outgoing, "endpoint": "ftp://a.example"}}}, "BAD_USER_INPUT"),
        ({"http": {"outgoing": {**outgoing, "authToken": ""}}}, "BAD_USER_INPUT"),
        (
            {"http": {"outgoing": outgoing, "incoming": {"authTokens": [""]}}},
            "BAD_USER_INPUT",
        ),
        ({"staticIlpAddress": "g.peer.bob"}, "DUPLICATE"),
        (
            {"http": {"outgoing": outgoing, "incoming": {"authTokens": ["incoming-g.peer.bob"]}}},
            "DUPLICATE",
        ),
        (
            {"http": {"outgoing": outgoing, "incoming": {"authTokens": ["x", "x"]}}},
            "DUPLICATE",
        ),
    ]
    for change, code in cases:
        failure = await admin.error(UPDATE, {"input": {"id": peer_id, **change}})
        assert failure.code == code, (change, failure.errors)
        assert await peer_rows(admin) == rows, change
        assert await token_hashes(admin) == tokens, change

    failure = await admin.error(UPDATE, {"input": {"id": str(uuid.uuid4()), "name": "x"}})
    assert failure.code == "NOT_FOUND"
    failure = await admin.error(UPDATE, {"input": {"id": "nope", "name": "x"}})
    assert failure.code == "BAD_USER_INPUT"
    assert other_id != peer_id


# -- bad input on create --------------------------------------------------------------------------


async def test_bad_creates_change_nothing(admin: Admin) -> None:
    asset_id = await admin.create_asset()
    existing = await create_peer(admin, asset_id, "g.peer.taken")
    rows = await peer_rows(admin)
    tokens = await token_hashes(admin)

    def variant(**changes: Any) -> dict[str, Any]:
        payload = peer_input(asset_id, "g.peer.new")
        http = changes.pop("http", None)
        if http is not None:
            payload["http"] = http
        return {**payload, **changes}

    outgoing = {"authToken": OUTGOING_TOKEN, "endpoint": "https://n.example"}
    cases: list[tuple[dict[str, Any], str]] = [
        (variant(staticIlpAddress="nonsense"), "BAD_USER_INPUT"),
        (variant(staticIlpAddress="g."), "BAD_USER_INPUT"),
        (variant(routes=["g.fine", "not.a.scheme"]), "BAD_USER_INPUT"),
        (variant(http={"outgoing": {**outgoing, "endpoint": "ftp://n.example"}}), "BAD_USER_INPUT"),
        (variant(http={"outgoing": {**outgoing, "endpoint": "not a url"}}), "BAD_USER_INPUT"),
        (variant(http={"outgoing": {**outgoing, "endpoint": "https://"}}), "BAD_USER_INPUT"),
        (variant(http={"outgoing": {**outgoing, "authToken": ""}}), "BAD_USER_INPUT"),
        (
            variant(http={"outgoing": outgoing, "incoming": {"authTokens": ["ok", ""]}}),
            "BAD_USER_INPUT",
        ),
        (variant(maxPacketAmount="0"), "BAD_USER_INPUT"),
        (variant(liquidityThreshold="10", liquidityThresholdHigh="10"), "BAD_USER_INPUT"),
        (variant(liquidityThreshold="10", liquidityThresholdHigh="9"), "BAD_USER_INPUT"),
        (variant(assetId="nope"), "BAD_USER_INPUT"),
        (variant(assetId=str(uuid.uuid4())), "NOT_FOUND"),
        (variant(staticIlpAddress="g.peer.taken"), "DUPLICATE"),
        (
            variant(
                http={"outgoing": outgoing, "incoming": {"authTokens": ["incoming-g.peer.taken"]}}
            ),
            "DUPLICATE",
        ),
        (
            variant(http={"outgoing": outgoing, "incoming": {"authTokens": ["same", "same"]}}),
            "DUPLICATE",
        ),
        (variant(initialLiquidity="5", staticIlpAddress="g.peer.taken"), "DUPLICATE"),
    ]
    for payload, code in cases:
        failure = await admin.error(CREATE, {"input": payload})
        assert failure.code == code, (payload, failure.errors)
        assert await peer_rows(admin) == rows, payload
        assert await token_hashes(admin) == tokens, payload
    assert await liquidity(admin, existing) == "0"

    # The same address with another asset is a different peer.
    euro = await admin.create_asset("EUR")
    payload = peer_input(euro, "g.peer.taken")
    payload["http"]["incoming"]["authTokens"] = ["a-token-of-its-own"]
    await admin.data(CREATE, {"input": payload})


async def test_a_deleted_asset_takes_no_peers(admin: Admin) -> None:
    asset_id = await admin.create_asset()
    await admin.data(
        "mutation($input: DeleteAssetInput!) { deleteAsset(input: $input) { asset { id } } }",
        {"input": {"id": asset_id}},
    )
    failure = await admin.error(CREATE, {"input": peer_input(asset_id)})
    assert failure.code == "NOT_FOUND"
    assert await peer_rows(admin) == []


# -- delete ---------------------------------------------------------------------------------------


async def test_delete_a_peer(admin: Admin) -> None:
    asset_id = await admin.create_asset()
    peer_id = await create_peer(admin, asset_id)
    data = await admin.data(DELETE, {"input": {"id": peer_id}})
    assert data["deletePeer"] == {"success": True}
    assert (await admin.error(READ, {"id": peer_id})).code == "NOT_FOUND"
    assert await peer_rows(admin) == []
    assert await token_hashes(admin) == set()
    # Its token is free again.
    await create_peer(admin, asset_id)
    failure = await admin.error(DELETE, {"input": {"id": peer_id}})
    assert failure.code == "NOT_FOUND"
    failure = await admin.error(DELETE, {"input": {"id": "nope"}})
    assert failure.code == "BAD_USER_INPUT"


async def test_delete_is_refused_while_the_peer_holds_liquidity(admin: Admin) -> None:
    asset_id = await admin.create_asset()
    peer_id = await create_peer(admin, asset_id)
    await deposit(admin, peer_id, 100)

    failure = await admin.error(DELETE, {"input": {"id": peer_id}})
    assert failure.code == "FORBIDDEN"
    assert "liquidity" in failure.errors[0]["message"]
    assert await liquidity(admin, peer_id) == "100"

    # A pending withdrawal of everything still holds the account.
    held = await withdrawal(admin, peer_id, 100, hold_seconds=60)
    assert await liquidity(admin, peer_id) == "0"
    failure = await admin.error(DELETE, {"input": {"id": peer_id}})
    assert failure.code == "FORBIDDEN"
    assert len(await peer_rows(admin)) == 1

    await admin.data(POST, {"input": {"withdrawalId": held, "idempotencyKey": str(uuid.uuid4())}})
    data = await admin.data(DELETE, {"input": {"id": peer_id}})
    assert data["deletePeer"] == {"success": True}
    assert await peer_rows(admin) == []


# -- liquidity ------------------------------------------------------------------------------------


async def test_deposit_and_withdraw_peer_liquidity(admin: Admin) -> None:
    asset_id = await admin.create_asset()
    peer_id = await create_peer(admin, asset_id)
    await deposit(admin, peer_id, 1000)
    assert await liquidity(admin, peer_id) == "1000"

    # Two-phase, posted: the money leaves.
    posted = await withdrawal(admin, peer_id, 300, hold_seconds=60)
    assert await liquidity(admin, peer_id) == "700"
    key = str(uuid.uuid4())
    await admin.data(POST, {"input": {"withdrawalId": posted, "idempotencyKey": key}})
    assert await liquidity(admin, peer_id) == "700"

    # Two-phase, voided: the money stays.
    voided = await withdrawal(admin, peer_id, 200, hold_seconds=60)
    assert await liquidity(admin, peer_id) == "500"
    await admin.data(VOID, {"input": {"withdrawalId": voided, "idempotencyKey": str(uuid.uuid4())}})
    assert await liquidity(admin, peer_id) == "700"
    failure = await admin.error(
        POST, {"input": {"withdrawalId": voided, "idempotencyKey": str(uuid.uuid4())}}
    )
    assert failure.code == "CONFLICT"

    # One-phase.
    await withdrawal(admin, peer_id, 100)
    assert await liquidity(admin, peer_id) == "600"

    # More than there is: refused, nothing moves.
    failure = await admin.error(
        WITHDRAW,
        {
            "input": {
                "peerId": peer_id,
                "amount": "601",
                "id": str(uuid.uuid4()),
                "idempotencyKey": str(uuid.uuid4()),
                "timeoutSeconds": "0",
            }
        },
    )
    assert failure.code == "FORBIDDEN"
    assert await liquidity(admin, peer_id) == "600"


async def test_liquidity_refusals(admin: Admin) -> None:
    asset_id = await admin.create_asset()
    peer_id = await create_peer(admin, asset_id)

    def payload(**changes: Any) -> dict[str, Any]:
        base = {
            "peerId": peer_id,
            "amount": "10",
            "id": str(uuid.uuid4()),
            "idempotencyKey": str(uuid.uuid4()),
        }
        return {"input": {**base, **changes}}

    assert (await admin.error(DEPOSIT, payload(peerId=str(uuid.uuid4())))).code == "NOT_FOUND"
    assert (await admin.error(DEPOSIT, payload(peerId="nope"))).code == "BAD_USER_INPUT"
    assert (await admin.error(DEPOSIT, payload(amount="0"))).code == "BAD_USER_INPUT"
    assert (await admin.error(DEPOSIT, payload(id="nope"))).code == "BAD_USER_INPUT"
    failure = await admin.error(WITHDRAW, payload(peerId=str(uuid.uuid4()), timeoutSeconds="0"))
    assert failure.code == "NOT_FOUND"
    assert await liquidity(admin, peer_id) == "0"


# -- idempotency and races -------------------------------------------------------------------------


async def test_create_is_idempotent(admin: Admin) -> None:
    asset_id = await admin.create_asset()
    key = str(uuid.uuid4())
    payload = peer_input(asset_id, initialLiquidity="250", idempotencyKey=key)
    first = await admin.data(CREATE, {"input": payload})
    again = await admin.data(CREATE, {"input": payload})
    assert again["createPeer"]["peer"]["id"] == first["createPeer"]["peer"]["id"]
    assert len(await peer_rows(admin)) == 1
    assert await liquidity(admin, first["createPeer"]["peer"]["id"]) == "250"

    failure = await admin.error(CREATE, {"input": {**payload, "name": "other"}})
    assert failure.code == "CONFLICT"
    assert len(await peer_rows(admin)) == 1
    assert await liquidity(admin, first["createPeer"]["peer"]["id"]) == "250"


async def test_update_and_delete_are_idempotent(admin: Admin) -> None:
    asset_id = await admin.create_asset()
    peer_id = await create_peer(admin, asset_id)
    key = str(uuid.uuid4())
    update = {"input": {"id": peer_id, "name": "one", "idempotencyKey": key}}
    await admin.data(UPDATE, update)
    await admin.data(UPDATE, {"input": {"id": peer_id, "name": "two"}})
    # The replay reports the peer as it is now, and changes nothing.
    replay = await admin.data(UPDATE, update)
    assert replay["updatePeer"]["peer"]["name"] == "two"
    failure = await admin.error(UPDATE, {"input": {**update["input"], "name": "three"}})
    assert failure.code == "CONFLICT"

    key = str(uuid.uuid4())
    delete = {"input": {"id": peer_id, "idempotencyKey": key}}
    assert (await admin.data(DELETE, delete))["deletePeer"] == {"success": True}
    assert (await admin.data(DELETE, delete))["deletePeer"] == {"success": True}


async def test_concurrent_identical_deposits_move_money_once(admin: Admin) -> None:
    asset_id = await admin.create_asset()
    peer_id = await create_peer(admin, asset_id)
    payload = {
        "input": {
            "peerId": peer_id,
            "amount": "40",
            "id": str(uuid.uuid4()),
            "idempotencyKey": str(uuid.uuid4()),
        }
    }
    # The same input each time; only a comment differs, as each signed body must.
    results = await asyncio.gather(
        *(admin.data(f"{DEPOSIT}# attempt {i}", payload) for i in range(20))
    )
    assert all(r["depositPeerLiquidity"] == {"success": True} for r in results)
    assert await liquidity(admin, peer_id) == "40"


async def test_concurrent_deposits_of_one_transfer_with_different_keys_move_money_once(
    admin: Admin,
) -> None:
    asset_id = await admin.create_asset()
    peer_id = await create_peer(admin, asset_id)
    transfer = str(uuid.uuid4())

    async def attempt() -> str:
        payload = {
            "input": {
                "peerId": peer_id,
                "amount": "40",
                "id": transfer,
                "idempotencyKey": str(uuid.uuid4()),
            }
        }
        # INTERNAL_SERVER_ERROR says "retry with the same id", and a caller does: the ledger's
        # two writers can both take a new transfer id at once, and the second batch then fails
        # on the transfers' primary key (money still moves once; see the ledger).
        for _ in range(5):
            try:
                await admin.data(DEPOSIT, payload)
            except GraphQLFailure as failure:
                if failure.code != "INTERNAL_SERVER_ERROR":
                    return failure.code
            else:
                return "OK"
        return "INTERNAL_SERVER_ERROR"

    outcomes = await asyncio.gather(*(attempt() for _ in range(20)))
    # The ledger treats a repeat of a transfer as a replay; a refusal would be DUPLICATE.
    assert "OK" in outcomes
    assert set(outcomes) <= {"OK", "DUPLICATE"}, outcomes
    assert await liquidity(admin, peer_id) == "40"

    # The same transfer id with another amount is refused outright.
    failure = await admin.error(
        DEPOSIT,
        {
            "input": {
                "peerId": peer_id,
                "amount": "41",
                "id": transfer,
                "idempotencyKey": str(uuid.uuid4()),
            }
        },
    )
    assert failure.code == "DUPLICATE"
    assert await liquidity(admin, peer_id) == "40"


# -- announcements --------------------------------------------------------------------------------


async def test_peer_changes_are_announced(admin: Admin) -> None:
    asset_id = await admin.create_asset()
    channel = admin.backend.settings.redis_key_prefix + PEERS_CHANGED_CHANNEL
    async with admin.backend.redis.pubsub() as pubsub:
        await pubsub.subscribe(channel)

        async def next_message() -> dict[str, Any]:
            async with asyncio.timeout(15):
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
                    if message is not None:
                        received: dict[str, Any] = message
                        return received

        peer_id = await create_peer(admin, asset_id)
        message = await next_message()
        assert message["channel"] in (channel, channel.encode())

        await admin.data(UPDATE, {"input": {"id": peer_id, "name": "x"}})
        await next_message()
        await admin.data(DELETE, {"input": {"id": peer_id}})
        await next_message()
        await pubsub.unsubscribe(channel)
