"""The admin API over HTTP: what a malformed, oversized or over-costly request gets (a 4xx with a
code, never a 500), how an unexpected failure is reported, and the other routes."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis
from tests.backend.harness import SECRET, Admin, backend_settings, running_backend

from kiungo.backend.app import MAX_BODY_BYTES
from kiungo.config import Environment
from kiungo.signatures import signature_header

ASSETS = "{ assets { edges { node { id code } } } }"


async def post_raw(
    admin: Admin, content: bytes, content_type: str | None = "application/json", **headers: str
) -> httpx.Response:
    sent = dict(headers)
    if content_type is not None:
        sent["content-type"] = content_type
    return await admin.client.post(f"{admin.url}/graphql", content=content, headers=sent)


async def post_signed(admin: Admin, body: Any) -> httpx.Response:
    """Any JSON value as the body, rightly signed: what it gets is about its shape alone."""
    headers = {"signature": signature_header(SECRET, body)}
    return await post_raw(admin, json.dumps(body).encode(), **headers)


async def raw_request(base_url: str, request: str) -> tuple[int, bytes]:
    """One request written as is (httpx will not send a body shorter than its Content-Length);
    the status and body of the answer, read until the server closes."""
    host, port = httpx.URL(base_url).host, httpx.URL(base_url).port
    assert port is not None
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(request.encode())
        await writer.drain()
        async with asyncio.timeout(10):
            answer = await reader.read(-1)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def refused(response: httpx.Response, status: int, code: str = "BAD_USER_INPUT") -> list[str]:
    """Assert the refusal; return its error messages."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body.get("data") is None, body
    assert body["errors"], body
    assert all(e["extensions"]["code"] == code for e in body["errors"]), body
    return [e["message"] for e in body["errors"]]


@pytest.fixture
async def open_admin(
    migrated_database: str, redis_server_url: str, redis_prefix: str, redis: Redis
) -> AsyncIterator[Admin]:
    """A backend with no ADMIN_API_SECRET, so the shape of any body can be tried."""
    settings = backend_settings(redis_prefix, admin_api_secret=None)
    async with running_backend(
        migrated_database, redis_server_url, settings, workers=False
    ) as running:
        yield running


# -- the envelope --------------------------------------------------------------------------------


async def test_a_body_that_is_not_declared_json_is_415(admin: Admin) -> None:
    content = json.dumps({"query": ASSETS}).encode()
    for content_type in (
        None,
        "text/plain",
        "application/graphql",
        "application/x-www-form-urlencoded",
    ):
        refused(await post_raw(admin, content, content_type), 415)
    # Parameters and case do not matter.
    for content_type in ("application/json; charset=utf-8", "Application/JSON"):
        response = await post_raw(
            admin, content, content_type, signature=signature_header(SECRET, {"query": ASSETS})
        )
        assert response.status_code == 200, response.text


async def test_a_body_over_256_kb_is_413_with_or_without_content_length(admin: Admin) -> None:
    big = json.dumps({"query": ASSETS, "pad": "x" * MAX_BODY_BYTES}).encode()
    assert len(big) > MAX_BODY_BYTES
    refused(await post_raw(admin, big), 413)

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(big), 16_384):
            yield big[i : i + 16_384]

    # A streamed body has no Content-Length (chunked): the limit holds as it is read.
    response = await admin.client.post(
        f"{admin.url}/graphql", content=chunks(), headers={"content-type": "application/json"}
    )
    assert "content-length" not in response.request.headers
    refused(response, 413)
    # A declared length over the limit is refused before the body is sent at all.
    status, answer = await raw_request(
        admin.url,
        "POST /graphql HTTP/1.1\r\nHost: kiungo\r\nContent-Type: application/json\r\n"
        f"Content-Length: {MAX_BODY_BYTES + 1}\r\nConnection: close\r\n\r\n",
    )
    assert status == 413, answer
    assert json.loads(answer)["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_a_body_of_exactly_256_kb_is_read(admin: Admin) -> None:
    body: dict[str, Any] = {"query": ASSETS, "pad": ""}
    base = len(json.dumps(body).encode())
    body["pad"] = "x" * (MAX_BODY_BYTES - base)
    content = json.dumps(body).encode()
    assert len(content) == MAX_BODY_BYTES
    response = await post_raw(admin, content, signature=signature_header(SECRET, body))
    assert response.status_code == 200, response.text


async def test_malformed_json_is_400(admin: Admin) -> None:
    for content in (b"", b"{", b"{query: 1}", b"\xff\xfe\xfd", b'{"query": "x"} trailing', b"NaN"):
        messages = refused(await post_raw(admin, content), 400)
        assert messages == ["the body is not JSON"], content


async def test_a_body_of_the_wrong_shape_is_400(admin: Admin) -> None:
    cases: list[tuple[Any, str]] = [
        ([{"query": ASSETS}], "the body must be a JSON object"),
        ("{ assets { edges { node { id } } } }", "the body must be a JSON object"),
        (None, "the body must be a JSON object"),
        ({}, "the body has no query"),
        ({"query": ""}, "the body has no query"),
        ({"query": "   "}, "the body has no query"),
        ({"query": 5}, "the body has no query"),
        ({"query": {"text": ASSETS}}, "the body has no query"),
        ({"variables": {}}, "the body has no query"),
        ({"query": ASSETS, "variables": [1]}, "variables must be an object"),
        ({"query": ASSETS, "variables": "{}"}, "variables must be an object"),
        ({"query": ASSETS, "variables": 1}, "variables must be an object"),
        ({"query": ASSETS, "operationName": 1}, "operationName must be a string"),
    ]
    for body, message in cases:
        assert refused(await post_signed(admin, body), 400) == [message], body
    # null variables and operationName are the same as none.
    response = await post_signed(admin, {"query": ASSETS, "variables": None, "operationName": None})
    assert response.status_code == 200, response.text


async def test_a_syntax_error_or_an_unknown_field_is_400(admin: Admin) -> None:
    for query in (
        "{ assets {",
        "query {",
        "}",
        "{ nope }",
        "{ assets { nope } }",
        "mutation { x }",
    ):
        response = await admin.post(query)
        messages = refused(response, 400)
        assert all("locations" in e for e in response.json()["errors"]), query
        assert messages, query


async def test_a_wrong_variable_or_operation_name_is_400(admin: Admin) -> None:
    query = "query Q($id: String!) { asset(id: $id) { id } }"
    refused(await admin.post(query, {}), 400)
    refused(await admin.post(query, {"id": 5}), 400)
    body = {"query": query, "variables": {"id": "x"}, "operationName": "Other"}
    assert refused(await post_signed(admin, body), 400) == ["Unknown operation named 'Other'."]
    # Several operations and no operationName: which one to run is not ours to guess.
    several = {
        "query": "query A { assets { edges { cursor } } } query B { assets { edges { cursor } } }"
    }
    assert refused(await post_signed(admin, several), 400) == [
        "Must provide operation name if query contains multiple operations."
    ]
    # No operation to run at all.
    messages = refused(await admin.post("fragment F on Query { __typename }"), 400)
    assert messages == ["Fragment 'F' is never used."]
    two = "query A { assets { edges { node { id } } } } query B { __typename }"
    response = await post_signed(admin, {"query": two, "operationName": "B"})
    assert response.json() == {"data": {"__typename": "Query"}}


# -- the limits ----------------------------------------------------------------------------------


def nested(depth: int) -> str:
    """A query ``depth`` fields deep: the deepest real path (7), then unknown fields below."""
    real = ["assets", "edges", "node", "fees", "edges", "node"]
    names = real[: depth - 1] + ["x"] * max(0, depth - 1 - len(real))
    return "{ " + " { ".join(names) + " { id" + " }" * len(names) + " }"


async def test_the_deepest_real_query_passes(admin: Admin) -> None:
    data = await admin.data(nested(7))
    assert data == {"assets": {"edges": []}}


async def test_a_query_deeper_than_10_is_refused(admin: Admin) -> None:
    response = await admin.post(nested(12))
    messages = refused(response, 400)
    assert any("depth" in m for m in messages), messages
    # At 10 the only complaints are the unknown fields.
    messages = refused(await admin.post(nested(10)), 400)
    assert not any("depth" in m for m in messages), messages


FEES_PAGE = "fees(first: {n}) {{ edges {{ node {{ id fixed basisPoints }} }} }}"


def assets_with_fees(assets: int, fees: int) -> str:
    fees_page = FEES_PAGE.format(n=fees)
    return f"{{ assets(first: {assets}) {{ edges {{ node {{ id {fees_page} }} }} }} }}"


async def test_a_query_over_the_cost_limit_is_refused(admin: Admin) -> None:
    # 100 assets with 100 fees each, asked for twice over under aliases: 20,000 fees.
    page = assets_with_fees(100, 100)[1:-1]
    query = "{ a: " + page.strip() + " b: " + page.strip() + " }"
    messages = refused(await admin.post(query), 400)
    assert any("limit" in m for m in messages), messages
    # Page sizes given by variables count as the largest page.
    query = (
        "query($a: Int, $f: Int) { one: assets(first: $a) { edges { node { id "
        "fees(first: $f) { edges { node { id fixed basisPoints } } } } } } "
        "two: assets(first: $a) { edges { node { id "
        "fees(first: $f) { edges { node { id fixed basisPoints } } } } } } }"
    )
    refused(await admin.post(query, {"a": 1, "f": 1}), 400)
    # And so does what a fragment asks for.
    fragment = (
        "fragment F on Asset { fees(first: 100) { edges { node { id fixed basisPoints } } } } "
        "{ a: assets(first: 100) { edges { node { ...F } } } "
        "b: assets(first: 100) { edges { node { ...F } } } }"
    )
    refused(await admin.post(fragment), 400)


async def test_nested_pages_of_reasonable_size_pass_the_cost_limit(admin: Admin) -> None:
    # 100 assets with 20 fees each is 2,000 fees: well under the limit of 50,000 objects (each
    # connection's page is counted once, not once more for its edges).
    for assets, fees in ((100, 20), (20, 100), (100, 90)):
        data = await admin.data(assets_with_fees(assets, fees))
        assert data == {"assets": {"edges": []}}
    # Without first, a page counts as 20 items.
    data = await admin.data(nested(7))
    assert data == {"assets": {"edges": []}}


async def test_too_many_aliases_or_tokens_are_refused(admin: Admin) -> None:
    aliases = "{ " + " ".join(f"a{i}: __typename" for i in range(31)) + " }"
    messages = refused(await admin.post(aliases), 400)
    assert any("alias" in m.lower() for m in messages), messages
    assert await admin.data("{ " + " ".join(f"a{i}: __typename" for i in range(30)) + " }")
    tokens = "{ " + " ".join(["__typename"] * 5000) + " }"
    messages = refused(await admin.post(tokens), 400)
    assert any("token" in m.lower() for m in messages), messages


# -- failures ------------------------------------------------------------------------------------


async def test_an_unexpected_failure_is_an_internal_server_error_without_details(
    admin: Admin,
) -> None:
    asset_id = await admin.create_asset("USD", 2)
    # A fault of the environment, not of the request: the table the resolver reads is gone.
    async with admin.pool.acquire() as conn:
        await conn.execute("ALTER TABLE fees RENAME TO fees_elsewhere")
    response = await admin.post(
        "query($id: String!) { asset(id: $id) { code sendingFee { id } } }", {"id": asset_id}
    )
    assert response.status_code == 200, response.text  # the rest of the answer stands
    body = response.json()
    assert body["data"] == {"asset": {"code": "USD", "sendingFee": None}}
    [error] = body["errors"]
    assert error.pop("locations")
    assert error == {
        "message": "internal server error",
        "path": ["asset", "sendingFee"],
        "extensions": {"code": "INTERNAL_SERVER_ERROR"},
    }
    for detail in ("fees_elsewhere", "Traceback", "asyncpg", "relation", "UndefinedTable"):
        assert detail not in response.text
    metrics = (await admin.client.get(f"{admin.url}/metrics")).text
    assert 'kiungo_graphql_requests_total{outcome="INTERNAL_SERVER_ERROR"} 1.0' in metrics


async def test_text_no_store_can_hold_is_bad_input(admin: Admin) -> None:
    by_code = "query($code: String!) { assetByCodeAndScale(code: $code, scale: 2) { id } }"
    create = "mutation($input: CreateAssetInput!) { createAsset(input: $input) { asset { id } } }"
    cases: list[tuple[str, dict[str, Any] | None]] = [
        (by_code, {"code": "US\x00D"}),  # Postgres keeps no NUL in text
        ('{ assetByCodeAndScale(code: "US\\u0000D", scale: 2) { id } }', None),
        (create, {"input": {"code": "EUR", "scale": 2, "idempotencyKey": "\ud800"}}),
    ]
    for query, variables in cases:
        body: dict[str, Any] = {"query": query, "variables": variables}
        response = await post_signed(admin, body)  # ASCII JSON: "\ud800" as an escape
        assert response.status_code == 200, response.text
        [error] = response.json()["errors"]
        assert error["extensions"]["code"] == "BAD_USER_INPUT", (query, error)
    assert await admin.data(by_code, {"code": "EUR"}) == {"assetByCodeAndScale": None}


# -- the other routes ----------------------------------------------------------------------------


async def test_graphiql_is_served_outside_production(admin: Admin) -> None:
    assert admin.backend.settings.env is Environment.DEVELOPMENT
    response = await admin.client.get(f"{admin.url}/graphql", headers={"accept": "text/html"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "graphiql" in response.text.lower()


async def test_graphiql_is_not_served_in_production(
    migrated_database: str, redis_server_url: str, redis_prefix: str, redis: Redis
) -> None:
    settings = backend_settings(redis_prefix, env=Environment.PRODUCTION)
    async with running_backend(
        migrated_database, redis_server_url, settings, workers=False
    ) as admin:
        response = await admin.client.get(f"{admin.url}/graphql", headers={"accept": "text/html"})
        assert response.status_code == 404
        assert not response.headers["content-type"].startswith("text/html")
        assert "<script" not in response.text
        # The API itself is there.
        assert await admin.data("{ __typename }") == {"__typename": "Query"}


async def test_other_methods_are_405(admin: Admin) -> None:
    for method in ("PUT", "DELETE", "PATCH"):
        response = await admin.client.request(method, f"{admin.url}/graphql")
        assert response.status_code == 405, method


async def test_healthz(admin: Admin) -> None:
    response = await admin.client.get(f"{admin.url}/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_metrics_are_prometheus_text(admin: Admin) -> None:
    await admin.data("{ __typename }")
    refused(await post_raw(admin, b"{"), 400)
    response = await admin.client.get(f"{admin.url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert "# TYPE kiungo_graphql_requests_total counter" in text
    assert 'kiungo_graphql_requests_total{outcome="ok"} 1.0' in text
    assert 'kiungo_graphql_requests_total{outcome="BAD_USER_INPUT"} 1.0' in text
    assert "# TYPE kiungo_graphql_request_seconds histogram" in text
    assert "kiungo_graphql_request_seconds_count 2.0" in text


# -- anything at all -----------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
graphql_ish = st.text(
    alphabet=st.sampled_from(list("{}()[]:$!@.=,\"'\\#& \n\tqueryassetsedgesnodeidfirst0123456789"))
    | st.characters(),
    max_size=200,
)
# Real operations with variables of the right types (and sometimes not), to reach the resolvers.
# Strings may hold NUL and lone surrogates: valid JSON and GraphQL, but no store holds them.
any_char = st.characters() | st.sampled_from(["\x00", "\ud800", "\udfff"])
u64ish = st.integers(min_value=-1, max_value=2**64).map(str) | st.text(any_char, max_size=25)
codes = st.from_regex(r"[A-Z]{3}", fullmatch=True) | st.text(any_char, max_size=40)
scales = st.integers(min_value=-1, max_value=256)
ids = st.uuids().map(str) | st.text(any_char, max_size=40)
keys = st.none() | st.text(any_char, max_size=300)
asset_input = st.fixed_dictionaries(
    {"code": codes, "scale": scales},
    optional={
        "withdrawalThreshold": st.none() | u64ish,
        "liquidityThreshold": st.none() | u64ish,
        "liquidityThresholdHigh": st.none() | u64ish,
        "idempotencyKey": keys,
    },
)
update_input = st.fixed_dictionaries(
    {"id": ids},
    optional={
        "withdrawalThreshold": st.none() | u64ish,
        "liquidityThreshold": st.none() | u64ish,
        "idempotencyKey": keys,
    },
)
deposit_input = st.fixed_dictionaries(
    {"assetId": ids, "amount": u64ish, "id": ids, "idempotencyKey": st.text(any_char, max_size=300)}
)
page = st.fixed_dictionaries(
    {},
    optional={
        "first": st.integers(min_value=-5, max_value=200),
        "last": st.integers(min_value=-5, max_value=200),
        "after": st.text(any_char, max_size=40),
        "before": st.text(any_char, max_size=40),
    },
)
operations = (
    st.tuples(st.just("query($id: String!) { asset(id: $id) { id code sendingFee { id } } }"),
              st.fixed_dictionaries({"id": ids}))
    | st.tuples(st.just("query($code: String!, $scale: UInt8!) { assetByCodeAndScale(code: $code,"
                        " scale: $scale) { id } }"),
                st.fixed_dictionaries({"code": codes, "scale": scales}))
    | st.tuples(st.just("query($first: Int, $last: Int, $after: String, $before: String) {"
                        " assets(first: $first, last: $last, after: $after, before: $before) {"
                        " edges { cursor node { id } } pageInfo { hasNextPage } } }"), page)
    | st.tuples(st.just("mutation($input: CreateAssetInput!) { createAsset(input: $input) {"
                        " asset { id } } }"), st.fixed_dictionaries({"input": asset_input}))
    | st.tuples(st.just("mutation($input: UpdateAssetInput!) { updateAsset(input: $input) {"
                        " asset { id } } }"), st.fixed_dictionaries({"input": update_input}))
    | st.tuples(st.just("mutation($input: DepositAssetLiquidityInput!) {"
                        " depositAssetLiquidity(input: $input) { success } }"),
                st.fixed_dictionaries({"input": deposit_input}))
)  # fmt: skip
bodies = (
    json_values
    | st.fixed_dictionaries({"query": graphql_ish})
    | st.fixed_dictionaries(
        {"query": graphql_ish | st.sampled_from([ASSETS, "{ __typename }"])},
        optional={"variables": json_values, "operationName": json_values},
    )
    | operations.map(lambda op: {"query": op[0], "variables": op[1]})
)


def assert_no_server_error(response: httpx.Response, sent: object) -> None:
    assert response.status_code < 500, (sent, response.text)
    error_codes = {e["extensions"]["code"] for e in response.json().get("errors") or ()}
    assert "INTERNAL_SERVER_ERROR" not in error_codes, (sent, response.text)


async def test_no_body_is_answered_with_a_500(open_admin: Admin) -> None:
    url = f"{open_admin.url}/graphql"

    @settings(
        max_examples=300,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(body=bodies, ascii_only=st.booleans())
    @example(  # a lone surrogate in a variable a query reads the database with: it was a 500
        body={
            "query": "query($code: String!, $scale: UInt8!) "
            "{ assetByCodeAndScale(code: $code, scale: $scale) { id } }",
            "variables": {"code": "\ud800", "scale": 0},
        },
        ascii_only=True,
    )
    def check(client: httpx.Client, body: Any, ascii_only: bool) -> None:
        # Not ASCII, a lone surrogate becomes bytes that are not UTF-8 (so not JSON).
        content = json.dumps(body, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
        response = client.post(url, content=content, headers={"content-type": "application/json"})
        assert_no_server_error(response, body)

    def run() -> None:
        with httpx.Client(timeout=30) as client:
            check(client)

    # In a thread: the backend under test answers on this test's event loop meanwhile.
    await asyncio.to_thread(run)


async def test_no_bytes_are_answered_with_a_500(open_admin: Admin) -> None:
    url = f"{open_admin.url}/graphql"

    @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(content=st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
    def check(client: httpx.Client, content: bytes) -> None:
        response = client.post(url, content=content, headers={"content-type": "application/json"})
        assert_no_server_error(response, content)

    def run() -> None:
        with httpx.Client(timeout=30) as client:
            check(client)

    await asyncio.to_thread(run)
