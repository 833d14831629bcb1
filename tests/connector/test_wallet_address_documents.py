"""Wallet address documents and their JWKS over HTTP on a running connector, and the real
Open Payments client (JavaScript, validating every response against the OpenAPI files) reading
them."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from tests.connector.harness import WALLET_BASE, Connector, running_connector
from tests.interop.node import node_script

from kiungo.openpayments.wallet_address_keys import create_key, parse_jwk, revoke_key
from kiungo.spsp import SPSP_CONTENT_TYPE, SpspResponse

AUTH_SERVER = "http://127.0.0.1:3006"  # AUTH_SERVER_GRANT_URL's default


@pytest.fixture
async def connector(
    database_url: str, redis_server_url: str, redis_prefix: str, redis: Redis
) -> AsyncIterator[Connector]:
    async with running_connector(database_url, redis_server_url, redis_prefix) as connector:
        yield connector


def new_x() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()


def jwk_json(kid: str, x: str) -> dict[str, str]:
    return {"kid": kid, "x": x, "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig"}


async def get(connector: Connector, path: str, accept: str | None = "application/json") -> object:
    headers = {} if accept is None else {"Accept": accept}
    return await connector.client.get(f"{connector.url}{path}", headers=headers)


async def test_the_wallet_address_document_is_served_as_json(connector: Connector) -> None:
    carol = connector.seeded.wallets["carol"]
    expected = {
        "id": f"{WALLET_BASE}/carol",
        "assetCode": "USD",
        "assetScale": 2,
        "authServer": AUTH_SERVER,
        "resourceServer": WALLET_BASE,
    }
    for accept in ("application/json", None, "*/*", "application/*", "text/html, */*;q=0.1"):
        response = await connector.client.get(
            f"{connector.url}/carol", headers={} if accept is None else {"Accept": accept}
        )
        assert response.status_code == 200, (accept, response.text)
        assert response.headers["content-type"] == "application/json"
        assert response.headers["access-control-allow-origin"] == "*"
        assert response.json() == expected, accept
    properties = [
        {"key": "nickname", "value": "caz", "visibleInOpenPayments": True},
        {"key": "iban", "value": "NL00", "visibleInOpenPayments": False},
    ]
    async with connector.pool.acquire() as conn:
        await conn.execute(
            "UPDATE wallet_addresses SET public_name = 'Carol', additional_properties = $2::jsonb"
            " WHERE id = $1",
            carol,
            json.dumps(properties),
        )
    named = await connector.client.get(
        f"{connector.url}/carol/", headers={"Accept": "application/json"}
    )
    assert named.json() == {
        **expected,
        "publicName": "Carol",
        "additionalProperties": {"nickname": "caz"},  # the visible ones only
    }


async def test_spsp_is_still_served_by_accept_and_other_types_are_refused(
    connector: Connector,
) -> None:
    for accept in (SPSP_CONTENT_TYPE, "application/json, application/spsp4+json"):
        response = await connector.client.get(f"{connector.url}/carol", headers={"Accept": accept})
        assert response.status_code == 200
        assert response.headers["content-type"] == SPSP_CONTENT_TYPE
        SpspResponse.from_json(response.json())
    for accept in ("text/html", "application/json;q=0"):
        refused = await connector.client.get(f"{connector.url}/carol", headers={"Accept": accept})
        assert refused.status_code == 406, accept


async def test_unknown_and_inactive_wallet_addresses_are_404(connector: Connector) -> None:
    carol = connector.seeded.wallets["carol"]
    await create_key(connector.pool, carol, parse_jwk(kid="k", x=new_x()))
    for path in ("/nobody", "/nobody/jwks.json", "/jwks.json", "/carol%00/jwks.json"):
        response = await connector.client.get(
            f"{connector.url}{path}", headers={"Accept": "application/json"}
        )
        assert response.status_code == 404, path
    async with connector.pool.acquire() as conn:
        await conn.execute("UPDATE wallet_addresses SET status = 'INACTIVE' WHERE id = $1", carol)
    for path in ("/carol", "/carol/jwks.json"):
        response = await connector.client.get(
            f"{connector.url}{path}", headers={"Accept": "application/json"}
        )
        assert response.status_code == 404, path


async def test_jwks_lists_the_active_keys_of_that_wallet_address_only(
    connector: Connector,
) -> None:
    carol, dave = connector.seeded.wallets["carol"], connector.seeded.wallets["dave"]
    empty = await connector.client.get(f"{connector.url}/carol/jwks.json")
    assert empty.status_code == 200
    assert empty.json() == {"keys": []}
    first, second, daves = new_x(), new_x(), new_x()
    old = await create_key(connector.pool, carol, parse_jwk(kid="old", x=first))
    await create_key(connector.pool, carol, parse_jwk(kid="new", x=second))
    await create_key(connector.pool, dave, parse_jwk(kid="dave", x=daves))
    await revoke_key(connector.pool, old["id"])

    response = await connector.client.get(f"{connector.url}/carol/jwks.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-cache"
    assert response.json() == {"keys": [jwk_json("new", second)]}
    assert (await connector.client.get(f"{connector.url}/dave/jwks.json")).json() == {
        "keys": [jwk_json("dave", daves)]
    }


@pytest.mark.interop
async def test_the_open_payments_client_reads_the_document_and_keys(
    connector: Connector,
) -> None:
    carol = connector.seeded.wallets["carol"]
    x = new_x()
    await create_key(connector.pool, carol, parse_jwk(kid="key-1", x=x))
    properties = [{"key": "nickname", "value": "caz", "visibleInOpenPayments": True}]
    async with connector.pool.acquire() as conn:
        await conn.execute(
            "UPDATE wallet_addresses SET public_name = 'Carol', additional_properties = $2::jsonb"
            " WHERE id = $1",
            carol,
            json.dumps(properties),
        )
    url = f"{connector.url}/carol"
    async with node_script("open_payments_wallet.js") as js:
        document = await js.command({"op": "get", "url": url})
        keys = await js.command({"op": "getKeys", "url": url})
        missing = await js.command({"op": "get", "url": f"{connector.url}/nobody"})
    assert document["ok"] is True, document
    assert document["body"] == {
        "id": f"{WALLET_BASE}/carol",
        "publicName": "Carol",
        "additionalProperties": {"nickname": "caz"},
        "assetCode": "USD",
        "assetScale": 2,
        "authServer": AUTH_SERVER,
        "resourceServer": WALLET_BASE,
    }
    assert keys["ok"] is True, keys
    assert keys["body"] == {"keys": [jwk_json("key-1", x)]}
    assert missing["ok"] is False and missing["status"] == 404, missing
