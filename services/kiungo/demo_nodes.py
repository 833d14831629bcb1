"""The two nodes of ``kiungo demo`` (:mod:`kiungo.demo`), each complete in this process: its
connector, backend (admin API and workers) and authorization server (GNAP, with its
development consent page), on loopback ports, with their own databases on one Postgres and
their own key prefixes on one Redis, a rates service (1 USD = 0.9 EUR) between them, and set up
through their admin APIs as an integrator would.

Open Payments works between them as between any two nodes: each node's wallet address
documents name its own authorization server (AUTH_SERVER_GRANT_URL) and resource server
(OPEN_PAYMENTS_URL), and each node is an Open Payments client of the other under its own
identity (WALLET_ADDRESS_URL under its connector, its key derived from its STREAM_SECRET and
published at ``<WALLET_ADDRESS_URL>/jwks.json``), so that A reads B's incoming payments there.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
from rich.console import Console
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kiungo.auth.command import node_auth_app
from kiungo.backend.service import serve_backend
from kiungo.config import Settings
from kiungo.connector.app import serve_node
from kiungo.connector.command import http_server as connector_http_server
from kiungo.migrations.run import upgrade
from kiungo.runtime.db import plain_url
from kiungo.runtime.runner import http_server as backend_http_server
from kiungo.runtime.runner import listening_url
from kiungo.runtime.runner import started as serving
from kiungo.signatures import signature_header
from kiungo.store.local import postgres_url, redis_url
from kiungo.store.tigerbeetle import tigerbeetle_settings

__all__ = [
    "MAX_PACKET",
    "QUOTE_FIELDS",
    "DemoError",
    "Node",
    "Nodes",
    "Payment",
    "balances",
    "two_nodes",
]

USD_TO_EUR = Decimal("0.9")
# Small packets, so that a payment of a few dollars takes a hundred or so STREAM packets.
MAX_PACKET = 10
QUOTE_FIELDS = (
    "id debitAmount { value assetCode assetScale } receiveAmount { value assetCode assetScale }"
    " estimatedExchangeRate"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rates_app() -> Starlette:
    table = {"USD": {"USD": Decimal(1), "EUR": USD_TO_EUR}}
    table["EUR"] = {"EUR": Decimal(1), "USD": 1 / USD_TO_EUR}

    async def rates(request: Request) -> Response:
        base = request.query_params.get("base", "")
        if base not in table:
            return JSONResponse({"error": f"unknown base {base}"}, 404)
        return JSONResponse({"base": base, "rates": {k: str(v) for k, v in table[base].items()}})

    return Starlette(routes=[Route("/", rates)])


@dataclass
class Node:
    name: str
    settings: Settings
    admin_url: str
    connector_url: str
    auth_url: str
    client: httpx.AsyncClient

    async def gql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        # A request id in the body keeps two identical requests signed in one millisecond
        # apart: the replay guard refuses a digest seen before.
        body: dict[str, Any] = {
            "query": query,
            "variables": variables or {},
            "extensions": {"requestId": secrets.token_hex(8)},
        }
        secret = self.settings.admin_api_secret
        assert secret is not None
        response = await self.client.post(
            self.admin_url,
            content=json.dumps(body),
            headers={
                "Content-Type": "application/json",
                "signature": f"{signature_header(secret, body)}, n={secrets.token_hex(8)}",
            },
        )
        answer = response.json()
        if answer.get("errors"):
            raise DemoError(f"node {self.name}: {answer['errors'][0]['message']}")
        data: dict[str, Any] = answer["data"]
        return data

    async def quote(self, quote_id: str) -> dict[str, Any]:
        """The quote ``quote_id`` as the admin API shows it (:data:`QUOTE_FIELDS`)."""
        view = await self.gql(
            f"query($id: String!) {{ quote(id: $id) {{ {QUOTE_FIELDS} }} }}", {"id": quote_id}
        )
        quote: dict[str, Any] = view["quote"]
        return quote

    async def fund(self, outgoing_payment: str) -> None:
        """The operator funds the outgoing payment (it goes SENDING)."""
        await self.gql(
            "mutation($i: DepositOutgoingPaymentLiquidityInput!) {"
            " depositOutgoingPaymentLiquidity(input: $i) { success } }",
            {"i": {"outgoingPaymentId": outgoing_payment, "idempotencyKey": str(uuid.uuid4())}},
        )


@dataclass
class Payment:
    """A payment from alice to bob, funded and sending: its ids in the admin APIs."""

    incoming_payment: str
    """On B."""
    quote: dict[str, Any]
    """A's quote (:data:`~kiungo.demo_nodes.QUOTE_FIELDS`)."""
    outgoing_payment: str
    """On A."""
    started: float
    """``time.perf_counter()`` when the payment began (the quote; over Open Payments, once
    the grant was consented)."""


class DemoError(Exception):
    """The demo cannot go on: its message says why (the JSON line's ``error``)."""


@contextlib.asynccontextmanager
async def _node(
    name: str, base: Settings, database: str, redis: str, rates: str, client: httpx.AsyncClient
) -> AsyncIterator[Node]:
    connector_port, admin_port, auth_port = _free_port(), _free_port(), _free_port()
    connector = f"http://127.0.0.1:{connector_port}"
    auth = f"http://127.0.0.1:{auth_port}"
    settings = replace(
        base,
        ilp_address=f"test.kiungo-{name.lower()}",
        stream_secret=os.urandom(32),
        admin_api_secret=secrets.token_hex(16),
        redis_key_prefix=f"kiungo-demo-{uuid.uuid4().hex[:8]}-{name.lower()}:",
        connector_port=connector_port,
        admin_port=admin_port,
        auth_port=auth_port,
        open_payments_url=connector,
        ilp_connector_url=connector,
        auth_server_grant_url=auth,
        # The node's own client identity (it reads the other node's incoming payments): its
        # wallet address here, its key derived from its STREAM_SECRET.
        wallet_address_url=f"{connector}/.well-known/pay",
        key_id=None,
        private_key_file=None,
        # Consent on the development page; everything is on loopback.
        identity_server_url=None,
        identity_server_secret=None,
        refuse_private_receivers=False,
        exchange_rates_url=rates,
        worker_interval_ms=100,
    )
    await upgrade(database)
    async with contextlib.AsyncExitStack() as stack:
        # USE_TIGERBEETLE without a cluster: each node a replica of its own, for the demo only.
        data_dir = await stack.enter_async_context(_scratch(settings))
        settings = await stack.enter_async_context(
            tigerbeetle_settings(replace(settings, data_dir=data_dir))
        )
        node = await stack.enter_async_context(serve_node(settings, database, redis))
        _, admin_app = await stack.enter_async_context(serve_backend(settings, database, redis))
        grants = node_auth_app(settings, node.pool, node.receiver_http, consent_page=True)
        for server, what in (
            (connector_http_server(node, "127.0.0.1", connector_port), "connector"),
            (backend_http_server(admin_app, "127.0.0.1", admin_port), "admin API"),
            (backend_http_server(grants, "127.0.0.1", auth_port), "auth server"),
        ):
            await stack.enter_async_context(serving(server, f"node {name}'s {what}"))
        yield Node(
            name, settings, f"http://127.0.0.1:{admin_port}/graphql", connector, auth, client
        )


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(plain_url(url))
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


async def _databases(server_url: str) -> tuple[str, str]:
    """Two fresh databases on the server of ``server_url`` for the two nodes."""
    names = [f"kiungo_demo_{uuid.uuid4().hex[:12]}_{n}" for n in ("a", "b")]
    conn = await asyncpg.connect(plain_url(server_url))
    try:
        for name in names:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return _with_database(server_url, names[0]), _with_database(server_url, names[1])


async def _drop(server_url: str, databases: tuple[str, str]) -> None:
    conn = await asyncpg.connect(plain_url(server_url))
    try:
        for url in databases:
            name = urlsplit(url).path.lstrip("/")
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def _set_up(a: Node, b: Node) -> dict[str, str]:
    """Assets, peering both ways in USD, liquidity, alice on A and bob on B (EUR)."""
    create_asset = "mutation($i: CreateAssetInput!) { createAsset(input: $i) { asset { id } } }"
    ids: dict[str, str] = {}
    ids["a_usd"] = (await a.gql(create_asset, {"i": {"code": "USD", "scale": 2}}))["createAsset"][
        "asset"
    ]["id"]
    for code in ("USD", "EUR"):
        data = await b.gql(create_asset, {"i": {"code": code, "scale": 2}})
        ids[f"b_{code.lower()}"] = data["createAsset"]["asset"]["id"]
    deposit = (
        "mutation($i: DepositAssetLiquidityInput!) { depositAssetLiquidity(input: $i) { success } }"
    )
    await b.gql(
        deposit,
        {"i": {"assetId": ids["b_eur"], "amount": "1000000", "id": str(uuid.uuid4()),
               "idempotencyKey": str(uuid.uuid4())}},
    )  # fmt: skip
    create_peer = "mutation($i: CreatePeerInput!) { createPeer(input: $i) { peer { id } } }"
    for here, there, asset, mine, theirs in (
        (a, b, ids["a_usd"], "b-to-a", "a-to-b"),
        (b, a, ids["b_usd"], "a-to-b", "b-to-a"),
    ):
        data = await here.gql(
            create_peer,
            {"i": {
                "assetId": asset,
                "staticIlpAddress": there.settings.ilp_address,
                "name": f"node {there.name}",
                "maxPacketAmount": str(MAX_PACKET),
                "initialLiquidity": "1000000",
                "http": {
                    "incoming": {"authTokens": [mine]},
                    "outgoing": {"authToken": theirs, "endpoint": f"{there.connector_url}/ilp"},
                },
            }},
        )  # fmt: skip
        ids[f"{here.name.lower()}_peer"] = data["createPeer"]["peer"]["id"]
    create_wallet = (
        "mutation($i: CreateWalletAddressInput!) { createWalletAddress(input: $i)"
        " { walletAddress { id address } } }"
    )
    alice = await a.gql(
        create_wallet,
        {"i": {"assetId": ids["a_usd"], "address": f"{a.connector_url}/alice",
               "publicName": "Alice"}},
    )  # fmt: skip
    bob = await b.gql(
        create_wallet,
        {"i": {"assetId": ids["b_eur"], "address": f"{b.connector_url}/bob",
               "publicName": "Bob"}},
    )  # fmt: skip
    ids["alice"] = alice["createWalletAddress"]["walletAddress"]["id"]
    ids["alice_url"] = alice["createWalletAddress"]["walletAddress"]["address"]
    ids["bob"] = bob["createWalletAddress"]["walletAddress"]["id"]
    ids["bob_url"] = bob["createWalletAddress"]["walletAddress"]["address"]
    return ids


async def balances(a: Node, b: Node, ids: dict[str, str]) -> dict[str, str]:
    liquidity = "query($id: String!) { peer(id: $id) { liquidity } }"
    asset = "query($id: String!) { asset(id: $id) { liquidity } }"
    return {
        "A: peer B (USD)": (await a.gql(liquidity, {"id": ids["a_peer"]}))["peer"]["liquidity"],
        "B: peer A (USD)": (await b.gql(liquidity, {"id": ids["b_peer"]}))["peer"]["liquidity"],
        "B: USD liquidity": (await b.gql(asset, {"id": ids["b_usd"]}))["asset"]["liquidity"],
        "B: EUR liquidity": (await b.gql(asset, {"id": ids["b_eur"]}))["asset"]["liquidity"],
    }


@dataclass
class Nodes:
    a: Node
    b: Node
    redis: str
    """The Redis both use (under their own key prefixes)."""
    ids: dict[str, str]
    """What :func:`_set_up` made: assets, peers, alice and bob."""


@contextlib.asynccontextmanager
async def two_nodes(settings: Settings, console: Console) -> AsyncIterator[Nodes]:
    """Both nodes running and set up (stopped, and their databases dropped, on exit)."""
    async with contextlib.AsyncExitStack() as stack:
        if settings.database_url is None or settings.redis_url is None:
            scratch = stack.enter_context(tempfile.TemporaryDirectory(prefix="kiungo-demo-"))
            settings = replace(settings, data_dir=Path(scratch))
        server = await stack.enter_async_context(postgres_url(settings))
        redis = await stack.enter_async_context(redis_url(settings))
        databases = await _databases(server)
        stack.push_async_callback(_drop, server, databases)
        rates_server = backend_http_server(_rates_app(), "127.0.0.1", 0)
        await stack.enter_async_context(serving(rates_server, "demo rates server"))
        rates = f"{listening_url(rates_server)}/"
        client = await stack.enter_async_context(httpx.AsyncClient(timeout=60))
        console.print("starting node A (USD) and node B (USD, EUR) …")
        nodes: list[Node] = []
        for name, database in zip("AB", databases, strict=True):
            running = _node(name, settings, database, redis, rates, client)
            nodes.append(await stack.enter_async_context(running))
        a, b = nodes
        for node in nodes:
            console.print(
                f"  node {node.name}  {node.settings.ilp_address}  connector {node.connector_url}"
                f"  auth server {node.auth_url}"
            )
        ids = await _set_up(a, b)
        console.print(f"alice: {ids['alice_url']} (USD)   bob: {ids['bob_url']} (EUR)")
        yield Nodes(a, b, redis, ids)


@contextlib.asynccontextmanager
async def _scratch(settings: Settings) -> AsyncIterator[Path]:
    if not settings.use_tigerbeetle or settings.tigerbeetle_replica_addresses:
        yield settings.data_dir
        return
    with tempfile.TemporaryDirectory(prefix="kiungo-demo-tigerbeetle-") as directory:
        yield Path(directory)
