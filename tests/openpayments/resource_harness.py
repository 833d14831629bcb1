"""A whole node for Open Payments tests, started once per module: the connector (the resource
server, at OPEN_PAYMENTS_URL), the backend (admin API and its webhook worker) and the GNAP
authorization server, in this process on loopback ports, over one fresh database and Redis
prefix. Wallet addresses and their keys are made through the admin API; :class:`Client` signs
requests (RFC 9421) as a wallet address's Open Payments client does."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import asyncpg
import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from tests.backend.harness import Admin, backend_settings, running_backend
from tests.connector.harness import free_port, node_settings, seed
from tests.loopback import serve
from tests.stores import create_database, delete_keys, drop_database, new_key_prefix

from kiungo.auth.app import auth_app
from kiungo.config import Settings
from kiungo.connector.command import connector_server
from kiungo.migrations.run import upgrade
from kiungo.openpayments.client_signatures import ClientKeys
from kiungo.openpayments.http_signatures import sign_request
from kiungo.openpayments.jwk import public_key_to_jwk
from kiungo.runtime.db import create_pool
from kiungo.runtime.receiver_fetch import receiver_client

__all__ = [
    "IDP_SECRET",
    "Client",
    "OpNode",
    "incoming_access",
    "op_node_fixture",
    "running_op_node",
]

# The identity provider the node's authorization server sends browsers to, and its secret.
IDP_URL = "https://idp.test/consent"
IDP_SECRET = "resource-harness-idp-secret"
FINISH_URI = "https://client.test/finished"

KEY_MUTATION = """
mutation($input: CreateWalletAddressKeyInput!) {
  createWalletAddressKey(input: $input) { walletAddressKey { id } }
}"""
WALLET_MUTATION = """
mutation($input: CreateWalletAddressInput!) {
  createWalletAddress(input: $input) { walletAddress { id } }
}"""


def incoming_access(actions: list[str], identifier: str | None = None) -> list[dict[str, Any]]:
    item: dict[str, Any] = {"type": "incoming-payment", "actions": actions}
    if identifier is not None:
        item["identifier"] = identifier
    return [item]


@dataclass
class Client:
    """A wallet address of the node acting as an Open Payments client with its own key."""

    node: OpNode
    url: str
    wallet_id: str
    key: Ed25519PrivateKey
    kid: str

    async def send(
        self,
        method: str,
        url: str,
        body: Any = None,
        *,
        token: str | None = None,
        key: Ed25519PrivateKey | None = None,
        kid: str | None = None,
        created: int | None = None,
        signed: bool = True,
        raw: bytes | None = None,
    ) -> httpx.Response:
        content = raw
        if content is None and body is not None:
            content = json.dumps(body, separators=(",", ":")).encode()
        headers = {} if token is None else {"Authorization": f"GNAP {token}"}
        if signed:
            headers |= sign_request(
                method=method,
                target_uri=url,
                headers=headers,
                body=content,
                private_key=key or self.key,
                key_id=kid or self.kid,
                created=int(time.time()) if created is None else created,
            )
        elif content is not None:
            headers["Content-Type"] = "application/json"
        return await self.node.http.request(method, url, content=content, headers=headers)

    async def grant(self, access: list[dict[str, Any]]) -> dict[str, Any]:
        """A non-interactive grant's access token (value, manage, …)."""
        response = await self.send(
            "POST", self.node.auth_url, {"client": self.url, "access_token": {"access": access}}
        )
        assert response.status_code == 200, response.text
        token: dict[str, Any] = response.json()["access_token"]
        return token

    async def interactive_grant(self, access: list[dict[str, Any]]) -> dict[str, Any]:
        """An interactive grant's access token: requested with a redirect interaction,
        consented to through the interaction API as the identity provider calls it, the
        browser's finish followed, then continued with the interaction reference."""
        node = self.node
        response = await self.send(
            "POST",
            node.auth_url,
            {
                "client": self.url,
                "access_token": {"access": access},
                "interact": {
                    "start": ["redirect"],
                    "finish": {"method": "redirect", "uri": FINISH_URI, "nonce": "n"},
                },
            },
        )
        assert response.status_code == 200, response.text
        granted = response.json()
        async with httpx.AsyncClient(timeout=10) as browser:
            started = await browser.get(granted["interact"]["redirect"])
            assert started.status_code == 302, started.text
            query = dict(parse_qsl(urlsplit(started.headers["location"]).query))
            where = f"{node.auth_url}/grant/{query['interactId']}/{query['nonce']}"
            chosen = await browser.post(f"{where}/accept", headers={"x-idp-secret": IDP_SECRET})
            assert chosen.status_code == 202, chosen.text
            finished = await browser.get(
                f"{node.auth_url}/interact/{query['interactId']}/{query['nonce']}/finish"
            )
            assert finished.status_code == 302, finished.text
        ref = dict(parse_qsl(urlsplit(finished.headers["location"]).query))["interact_ref"]
        cont = granted["continue"]
        continued = await self.send(
            "POST", cont["uri"], {"interact_ref": ref}, token=cont["access_token"]["value"]
        )
        assert continued.status_code == 200, continued.text
        token: dict[str, Any] = continued.json()["access_token"]
        return token

    async def create(self, token: str, body: dict[str, Any]) -> httpx.Response:
        return await self.send("POST", f"{self.node.url}/incoming-payments", body, token=token)


@dataclass
class OpNode:
    url: str  # OPEN_PAYMENTS_URL: the connector, wallet addresses and resource server
    auth_url: str
    pool: asyncpg.Pool
    admin: Admin
    http: httpx.AsyncClient
    usd: str
    hooks: list[dict[str, Any]] = field(default_factory=list)
    settings: Settings = field(default_factory=Settings)
    """The connector's (its client identity: kiungo.openpayments.identity.node_identity)."""

    async def wallet(self, name: str | None = None) -> tuple[str, str]:
        """A new USD wallet address: its admin id and URL."""
        url = f"{self.url}/{name or uuid.uuid4().hex[:12]}"
        data = await self.admin.data(
            WALLET_MUTATION, {"input": {"assetId": self.usd, "address": url}}
        )
        return data["createWalletAddress"]["walletAddress"]["id"], url

    async def client(self, name: str | None = None) -> Client:
        """A new wallet address with an Ed25519 key made through createWalletAddressKey."""
        wallet_id, url = await self.wallet(name)
        key = Ed25519PrivateKey.generate()
        kid = f"key-{uuid.uuid4().hex[:8]}"
        jwk = public_key_to_jwk(key.public_key(), kid)
        await self.admin.data(
            KEY_MUTATION,
            {
                "input": {
                    "walletAddressId": wallet_id,
                    "jwk": {k: jwk[k] for k in ("kid", "x", "alg", "kty", "crv")},
                }
            },
        )
        return Client(self, url, wallet_id, key, kid)

    async def events(self, resource_id: str, kind: str, seconds: float = 20.0) -> dict[str, Any]:
        """The webhook the node delivered for ``resource_id`` of type ``kind``."""
        deadline = asyncio.get_running_loop().time() + seconds
        while asyncio.get_running_loop().time() < deadline:
            for event in self.hooks:
                if event["type"] == kind and event["data"].get("id") == resource_id:
                    return event
            await asyncio.sleep(0.05)
        raise AssertionError(f"no {kind} for {resource_id}")

    async def rows(self) -> list[tuple[Any, ...]]:
        """Every incoming payment and webhook event, to check a refusal changed nothing; but
        ``wallet_address.not_found``, which a lookup of an unknown wallet address raises by
        design (bounded: kiungo.connector.wallet_not_found)."""
        payments = await self.pool.fetch(
            "SELECT id, state, client, metadata::text, updated_at FROM incoming_payments"
            " ORDER BY id"
        )
        events = await self.pool.fetch(
            "SELECT id FROM webhook_events WHERE type <> 'wallet_address.not_found' ORDER BY id"
        )
        return [tuple(r) for r in payments] + [tuple(r) for r in events]


@pytest.fixture(scope="module", name="op_node")
async def op_node_fixture(
    request: pytest.FixtureRequest, postgres_server_url: str, redis_server_url: str
) -> AsyncIterator[OpNode]:
    """The node; a test module may set ``OP_NODE_RECEIVER_FETCH_TIMEOUT_MS`` (the connector's
    RECEIVER_FETCH_TIMEOUT_MS, to bound what other nodes' servers may take)."""
    fetch_ms = getattr(request.module, "OP_NODE_RECEIVER_FETCH_TIMEOUT_MS", None)
    async with running_op_node(postgres_server_url, redis_server_url, fetch_ms=fetch_ms) as node:
        yield node


@contextlib.asynccontextmanager
async def running_op_node(
    postgres_server_url: str,
    redis_server_url: str,
    *,
    hop_endpoint: str = "http://127.0.0.1:9/ilp",
    fetch_ms: int | None = None,
) -> AsyncIterator[OpNode]:
    """A whole node on a fresh database and Redis prefix; its peer bob (``test.bob``, routing
    ``test.bobland`` too) at ``hop_endpoint`` (by default nothing answers there); ``fetch_ms``
    its RECEIVER_FETCH_TIMEOUT_MS when given."""
    database_url = await create_database(postgres_server_url)
    prefix = new_key_prefix()
    try:
        await upgrade(database_url)
        pool = await create_pool(database_url)
        try:
            seeded = await seed(pool, hop_endpoint, 10**9)
            hooks: list[dict[str, Any]] = []

            async def hook(request: Request) -> Response:
                hooks.append(json.loads(await request.body()))
                return Response(status_code=200)

            holder: dict[str, Any] = {}

            async def auth(scope: Any, receive: Any, send: Any) -> None:
                await holder["app"](scope, receive, send)

            port = free_port()
            url = f"http://127.0.0.1:{port}"
            async with (
                serve(Starlette(routes=[Route("/hook", hook, methods=["POST"])])) as hook_url,
                serve(auth) as auth_url,
                receiver_client(refuse_private=False) as keys_http,
            ):
                holder["app"] = auth_app(
                    pool,
                    auth_url,
                    client_keys=ClientKeys(pool, keys_http),
                    identity_server_url=IDP_URL,
                    identity_server_secret=IDP_SECRET,
                )
                settings = replace(
                    node_settings(None, prefix),
                    open_payments_url=url,
                    auth_server_grant_url=auth_url,
                )
                if fetch_ms is not None:
                    settings = replace(settings, receiver_fetch_timeout_ms=fetch_ms)
                async with (
                    connector_server(settings, database_url, redis_server_url, "127.0.0.1", port),
                    running_backend(
                        database_url,
                        redis_server_url,
                        backend_settings(
                            prefix,
                            open_payments_url=url,
                            auth_server_grant_url=auth_url,
                            webhook_url=f"{hook_url}/hook",
                            ilp_connector_url=url,
                            stream_secret=settings.stream_secret,
                        ),
                    ) as admin,
                    httpx.AsyncClient(timeout=30) as http,
                ):
                    yield OpNode(url, auth_url, pool, admin, http, str(seeded.usd), hooks, settings)
        finally:
            await pool.close()
    finally:
        await drop_database(database_url)
        redis = Redis.from_url(redis_server_url)
        try:
            await delete_keys(redis, prefix)
        finally:
            await redis.aclose()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
