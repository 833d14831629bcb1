"""The Open Payments resource server for incoming payments on a whole running node (connector,
backend, authorization server; real Postgres and Redis): created, read, listed and completed
by signed requests with GNAP tokens, the same rows the admin API sees, paid over the STREAM
credentials they hand out; and the real @interledger/open-payments client doing all of it with
every response validated against the OpenAPI files."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.interop.node import node_script, run_script
from tests.openpayments.resource_harness import (  # noqa: F401 (fixture op_node)
    OpNode,
    b64url_decode,
    incoming_access,
    op_node_fixture,
)

from kiungo.openpayments.http_signatures import sign_request
from kiungo.openpayments.jwk import private_key_to_pem

ALL = ["create", "read", "list", "complete"]
ADMIN_VIEW = (
    "query($id: String!) { incomingPayment(id: $id) { id walletAddressId client state"
    " receivedAmount { value } incomingAmount { value } metadata } }"
)


def usd(value: int) -> dict[str, Any]:
    return {"value": str(value), "assetCode": "USD", "assetScale": 2}


def amount(value: Any, code: str, scale: Any) -> dict[str, Any]:
    return {"value": value, "assetCode": code, "assetScale": scale}


def payment_uuid(payment: dict[str, Any]) -> str:
    url: str = payment["id"]
    return url.rsplit("/", 1)[1]


async def test_create_read_list_and_complete_with_signed_requests(op_node: OpNode) -> None:
    alice = await op_node.client()
    _, bob = await op_node.wallet()
    token = (await alice.grant(incoming_access(ALL, bob)))["value"]

    created = await alice.create(
        token, {"walletAddress": bob, "incomingAmount": usd(500), "metadata": {"ref": "INV-1"}}
    )
    assert created.status_code == 201, created.text
    payment = created.json()
    pid = payment_uuid(payment)
    assert payment["id"] == f"{op_node.url}/incoming-payments/{pid}"
    assert payment["walletAddress"] == bob
    assert payment["completed"] is False
    assert payment["incomingAmount"] == usd(500)
    assert payment["receivedAmount"] == usd(0)
    assert payment["metadata"] == {"ref": "INV-1"}
    [method] = payment["methods"]
    assert method["type"] == "ilp"
    assert method["ilpAddress"].startswith("test.kiungo.")
    assert len(b64url_decode(method["sharedSecret"])) == 32

    # The admin API's row: same wallet address, the creating client recorded.
    view = (await op_node.admin.data(ADMIN_VIEW, {"id": pid}))["incomingPayment"]
    wallet_id = await op_node.pool.fetchval("SELECT id FROM wallet_addresses WHERE url = $1", bob)
    assert view["walletAddressId"] == str(wallet_id)
    assert view["client"] == alice.url
    assert view["state"] == "PENDING"
    assert view["incomingAmount"] == {"value": "500"}
    created_event = await op_node.events(pid, "incoming_payment.created")
    assert created_event["data"]["client"] == alice.url

    read = await alice.send("GET", payment["id"], token=token)
    assert read.status_code == 200, read.text
    # The same payment; its credentials are made afresh (as SPSP's), for the same receiver.
    fresh = read.json()
    assert [m["type"] for m in fresh.pop("methods")] == ["ilp"]
    assert fresh == {k: v for k, v in payment.items() if k != "methods"}

    public = await op_node.http.get(payment["id"])
    assert public.status_code == 200
    assert public.json() == {"receivedAmount": usd(0), "authServer": op_node.auth_url}

    listed = await alice.send(
        "GET", f"{op_node.url}/incoming-payments?wallet-address={bob}", token=token
    )
    assert listed.status_code == 200, listed.text
    page = listed.json()
    assert [p["id"] for p in page["result"]] == [payment["id"]]
    assert "methods" not in page["result"][0]
    assert page["pagination"] == {
        "hasNextPage": False,
        "hasPreviousPage": False,
        "startCursor": pid,
        "endCursor": pid,
    }

    completed = await alice.send("POST", f"{payment['id']}/complete", token=token)
    assert completed.status_code == 200, completed.text
    assert completed.json()["completed"] is True
    assert "methods" not in completed.json()
    again = await alice.send("GET", payment["id"], token=token)
    assert again.json()["completed"] is True
    assert again.json()["methods"] == []
    view = (await op_node.admin.data(ADMIN_VIEW, {"id": pid}))["incomingPayment"]
    assert view["state"] == "COMPLETED"
    await op_node.events(pid, "incoming_payment.completed")


async def test_a_payment_made_in_the_admin_api_is_read_with_read_all(op_node: OpNode) -> None:
    alice = await op_node.client()
    bob_id, bob = await op_node.wallet()
    made = await op_node.admin.data(
        "mutation($input: CreateIncomingPaymentInput!) { createIncomingPayment(input: $input)"
        " { payment { id } } }",
        {"input": {"walletAddressId": bob_id, "incomingAmount": usd(100)}},
    )
    pid = made["createIncomingPayment"]["payment"]["id"]
    url = f"{op_node.url}/incoming-payments/{pid}"
    own_only = (await alice.grant(incoming_access(["read", "list", "complete"], bob)))["value"]
    assert (await alice.send("GET", url, token=own_only)).status_code == 404
    assert (await alice.send("POST", f"{url}/complete", token=own_only)).status_code == 404
    listed = await alice.send(
        "GET", f"{op_node.url}/incoming-payments?wallet-address={bob}", token=own_only
    )
    assert listed.json()["result"] == []

    everything = (await alice.grant(incoming_access(["read-all", "list-all"], bob)))["value"]
    read = await alice.send("GET", url, token=everything)
    assert read.status_code == 200, read.text
    assert read.json()["incomingAmount"] == usd(100)
    assert len(read.json()["methods"]) == 1
    listed = await alice.send(
        "GET", f"{op_node.url}/incoming-payments?wallet-address={bob}", token=everything
    )
    assert [p["id"] for p in listed.json()["result"]] == [url]


async def test_pagination_forward_and_backward(op_node: OpNode) -> None:
    alice = await op_node.client()
    _, bob = await op_node.wallet()
    token = (await alice.grant(incoming_access(["create", "list"], bob)))["value"]
    ids = []
    for n in range(5):
        created = await alice.create(token, {"walletAddress": bob, "metadata": {"n": n}})
        ids.append(created.json()["id"])
    newest_first = list(reversed(ids))

    async def page(query: str) -> dict[str, Any]:
        response = await alice.send(
            "GET", f"{op_node.url}/incoming-payments?wallet-address={bob}{query}", token=token
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    first = await page("&first=2")
    assert [p["id"] for p in first["result"]] == newest_first[:2]
    assert first["pagination"]["hasNextPage"] is True
    assert first["pagination"]["hasPreviousPage"] is False
    second = await page(f"&first=2&cursor={first['pagination']['endCursor']}")
    assert [p["id"] for p in second["result"]] == newest_first[2:4]
    assert second["pagination"]["hasNextPage"] is True
    assert second["pagination"]["hasPreviousPage"] is True
    third = await page(f"&first=2&cursor={second['pagination']['endCursor']}")
    assert [p["id"] for p in third["result"]] == newest_first[4:]
    assert third["pagination"]["hasNextPage"] is False
    back = await page(f"&last=2&cursor={third['pagination']['startCursor']}")
    assert [p["id"] for p in back["result"]] == newest_first[2:4]
    assert back["pagination"]["hasPreviousPage"] is True
    assert back["pagination"]["hasNextPage"] is True
    start = await page(f"&last=3&cursor={newest_first[2].rsplit('/', 1)[1]}")
    assert [p["id"] for p in start["result"]] == newest_first[:2]
    assert start["pagination"]["hasPreviousPage"] is False

    for bad in ("&first=0", "&first=101", "&first=x", "&last=-1", "&first=1&last=1",
                "&cursor=nope", f"&cursor={uuid.uuid4()}"):  # fmt: skip
        response = await alice.send(
            "GET", f"{op_node.url}/incoming-payments?wallet-address={bob}{bad}", token=token
        )
        assert response.status_code == 400, (bad, response.text)
        assert response.json()["error"]["code"] == "invalid_request"


@pytest.mark.interop
async def test_the_open_payments_client_and_pay_end_to_end(op_node: OpNode, tmp_path: Path) -> None:
    alice = await op_node.client()
    bob_id, bob = await op_node.wallet()
    pem = tmp_path / "alice.pem"
    pem.write_bytes(private_key_to_pem(alice.key))
    async with node_script("open_payments_grants.js", alice.url, str(pem), alice.kid) as js:
        granted = await js.command(
            {
                "op": "grant",
                "url": op_node.auth_url,
                "access": incoming_access(["create", "read", "list", "complete"], bob),
            }
        )
        assert granted["ok"], granted
        token = granted["body"]["access_token"]["value"]

        created = await js.command(
            {
                "op": "createIncoming",
                "url": op_node.url,
                "accessToken": token,
                "body": {
                    "walletAddress": bob,
                    "incomingAmount": usd(700),
                    "expiresAt": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
                    "metadata": {"description": "coffee"},
                },
            }
        )
        assert created["ok"], created
        payment = created["body"]
        assert payment["walletAddress"] == bob
        assert payment["metadata"] == {"description": "coffee"}

        read = await js.command({"op": "getIncoming", "url": payment["id"], "accessToken": token})
        assert read["ok"], read
        assert [m["type"] for m in read["body"]["methods"]] == ["ilp"]

        listed = await js.command(
            {
                "op": "listIncoming",
                "url": op_node.url,
                "accessToken": token,
                "walletAddress": bob,
                "pagination": {"first": 10},
            }
        )
        assert listed["ok"], listed
        assert [p["id"] for p in listed["body"]["result"]] == [payment["id"]]

        public = await js.command({"op": "getPublicIncoming", "url": payment["id"]})
        assert public["ok"], public
        assert public["body"] == {"receivedAmount": usd(0), "authServer": op_node.auth_url}

        # @interledger/pay streams to the payment's own credentials through the node.
        [method] = payment["methods"]
        status, result = await run_script(
            "pay.js",
            "--ilp-url", f"{op_node.url}/ilp",
            "--token", "alice-token",
            "--destination-address", method["ilpAddress"],
            "--shared-secret", method["sharedSecret"],
            "--amount", "700",
            "--asset-code", "USD",
            "--asset-scale", "2",
        )  # fmt: skip
        assert status == 0, result
        assert result["amountDelivered"] == "700"
        pid = payment_uuid(payment)
        completed_event = await op_node.events(pid, "incoming_payment.completed")
        assert completed_event["data"]["receivedAmount"]["value"] == "700"

        paid = await js.command({"op": "getIncoming", "url": payment["id"], "accessToken": token})
        assert paid["ok"], paid
        assert paid["body"]["completed"] is True
        assert paid["body"]["receivedAmount"] == usd(700)
        assert paid["body"]["methods"] == []
        view = (await op_node.admin.data(ADMIN_VIEW, {"id": pid}))["incomingPayment"]
        assert view["state"] == "COMPLETED"
        assert view["receivedAmount"] == {"value": "700"}
        public = await js.command({"op": "getPublicIncoming", "url": payment["id"]})
        assert public["body"]["receivedAmount"] == usd(700)

        # One without an amount, completed by the client.
        open_ended = await js.command(
            {
                "op": "createIncoming",
                "url": op_node.url,
                "accessToken": token,
                "body": {"walletAddress": bob},
            }
        )
        assert open_ended["ok"], open_ended
        done = await js.command(
            {"op": "completeIncoming", "url": open_ended["body"]["id"], "accessToken": token}
        )
        assert done["ok"], done
        assert done["body"]["completed"] is True
        view = (await op_node.admin.data(ADMIN_VIEW, {"id": payment_uuid(open_ended["body"])}))[
            "incomingPayment"
        ]
        assert view["state"] == "COMPLETED"
        assert view["client"] == alice.url
        assert bob_id == view["walletAddressId"]
        # Completed, it takes no more money over the credentials it handed out.
        [closed] = open_ended["body"]["methods"]
        status, result = await run_script(
            "pay.js",
            "--ilp-url", f"{op_node.url}/ilp",
            "--token", "alice-token",
            "--destination-address", closed["ilpAddress"],
            "--shared-secret", closed["sharedSecret"],
            "--amount", "100",
            "--asset-code", "USD",
            "--asset-scale", "2",
            "--timeout-ms", "10000",
        )  # fmt: skip
        assert status == 1, result
        assert result["amountDelivered"] == "0", result

        refused = await js.command({"op": "getIncoming", "url": payment["id"], "accessToken": "x"})
        assert not refused["ok"] and refused["status"] == 401, refused


async def test_refusals_are_the_specs_and_change_nothing(op_node: OpNode) -> None:
    alice = await op_node.client()
    mallory = await op_node.client()
    _, bob = await op_node.wallet()
    _, carol = await op_node.wallet()
    granted = await alice.grant(incoming_access(ALL, bob))
    token = granted["value"]
    made = await alice.create(token, {"walletAddress": bob, "incomingAmount": usd(100)})
    assert made.status_code == 201, made.text
    payment = made.json()["id"]
    carol_token = (await alice.grant(incoming_access(["create"], carol)))["value"]
    carols = (await alice.create(carol_token, {"walletAddress": carol})).json()["id"]
    quote_token = (await alice.grant([{"type": "quote", "actions": ["create", "read"]}]))["value"]
    expiring = await alice.grant(incoming_access(ALL, bob))
    await op_node.pool.execute(
        "UPDATE grant_access_tokens SET expires_at = now() - interval '1 second'"
        " WHERE value_hash = encode(sha256($1::text::bytea), 'hex')",
        expiring["value"],
    )
    revoked = await alice.grant(incoming_access(ALL, bob))
    gone = await alice.send("DELETE", revoked["manage"], token=revoked["value"])
    assert gone.status_code == 204, gone.text

    create_url = f"{op_node.url}/incoming-payments"
    list_url = f"{create_url}?wallet-address={bob}"
    body = {"walletAddress": bob}
    before = await op_node.rows()
    complete = f"{payment}/complete"
    unknown = f"{create_url}/{uuid.uuid4()}"
    stale = int(time.time()) - 3600
    wrong_key = {"key": mallory.key}
    cases: list[tuple[str, str, str, Any, dict[str, Any], int]] = [
        # name, method, url, body, send's options, status
        ("no token", "POST", create_url, body, {"signed": False}, 401),
        ("unsigned", "POST", create_url, body, {"token": token, "signed": False}, 401),
        ("unsigned get", "GET", payment, None, {"token": token, "signed": False}, 401),
        ("unsigned list", "GET", list_url, None, {"token": token, "signed": False}, 401),
        ("unsigned complete", "POST", complete, None, {"token": token, "signed": False}, 401),
        ("unknown token", "POST", create_url, body, {"token": "nope"}, 401),
        ("other client's key", "POST", create_url, body,
         {"token": token, "key": mallory.key, "kid": mallory.kid}, 401),
        ("wrong key, right kid", "POST", create_url, body, {"token": token, **wrong_key}, 401),
        ("outside the skew", "POST", create_url, body, {"token": token, "created": stale}, 401),
        ("expired token", "POST", create_url, body, {"token": expiring["value"]}, 401),
        ("revoked token", "GET", payment, None, {"token": revoked["value"]}, 401),
        ("quote token create", "POST", create_url, body, {"token": quote_token}, 403),
        ("quote token get", "GET", payment, None, {"token": quote_token}, 403),
        ("quote token list", "GET", list_url, None, {"token": quote_token}, 403),
        ("quote token complete", "POST", complete, None, {"token": quote_token}, 403),
        ("other wallet create", "POST", create_url, {"walletAddress": carol},
         {"token": token}, 403),
        ("other wallet list", "GET", f"{create_url}?wallet-address={carol}", None,
         {"token": token}, 403),
        ("other wallet get", "GET", carols, None, {"token": token}, 404),
        ("other wallet complete", "POST", f"{carols}/complete", None, {"token": token}, 404),
        ("create-only token get", "GET", carols, None, {"token": carol_token}, 403),
        ("unknown payment", "GET", unknown, None, {"token": token}, 404),
        ("unknown payment complete", "POST", f"{unknown}/complete", None, {"token": token}, 404),
        ("not a uuid complete", "POST", f"{create_url}/x/complete", None, {"token": token}, 404),
        ("unknown public", "GET", unknown, None, {"signed": False}, 404),
    ]  # fmt: skip
    for name, method, url, sent, options, status in cases:
        response = await alice.send(method, url, sent, **options)
        assert response.status_code == status, (name, response.text)
        error = response.json()["error"]
        assert isinstance(error["code"], str) and isinstance(error["description"], str), name
        if status == 401:
            assert response.headers["www-authenticate"] == f"GNAP as_uri={op_node.auth_url}", name
    assert await op_node.rows() == before

    # A body other than the one signed.
    content = b'{"walletAddress":"' + bob.encode() + b'"}'
    signed = await alice.send("POST", create_url, raw=content, token=token)
    assert signed.status_code == 201
    before = await op_node.rows()
    headers = {"Authorization": f"GNAP {token}"}
    headers |= sign_request(
        method="POST",
        target_uri=create_url,
        headers=headers,
        body=content,
        private_key=alice.key,
        key_id=alice.kid,
        created=int(time.time()),
    )
    tampered = content.replace(b"}", b',"metadata":{"x":1}}')
    headers["Content-Length"] = str(len(tampered))
    response = await op_node.http.post(create_url, content=tampered, headers=headers)
    assert response.status_code == 401, response.text
    assert await op_node.rows() == before


async def test_bad_input_is_400_and_changes_nothing(op_node: OpNode) -> None:
    alice = await op_node.client()
    _, bob = await op_node.wallet()
    token = (await alice.grant(incoming_access(ALL)))["value"]
    soon = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    bad_amounts: list[Any] = [
        usd(0),
        amount("1", "EUR", 2),
        amount("1", "USD", 3),
        amount("1", "USD", True),
        amount(str(1 << 64), "USD", 2),
        amount("-1", "USD", 2),
        amount(5, "USD", 2),
        amount("1.5", "USD", 2),
        "5",
        {"value": "5"},
    ]
    bad_bodies: list[Any] = [
        [],
        "x",
        {},
        {"walletAddress": 7},
        {"walletAddress": bob, "extra": 1},
        *({"walletAddress": bob, "incomingAmount": bad} for bad in bad_amounts),
        {"walletAddress": bob, "expiresAt": "yesterday"},
        {"walletAddress": bob, "expiresAt": "2001-01-01T00:00:00Z"},
        {"walletAddress": bob, "expiresAt": "2999-01-01T00:00:00Z"},
        {"walletAddress": bob, "expiresAt": soon.replace("+00:00", "")},
        {"walletAddress": bob, "expiresAt": 5},
        {"walletAddress": bob, "metadata": []},
        {"walletAddress": bob, "metadata": {"x": "\x00"}},
        {"walletAddress": bob, "metadata": {"x": "y" * 20_000}},
        {"walletAddress": bob + "\x00"},
    ]
    url = f"{op_node.url}/incoming-payments"
    before = await op_node.rows()
    for body in bad_bodies:
        response = await alice.send("POST", url, body, token=token)
        assert response.status_code == 400, (body, response.text)
        assert response.json()["error"]["code"] == "invalid_request", body
    for raw in (b"{", b"[" * 100_000, b"\xff", b'{"walletAddress": "\\ud800"}'):
        response = await alice.send("POST", url, raw=raw, token=token)
        assert response.status_code == 400, (raw[:20], response.text)
    unknown = await alice.send("POST", url, {"walletAddress": f"{op_node.url}/nobody"}, token=token)
    assert unknown.status_code == 404, unknown.text
    assert await op_node.rows() == before

    # An expired payment cannot be completed; its methods are gone.
    made = await alice.create(token, {"walletAddress": bob})
    payment = made.json()
    await op_node.pool.execute(
        "UPDATE incoming_payments SET expires_at = now() - interval '1 second' WHERE id = $1",
        uuid.UUID(payment_uuid(payment)),
    )
    read = await alice.send("GET", payment["id"], token=token)
    assert read.json()["methods"] == []
    # The backend's expiry worker (every 50 ms) marks it EXPIRED: let it, so that the rows
    # compared below move only if the refused completion moved them.
    deadline = asyncio.get_running_loop().time() + 20
    while asyncio.get_running_loop().time() < deadline:
        state = await op_node.pool.fetchval(
            "SELECT state FROM incoming_payments WHERE id = $1",
            uuid.UUID(payment_uuid(payment)),
        )
        if state == "EXPIRED":
            break
        await asyncio.sleep(0.05)
    assert state == "EXPIRED"
    before = await op_node.rows()
    refused = await alice.send("POST", f"{payment['id']}/complete", token=token)
    assert refused.status_code == 400, refused.text
    assert await op_node.rows() == before


async def test_a_wallet_address_at_incoming_payments_still_answers_spsp(op_node: OpNode) -> None:
    """The resource server's paths are reserved only for Open Payments requests: a wallet
    address whose path happens to be /incoming-payments keeps its document and SPSP."""
    await op_node.wallet("incoming-payments")
    document = await op_node.http.get(
        f"{op_node.url}/incoming-payments", headers={"Accept": "application/json"}
    )
    assert document.status_code == 200, document.text
    assert document.json()["id"] == f"{op_node.url}/incoming-payments"
    spsp = await op_node.http.get(
        f"{op_node.url}/incoming-payments", headers={"Accept": "application/spsp4+json"}
    )
    assert spsp.status_code == 200, spsp.text
    assert "destination_account" in spsp.json()


@pytest.mark.interop
async def test_an_spsp_sender_pays_the_open_payments_url_of_an_incoming_payment(
    op_node: OpNode,
) -> None:
    """``<OPEN_PAYMENTS_URL>/incoming-payments/<id>`` answers SPSP to a request that accepts
    it and carries no token, as the payment's wallet address URL does; @interledger/pay, an
    SPSP-only sender, pays it there and the payment completes."""
    alice = await op_node.client()
    _, bob = await op_node.wallet()
    token = (await alice.grant(incoming_access(["create", "read"], bob)))["value"]
    payment = (await alice.create(token, {"walletAddress": bob, "incomingAmount": usd(300)})).json()
    url = payment["id"]
    assert url.startswith(f"{op_node.url}/incoming-payments/")

    spsp = await op_node.http.get(url, headers={"Accept": "application/spsp4+json"})
    assert spsp.status_code == 200, spsp.text
    assert spsp.headers["content-type"].startswith("application/spsp4+json")
    assert set(spsp.json()) >= {"destination_account", "shared_secret"}
    preflight = await op_node.http.options(url)
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "*"
    # Plain JSON is still the public incoming payment; a token is still the resource server.
    public = await op_node.http.get(url, headers={"Accept": "application/json"})
    assert public.json() == {"receivedAmount": usd(0), "authServer": op_node.auth_url}
    read = await alice.send("GET", url, token=token)
    assert read.status_code == 200 and read.json()["id"] == url, read.text
    unknown = await op_node.http.get(
        f"{op_node.url}/incoming-payments/{uuid.uuid4()}",
        headers={"Accept": "application/spsp4+json"},
    )
    assert unknown.status_code == 404

    status, result = await run_script(
        "pay.js",
        "--ilp-url", f"{op_node.url}/ilp",
        "--token", "alice-token",
        "--spsp-url", url,
        "--spsp-accept", "application/spsp4+json",
        "--amount", "300",
        "--asset-code", "USD",
        "--asset-scale", "2",
    )  # fmt: skip
    assert status == 0, result
    assert result["amountDelivered"] == "300"
    await op_node.events(payment_uuid(payment), "incoming_payment.completed")
    closed = await op_node.http.get(url, headers={"Accept": "application/spsp4+json"})
    assert closed.status_code == 404, closed.text
