"""Fuzzing the auto-peering endpoint (issue 17): random bytes, random JSON, and peering
requests with random fields (right-typed or not, hostile text included) POSTed to
:func:`kiungo.backend.auto_peering.auto_peering_app` on a running backend.

For every request: no 5xx, and a refusal is Rafiki's JSON error (``error.code`` the status,
``error.type`` one of its auto-peering errors). A request that is accepted makes or updates
exactly one peer, with the asker's address: afterwards every peer's address is one of those
accepted, and none is there twice. As in test_fuzz_auth, each ``@given`` runs in a worker
thread with a synchronous client so the backend keeps serving on the test's loop.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.backend import conftest as backend_fixtures
from tests.backend.harness import Admin
from tests.loopback import serve

from kiungo.backend.auto_peering import AutoPeeringError, auto_peering_app

migrated_template = backend_fixtures.migrated_template
migrated_database = backend_fixtures.migrated_database
admin = backend_fixtures.admin

EXAMPLES = int(os.environ.get("KIUNGO_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None)
TIMEOUT = 5.0
KINDS = {kind.value for kind in AutoPeeringError}

ANY_TEXT = st.text(max_size=40)  # any code point: NUL, lone surrogates, controls
ASCII = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | ANY_TEXT


def json_values() -> st.SearchStrategy[Any]:
    return st.recursive(
        SCALARS,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(ASCII, inner, max_size=4),
        max_leaves=12,
    )


def peering_requests() -> st.SearchStrategy[dict[str, Any]]:
    """Requests near a valid one: each field valid, hostile or of another type."""
    addresses = st.sampled_from(["test.alpha", "test.beta", "g.x.y"]) | ANY_TEXT | json_values()
    urls = st.sampled_from(["http://a.example/ilp", "https://b.example"]) | ANY_TEXT
    assets = st.fixed_dictionaries(
        {
            "code": st.sampled_from(["USD", "EUR"]) | ANY_TEXT | json_values(),
            "scale": st.integers(-2, 300) | json_values(),
        }
    )
    return st.fixed_dictionaries(
        {
            "staticIlpAddress": addresses,
            "ilpConnectorUrl": urls | json_values(),
            "asset": assets | json_values(),
            "httpToken": ASCII | ANY_TEXT | json_values(),
        },
        optional={
            "maxPacketAmount": st.integers(-1, 2**65) | ASCII | json_values(),
            "name": ANY_TEXT | json_values(),
            "tenantId": json_values(),
        },
    )


@st.composite
def near_valid(draw: st.DrawFn) -> dict[str, Any]:
    """A valid request (addresses and tokens from small sets, so that some repeat: updates and
    token collisions) with at most one field replaced by anything."""
    request: dict[str, Any] = {
        "staticIlpAddress": draw(st.sampled_from(["test.alpha", "test.beta", "g.x.y"])),
        "ilpConnectorUrl": draw(st.sampled_from(["http://a.example/ilp", "https://b.example"])),
        "asset": {"code": "USD", "scale": 2},
        "httpToken": draw(st.sampled_from(["t1", "t2", "t3"]) | ASCII.filter(bool)),
        "maxPacketAmount": draw(st.none() | st.integers(0, 2**64 - 1)),
        "name": draw(st.none() | ASCII),
    }
    field = draw(st.none() | st.sampled_from(sorted(request)))
    if field is not None:
        request[field] = draw(json_values())
    return request


def _encode(value: Any) -> bytes:
    # Lone surrogates are kept as JSON escapes (as a hostile client would send them).
    return json.dumps(value).encode()


@pytest.fixture
async def endpoint(admin: Admin) -> AsyncIterator[str]:
    await admin.create_asset("USD", 2)
    async with serve(auto_peering_app(admin.backend)) as url:
        yield f"{url}/"


def run_in_thread(check: Callable[[httpx.Client], None]) -> Any:
    def run() -> None:
        with httpx.Client(timeout=TIMEOUT) as client:
            check(client)

    return asyncio.to_thread(run)


async def test_random_bodies_never_5xx_and_make_only_the_peers_accepted(
    admin: Admin, endpoint: str
) -> None:
    accepted: set[str] = set()

    @FUZZ
    @given(
        body=st.binary(max_size=300)
        | json_values().map(_encode)
        | peering_requests().map(_encode)
        | near_valid().map(_encode)
        | st.sampled_from([100, 5_000, 60_000]).map(lambda depth: b"[" * depth),
        content_type=st.sampled_from(["application/json", "text/plain", "", "x/y; q=1"]),
    )
    def check(client: httpx.Client, body: bytes, content_type: str) -> None:
        headers = {"Content-Type": content_type} if content_type else {}
        response = client.post(endpoint, content=body, headers=headers)
        assert response.status_code < 500, (body, response.text)
        answer = response.json()
        if response.status_code == 200:
            accepted.add(json.loads(body)["staticIlpAddress"])
            assert set(answer) >= {"staticIlpAddress", "ilpConnectorUrl", "httpToken"}
        else:
            error = answer["error"]
            assert error["code"] == response.status_code
            assert error["type"] in KINDS
            assert isinstance(error["message"], str)

    await run_in_thread(check)
    rows = await admin.pool.fetch("SELECT static_ilp_address FROM peers")
    addresses = [row["static_ilp_address"] for row in rows]
    assert set(addresses) == accepted
    assert accepted, "no request was accepted: the fuzz missed the path that writes"
    assert len(addresses) == len(set(addresses))
