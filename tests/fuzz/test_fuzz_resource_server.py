"""Fuzzing the Open Payments resource server (issue 18): random methods, paths, queries, headers
and bodies at every route of :mod:`kiungo.connector.resource_server`, correctly signed requests
with a valid token and random bodies and queries, and mutations of correctly signed requests.

For every input: no 5xx, and a JSON ``error`` body on every refusal the resource server makes.
Unsigned and mutated requests leave the incoming payments and webhook events exactly as they
were (none is a valid signed request). Signed random requests may be valid and create a payment;
there the check is only that nothing is a 5xx. As in test_fuzz_auth, each ``@given`` runs in a
worker thread with a synchronous client so the node keeps serving on the test's loop.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any
from urllib.parse import quote

import httpx
from hypothesis import given
from hypothesis import strategies as st
from tests.fuzz.test_fuzz_auth import (
    FUZZ,
    HEADER_NAMES,
    HEADER_VALUE,
    TEXT,
    json_values,
    run_in_thread,
)
from tests.openpayments.resource_harness import (  # noqa: F401 (fixture op_node)
    OpNode,
    incoming_access,
    op_node_fixture,
)

from kiungo.openpayments.http_signatures import sign_request

ACTIONS = ["create", "read", "list", "complete"]


def assert_refused_well(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400 and response.status_code not in (404, 405, 406):
        assert "error" in response.json(), response.text


def amounts() -> st.SearchStrategy[Any]:
    return st.fixed_dictionaries(
        {},
        optional={
            "value": st.sampled_from(["0", "1", "18446744073709551616", "-1", "1e3"])
            | st.integers().map(str)
            | json_values(),
            "assetCode": st.sampled_from(["USD", "EUR"]) | json_values(),
            "assetScale": st.sampled_from([2, 0, 255, 256]) | json_values(),
        },
    )


def create_like(wallets: list[str]) -> st.SearchStrategy[Any]:
    return st.fixed_dictionaries(
        {},
        optional={
            "walletAddress": st.sampled_from(wallets) | json_values(),
            "incomingAmount": amounts() | json_values(),
            "expiresAt": st.sampled_from(
                ["2001-01-01T00:00:00Z", "2999-01-01T00:00:00Z", "9999-12-31T23:59:59+14:00"]
            )
            | st.datetimes().map(lambda d: d.isoformat())
            | json_values(),
            "metadata": json_values(),
            "extra": json_values(),
        },
    )


def valid_create(wallet: str) -> st.SearchStrategy[Any]:
    """Bodies a create accepts, so that the search also goes past validation."""
    return st.fixed_dictionaries(
        {"walletAddress": st.sampled_from([wallet, wallet + "/"])},
        optional={
            "incomingAmount": st.integers(1, 10**12).map(
                lambda v: {"value": str(v), "assetCode": "USD", "assetScale": 2}
            ),
            "metadata": st.dictionaries(TEXT, json_values(), max_size=3),
        },
    )


async def test_random_requests_at_every_route_never_5xx_and_change_nothing(
    op_node: OpNode,
) -> None:
    alice = await op_node.client()
    _, bob = await op_node.wallet()
    token = (await alice.grant(incoming_access(ACTIONS, bob)))["value"]
    payment = (await alice.create(token, {"walletAddress": bob})).json()["id"]
    base = f"{op_node.url}/incoming-payments"
    paths = [base, f"{base}?wallet-address={bob}", payment, f"{payment}/complete", f"{base}/x"]
    before = await op_node.rows()

    @FUZZ
    @given(
        method=st.sampled_from(["POST", "GET", "PUT", "DELETE", "OPTIONS"]),
        url=st.sampled_from(paths) | TEXT.map(lambda tail: f"{base}/{tail.lstrip('/')}"),
        headers=st.dictionaries(st.sampled_from(HEADER_NAMES), HEADER_VALUE, max_size=5)
        | st.just({"Authorization": f"GNAP {token}"}),
        body=st.binary(max_size=300)
        | create_like([bob]).map(lambda v: json.dumps(v).encode())
        | st.sampled_from([100, 5_000, 60_000]).map(lambda depth: b"[" * depth),
    )
    def check(
        client: httpx.Client, method: str, url: str, headers: dict[str, str], body: bytes
    ) -> None:
        headers.pop("Content-Length", None)  # httpx frames the body
        response = client.request(method, url, headers=headers, content=body)
        assert_refused_well(response)

    await run_in_thread(check)
    assert await op_node.rows() == before


async def test_signed_requests_with_random_bodies_and_queries_never_5xx(op_node: OpNode) -> None:
    alice = await op_node.client()
    _, bob = await op_node.wallet()
    _, carol = await op_node.wallet()
    token = (await alice.grant(incoming_access(ACTIONS, bob)))["value"]
    payment = (await alice.create(token, {"walletAddress": bob})).json()["id"]
    base = f"{op_node.url}/incoming-payments"
    wallets = [bob, bob + "/", carol, f"{op_node.url}/nobody", "x"]
    query_value = TEXT | st.sampled_from(["0", "1", "100", "101", str(uuid.uuid4()), *wallets])

    @FUZZ
    @given(
        kind=st.sampled_from(["create", "list", "get", "complete"]),
        body=(valid_create(bob) | create_like(wallets)).map(lambda v: json.dumps(v).encode())
        | st.binary(max_size=200),
        query=st.fixed_dictionaries(
            {"wallet-address": st.sampled_from(wallets)},
            optional={name: query_value for name in ("first", "last", "cursor", "x")},
        )
        | st.dictionaries(
            st.sampled_from(["wallet-address", "first", "last", "cursor", "x"]),
            query_value,
            max_size=4,
        ),
        # Not "." or "..": the client would resolve those path segments after signing.
        tail=TEXT.filter(lambda t: t not in (".", ".."))
        | st.sampled_from([payment.rsplit("/", 1)[1], str(uuid.uuid4())]),
    )
    def check(
        client: httpx.Client, kind: str, body: bytes, query: dict[str, str], tail: str
    ) -> None:
        method = "POST" if kind in ("create", "complete") else "GET"
        if kind == "create":
            url = base
        elif kind == "list":
            url = str(httpx.URL(base, params=query))
        else:
            url = f"{base}/{quote(tail, safe='')}" + ("/complete" if kind == "complete" else "")
        raw = body if kind == "create" else b""
        headers = {"Authorization": f"GNAP {token}"}
        headers |= sign_request(
            method=method,
            target_uri=url,
            headers=headers,
            body=raw or None,
            private_key=alice.key,
            key_id=alice.kid,
            created=int(time.time()),
        )
        response = client.request(method, url, headers=headers, content=raw)
        seen.add((kind, response.status_code))
        assert_refused_well(response)
        assert response.status_code != 401, (url, raw, response.text)  # the signature holds

    seen: set[tuple[str, int]] = set()
    await run_in_thread(check)
    # The search reaches past the signature: some random requests are valid, some refused.
    assert {("create", 201), ("create", 400), ("list", 200), ("list", 400)} <= seen, sorted(seen)


async def test_mutated_signed_requests_never_5xx_and_change_nothing(op_node: OpNode) -> None:
    alice = await op_node.client()
    _, bob = await op_node.wallet()
    token = (await alice.grant(incoming_access(ACTIONS, bob)))["value"]
    payment = (await alice.create(token, {"walletAddress": bob})).json()["id"]
    base = f"{op_node.url}/incoming-payments"
    before = await op_node.rows()

    @FUZZ
    @given(
        kind=st.sampled_from(["create", "list", "get", "complete"]),
        mutate=st.sampled_from(["body", "signature", "input", "digest", "auth", "drop", "url"]),
        noise=st.text(
            st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=40
        ),
    )
    def check(client: httpx.Client, kind: str, mutate: str, noise: str) -> None:
        method = "POST" if kind in ("create", "complete") else "GET"
        url = {
            "create": base,
            "list": f"{base}?wallet-address={bob}",
            "get": payment,
            "complete": f"{payment}/complete",
        }[kind]
        raw = json.dumps({"walletAddress": bob}).encode() if kind == "create" else b""
        headers = {"Authorization": f"GNAP {token}"}
        headers |= sign_request(
            method=method,
            target_uri=url,
            headers=headers,
            body=raw or None,
            private_key=alice.key,
            key_id=alice.kid,
            created=int(time.time()),
        )
        if mutate == "digest" and not raw:
            mutate = "body"
        if mutate == "body":
            raw = raw + b" " if raw else b"{}"
            headers.pop("Content-Length", None)
        elif mutate == "signature":
            headers["Signature"] = "sig1=:" + noise + ":"
        elif mutate == "input":
            headers["Signature-Input"] = headers["Signature-Input"] + noise
        elif mutate == "digest":
            headers["Content-Digest"] = noise
        elif mutate == "auth":
            headers["Authorization"] = f"GNAP {token}{noise}x"
        elif mutate == "url":
            url = url + ("&" if "?" in url else "?") + "x=" + noise.replace("#", "")
        else:
            headers.pop("Signature")
        response = client.request(method, url, headers=headers, content=raw)
        assert_refused_well(response)
        assert response.status_code >= 400, (mutate, response.text)

    await run_in_thread(check)
    assert await op_node.rows() == before


def sending_like(
    wallets: list[str], receivers: list[str], quotes: list[str]
) -> st.SearchStrategy[Any]:
    """Bodies of quote and outgoing payment creations, valid and not."""
    return st.fixed_dictionaries(
        {},
        optional={
            "walletAddress": st.sampled_from(wallets) | json_values(),
            "receiver": st.sampled_from(receivers) | json_values(),
            "method": st.sampled_from(["ilp", "ILP"]) | json_values(),
            "debitAmount": amounts() | json_values(),
            "receiveAmount": amounts() | json_values(),
            "quoteId": st.sampled_from(quotes) | json_values(),
            "metadata": json_values(),
            "incomingPayment": st.sampled_from(receivers) | json_values(),
        },
    )


async def test_signed_sending_requests_with_random_bodies_and_queries_never_5xx(
    op_node: OpNode,
) -> None:
    """The sending side (quotes, outgoing payments, spent amounts) with a token allowing all of
    it and random bodies, ids and queries: never a 5xx, never a signature refusal."""
    alice = await op_node.client()
    _, bob = await op_node.wallet()
    incoming = (await alice.grant(incoming_access(["create"], bob)))["value"]
    receiver = (await alice.create(incoming, {"walletAddress": bob})).json()["id"]
    access: list[dict[str, Any]] = [
        {"type": "quote", "actions": ["create", "read", "read-all"]},
        {
            "type": "outgoing-payment",
            "actions": ["create", "read", "read-all", "list", "list-all"],
            "identifier": alice.url,
            "limits": {"debitAmount": {"value": "1000", "assetCode": "USD", "assetScale": 2}},
        },
    ]
    token = (await alice.interactive_grant(access))["value"]
    made = await alice.send(
        "POST",
        f"{op_node.url}/quotes",
        {
            "walletAddress": alice.url,
            "receiver": receiver,
            "method": "ilp",
            "receiveAmount": {"value": "5", "assetCode": "USD", "assetScale": 2},
        },
        token=token,
    )
    assert made.status_code == 201, made.text
    quote_id = made.json()["id"]
    wallets = [alice.url, bob, f"{op_node.url}/nobody", "x"]
    receivers = [receiver, bob, f"{op_node.url}/incoming-payments/{uuid.uuid4()}", "$x.test"]
    quotes = [quote_id, f"{op_node.url}/quotes/{uuid.uuid4()}", "x"]
    query_value = TEXT | st.sampled_from(["0", "1", "100", "101", str(uuid.uuid4()), *wallets])

    @FUZZ
    @given(
        kind=st.sampled_from(["quote", "pay", "get-quote", "get-payment", "list", "spent"]),
        body=sending_like(wallets, receivers, quotes).map(lambda v: json.dumps(v).encode())
        | st.binary(max_size=200),
        query=st.fixed_dictionaries(
            {"wallet-address": st.sampled_from(wallets)},
            optional={name: query_value for name in ("first", "last", "cursor")},
        ),
        tail=TEXT.filter(lambda t: t not in (".", "..")) | st.just(str(uuid.uuid4())),
    )
    def check(
        client: httpx.Client, kind: str, body: bytes, query: dict[str, str], tail: str
    ) -> None:
        method = "POST" if kind in ("quote", "pay") else "GET"
        url = {
            "quote": f"{op_node.url}/quotes",
            "pay": f"{op_node.url}/outgoing-payments",
            "get-quote": f"{op_node.url}/quotes/{quote(tail, safe='')}",
            "get-payment": f"{op_node.url}/outgoing-payments/{quote(tail, safe='')}",
            "list": str(httpx.URL(f"{op_node.url}/outgoing-payments", params=query)),
            "spent": f"{op_node.url}/outgoing-payment-grant",
        }[kind]
        raw = body if method == "POST" else b""
        headers = {"Authorization": f"GNAP {token}"}
        headers |= sign_request(
            method=method,
            target_uri=url,
            headers=headers,
            body=raw or None,
            private_key=alice.key,
            key_id=alice.kid,
            created=int(time.time()),
        )
        response = client.request(method, url, headers=headers, content=raw)
        assert_refused_well(response)
        assert response.status_code != 401, (url, raw, response.text)

    await run_in_thread(check)
    # Whatever was paid stayed within the grant's limit.
    spent = await op_node.pool.fetchval(
        "SELECT coalesce(sum(q.debit_amount), 0) FROM outgoing_payments p"
        " JOIN quotes q ON q.id = p.quote_id WHERE p.client = $1",
        alice.url,
    )
    assert int(spent) <= 1000
