"""Admin API authentication: with ADMIN_API_SECRET set, only a fresh, unused signature over the
body gets a request to GraphQL; everything else is a 401 before anything runs."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from tests.backend.harness import SECRET, Admin, backend_settings, running_backend

from kiungo.backend.command import check_bind
from kiungo.cli.arguments import CommandError
from kiungo.config import Settings
from kiungo.signatures import sign, signature_header

CREATE = "mutation($input: CreateAssetInput!) { createAsset(input: $input) { asset { id code } } }"
ASSET_BY_CODE = "query($code: String!) { assetByCodeAndScale(code: $code, scale: 2) { id } }"
TTL_MS = 30_000


def now_ms() -> int:
    return int(time.time() * 1000)


def create_body(code: str) -> dict[str, Any]:
    return {"query": CREATE, "variables": {"input": {"code": code, "scale": 2}}}


async def post_body(
    admin: Admin, body: dict[str, Any], headers: dict[str, str] | None = None
) -> httpx.Response:
    """``body`` exactly as given, with exactly these headers (nothing signed for us)."""
    return await admin.client.post(f"{admin.url}/graphql", json=body, headers=headers or {})


def assert_unauthenticated(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    body = response.json()
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED", body
    assert body.get("data") is None


async def asset_exists(admin: Admin, code: str) -> bool:
    data = await admin.data(ASSET_BY_CODE, {"code": code})
    return data["assetByCodeAndScale"] is not None


def bad_headers(body: dict[str, Any]) -> dict[str, str | None]:
    """Signature headers that must all be refused for ``body``, by what is wrong with them."""
    t = now_ms()
    good = sign(SECRET, t, body)
    return {
        "missing": None,
        "empty": "",
        "other secret": signature_header("not-the-secret", body),
        "other body": signature_header(SECRET, {**body, "variables": {"input": {"code": "X"}}}),
        "digest of another time": f"t={t + 1}, v1={good}",
        "one digit changed": f"t={t}, v1={good[:-1]}{'0' if good[-1] != '0' else '1'}",
        "uppercase digest": f"t={t}, v1={good.upper()}",
        "short digest": f"t={t}, v1={good[:-2]}",
        "no timestamp": f"v1={good}",
        "no digest": f"t={t}",
        "v2 instead of v1": f"t={t}, v2={good}",
        "timestamp in seconds": f"t={t // 1000}, v1={sign(SECRET, t // 1000, body)}",
        "timestamp not a number": f"t=now, v1={good}",
        "negative timestamp": f"t=-{t}, v1={good}",
        "unknown field": f"t={t}, v1={good}, x=1",
        "repeated field": f"t={t}, v1={good}, v1={good}",
        "no equals signs": f"{t}, {good}",
        "garbage": "Bearer abc",
        "stale": signature_header(SECRET, body, timestamp_ms=t - TTL_MS - 1_000),
        "from the future": signature_header(SECRET, body, timestamp_ms=t + TTL_MS + 1_000),
        "long stale": signature_header(SECRET, body, timestamp_ms=0),
    }


async def test_a_request_without_a_good_signature_is_refused_before_anything_runs(
    admin: Admin,
) -> None:
    body = create_body("BAD")
    for case, header in bad_headers(body).items():
        response = await post_body(admin, body, None if header is None else {"signature": header})
        assert response.status_code == 401, (case, response.text)
        assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED", case
        assert response.json().get("data") is None, case
    assert not await asset_exists(admin, "BAD")
    # The same body, rightly signed, is then served: nothing above spent it.
    response = await post_body(admin, body, {"signature": signature_header(SECRET, body)})
    assert response.status_code == 200, response.text
    assert await asset_exists(admin, "BAD")


async def test_an_invalid_query_with_a_bad_signature_is_401_not_400(admin: Admin) -> None:
    # Authentication comes first: an unauthenticated client learns nothing about the schema.
    for body in ({"query": "{ nope"}, {"query": "{ nope }"}, {"no": "query"}):
        assert_unauthenticated(await post_body(admin, body))
        assert_unauthenticated(await post_body(admin, body, {"signature": "t=1, v1=00"}))


async def test_a_signature_within_the_ttl_either_way_is_accepted(admin: Admin) -> None:
    for code, skew_ms in (("OLD", -(TTL_MS - 5_000)), ("NEW", TTL_MS - 5_000)):
        body = create_body(code)
        header = signature_header(SECRET, body, timestamp_ms=now_ms() + skew_ms)
        response = await post_body(admin, body, {"signature": header})
        assert response.status_code == 200, response.text
        assert response.json()["data"]["createAsset"]["asset"]["code"] == code


async def test_a_replayed_request_is_refused(admin: Admin) -> None:
    body = create_body("RPL")
    header = signature_header(SECRET, body)
    first = await post_body(admin, body, {"signature": header})
    assert first.status_code == 200, first.text
    asset_id = first.json()["data"]["createAsset"]["asset"]["id"]
    # The very same request again, and with a nonce added (the nonce is not signed).
    assert_unauthenticated(await post_body(admin, body, {"signature": header}))
    replay_with_nonce = f"{header}, n={uuid.uuid4()}"
    assert_unauthenticated(await post_body(admin, body, {"signature": replay_with_nonce}))
    # Refused as a replay, not run a second time (that would have been a DUPLICATE error).
    data = await admin.data(ASSET_BY_CODE, {"code": "RPL"})
    assert data["assetByCodeAndScale"] == {"id": asset_id}


async def test_a_replayed_query_is_refused_too(admin: Admin) -> None:
    body = {"query": "{ assets { edges { node { id } } } }"}
    header = signature_header(SECRET, body)
    assert (await post_body(admin, body, {"signature": header})).status_code == 200
    assert_unauthenticated(await post_body(admin, body, {"signature": header}))


async def test_the_same_body_signed_at_another_time_is_not_a_replay(admin: Admin) -> None:
    body = {"query": "{ assets { edges { node { id } } } }"}
    t = now_ms()
    for timestamp in (t, t - 1):
        header = signature_header(SECRET, body, timestamp_ms=timestamp)
        assert (await post_body(admin, body, {"signature": header})).status_code == 200


DEPOSIT = (
    "mutation($input: DepositAssetLiquidityInput!) { depositAssetLiquidity(input: $input) {"
    " success } }"
)


async def test_twins_signed_in_the_same_millisecond_are_one_request_and_its_replay(
    admin: Admin,
) -> None:
    """As the README says: the replay guard keys on the signature (the nonce is not signed),
    and with one shared secret two clients that sign the same body in the same millisecond
    send the very bytes a replay would, so one of them is refused. A field of its own in what
    is signed (here each client's idempotencyKey) makes them two requests."""
    asset_id = await admin.create_asset("TWN")
    transfer = str(uuid.uuid4())

    def deposit(key: str) -> dict[str, Any]:
        variables = {"assetId": asset_id, "amount": "100", "id": transfer, "idempotencyKey": key}
        return {"query": DEPOSIT, "variables": {"input": variables}}

    async def twins(bodies: list[dict[str, Any]]) -> list[httpx.Response]:
        t = now_ms()
        async with httpx.AsyncClient() as one, httpx.AsyncClient() as two:
            return list(
                await asyncio.gather(
                    *(
                        client.post(
                            f"{admin.url}/graphql",
                            json=body,
                            headers={"signature": f"t={t}, v1={sign(SECRET, t, body)}, n={n}"},
                        )
                        for n, (client, body) in enumerate(zip((one, two), bodies, strict=True))
                    )
                )
            )

    same = deposit("shared-key")
    replies = await twins([same, same])
    refused = [r for r in replies if r.status_code == 401]
    assert len(refused) == 1, [r.text for r in replies]
    assert_unauthenticated(refused[0])
    assert "already used" in refused[0].json()["errors"][0]["message"]

    replies = await twins([deposit("client-one"), deposit("client-two")])
    assert [r.status_code for r in replies] == [200, 200], [r.text for r in replies]
    # A query made distinct by a variable it does not even declare.
    query = "{ assets { edges { node { id } } } }"
    replies = await twins([{"query": query, "variables": {"client": n}} for n in ("1", "2")])
    assert [r.status_code for r in replies] == [200, 200], [r.text for r in replies]
    assert not any(r.json().get("errors") for r in replies), [r.text for r in replies]
    # The deposit's id still makes it happen once.
    data = await admin.data(
        "query($id: String!) { asset(id: $id) { liquidity } }", {"id": asset_id}
    )
    assert data["asset"]["liquidity"] == "100"


async def test_a_nonce_and_the_operators_tenant_id_are_accepted(admin: Admin) -> None:
    operator = admin.backend.settings.operator_tenant_id
    body = create_body("NON")
    header = f"{signature_header(SECRET, body)}, n={uuid.uuid4()}"
    response = await post_body(admin, body, {"signature": header, "tenant-id": operator})
    assert response.status_code == 200, response.text
    assert response.json()["data"]["createAsset"]["asset"]["code"] == "NON"
    # The harness's client: its own signature, plus a nonce-less tenant-id header.
    response = await admin.post(ASSET_BY_CODE, {"code": "NON"}, headers={"tenant-id": operator})
    assert response.json()["data"]["assetByCodeAndScale"] is not None
    # Another tenant is one this single-tenant node does not have: Rafiki's 401, nothing done.
    body = create_body("OTH")
    header = f"{signature_header(SECRET, body)}, n={uuid.uuid4()}"
    response = await post_body(admin, body, {"signature": header, "tenant-id": str(uuid.uuid4())})
    assert_unauthenticated(response)
    assert await admin.pool.fetchval("SELECT count(*) FROM assets WHERE code = 'OTH'") == 0


async def test_spaces_after_the_commas_are_optional(admin: Admin) -> None:
    body = create_body("SPC")
    t = now_ms()
    header = f"t={t},v1={sign(SECRET, t, body)},n=abc"
    response = await post_body(admin, body, {"signature": header})
    assert response.status_code == 200, response.text


async def test_a_refusal_is_counted_in_the_metrics(admin: Admin) -> None:
    assert_unauthenticated(await post_body(admin, create_body("MET")))
    metrics = (await admin.client.get(f"{admin.url}/metrics")).text
    assert 'kiungo_graphql_requests_total{outcome="UNAUTHENTICATED"} 1.0' in metrics


@pytest.fixture
async def open_admin(
    migrated_database: str, redis_server_url: str, redis_prefix: str, redis: Redis
) -> AsyncIterator[Admin]:
    """A backend with no ADMIN_API_SECRET: requests are not authenticated."""
    settings = backend_settings(redis_prefix, admin_api_secret=None)
    async with running_backend(migrated_database, redis_server_url, settings) as running:
        yield running


async def test_without_a_secret_unsigned_requests_are_served(open_admin: Admin) -> None:
    assert open_admin.secret is None
    response = await post_body(open_admin, create_body("OPN"))
    assert response.status_code == 200, response.text
    assert response.json()["data"]["createAsset"]["asset"]["code"] == "OPN"
    # A signature header, even a wrong one, is not looked at.
    body = {"query": "{ assets { edges { node { code } } } }"}
    response = await post_body(open_admin, body, {"signature": "t=1, v1=nonsense"})
    assert response.status_code == 200, response.text
    assert [e["node"]["code"] for e in response.json()["data"]["assets"]["edges"]] == ["OPN"]


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "10.0.0.1", "example.com", ""])
def test_check_bind_refuses_a_public_host_without_a_secret(host: str) -> None:
    with pytest.raises(CommandError, match="ADMIN_API_SECRET"):
        check_bind(Settings(), host)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_check_bind_allows_loopback_without_a_secret(host: str) -> None:
    check_bind(Settings(), host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "127.0.0.1", "example.com"])
def test_check_bind_allows_any_host_with_a_secret(host: str) -> None:
    check_bind(Settings(admin_api_secret="s3cret"), host)
