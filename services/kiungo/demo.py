"""kiungo demo: two nodes on this machine, one payment between them, everything shown.

Starts two complete nodes on loopback (connector and backend each; their own databases on one
Postgres and their own key prefixes on one Redis: the machine's from DATABASE_URL/REDIS_URL, or
embedded ones in a temporary directory), a rates service (1 USD = 0.9 EUR), and sets them up
through their admin APIs exactly as an integrator would: node A holds USD, node B holds USD and
EUR; they are peered both ways in USD with liquidity; alice has a wallet address on A, bob one
on B in EUR. Then alice pays bob's incoming payment: a quote on A (a STREAM rate probe through
both connectors), an outgoing payment, funded, sent in many small STREAM packets (the peers'
maximum packet amount is kept small so that they show) while a progress bar follows it. It
prints what was sent and delivered, the rate, and both nodes' balances, and ends with one JSON
line. Exit 0 when the payment completed with the exact amount.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import socket
import sys
import tempfile
import time
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
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kiungo.backend.service import serve_backend
from kiungo.config import Settings
from kiungo.connector.app import serve_node
from kiungo.connector.command import http_server as connector_http_server
from kiungo.migrations.run import upgrade
from kiungo.models import OutgoingPaymentState
from kiungo.runtime.db import plain_url
from kiungo.runtime.log import configure_logging
from kiungo.runtime.runner import http_server as backend_http_server
from kiungo.runtime.runner import run_service
from kiungo.runtime.runner import started as serving
from kiungo.signatures import signature_header
from kiungo.store.local import postgres_url, redis_url
from kiungo.store.tigerbeetle import tigerbeetle_settings

__all__ = ["run"]

USD_TO_EUR = Decimal("0.9")
# Small packets, so that a payment of a few dollars takes a hundred or so STREAM packets.
MAX_PACKET = 10


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


class DemoError(Exception):
    pass


@contextlib.asynccontextmanager
async def _node(
    name: str, base: Settings, database: str, redis: str, rates: str, client: httpx.AsyncClient
) -> AsyncIterator[Node]:
    connector_port, admin_port = _free_port(), _free_port()
    connector = f"http://127.0.0.1:{connector_port}"
    settings = replace(
        base,
        ilp_address=f"test.kiungo-{name.lower()}",
        stream_secret=os.urandom(32),
        admin_api_secret=secrets.token_hex(16),
        redis_key_prefix=f"kiungo-demo-{uuid.uuid4().hex[:8]}-{name.lower()}:",
        connector_port=connector_port,
        admin_port=admin_port,
        open_payments_url=connector,
        ilp_connector_url=connector,
        exchange_rates_url=rates,
        worker_interval_ms=100,
    )
    await upgrade(database)
    async with (
        # USE_TIGERBEETLE without a cluster: each node a replica of its own, for the demo only.
        _scratch(settings) as data_dir,
        tigerbeetle_settings(replace(settings, data_dir=data_dir)) as settings,
        serve_node(settings, database, redis) as node,
        serve_backend(settings, database, redis) as (_, admin_app),
    ):
        connector_server = connector_http_server(node, "127.0.0.1", connector_port)
        backend_server = backend_http_server(admin_app, "127.0.0.1", admin_port)
        tasks = [
            asyncio.create_task(connector_server.serve()),
            asyncio.create_task(backend_server.serve()),
        ]
        while not (connector_server.started and backend_server.started):
            for task in tasks:
                if task.done():
                    task.result()
            await asyncio.sleep(0.01)
        try:
            yield Node(name, settings, f"http://127.0.0.1:{admin_port}/graphql", connector, client)
        finally:
            connector_server.should_exit = True
            backend_server.should_exit = True
            await asyncio.gather(*tasks, return_exceptions=True)


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
    ids["bob"] = bob["createWalletAddress"]["walletAddress"]["id"]
    ids["bob_url"] = bob["createWalletAddress"]["walletAddress"]["address"]
    return ids


async def _pay(
    a: Node, b: Node, ids: dict[str, str], amount: int, console: Console
) -> dict[str, Any]:
    incoming = await b.gql(
        "mutation($i: CreateIncomingPaymentInput!) { createIncomingPayment(input: $i)"
        " { payment { id } } }",
        {"i": {"walletAddressId": ids["bob"],
               "incomingAmount": {"value": str(amount), "assetCode": "EUR", "assetScale": 2},
               "metadata": {"description": "kiungo demo"}}},
    )  # fmt: skip
    payment_id = incoming["createIncomingPayment"]["payment"]["id"]
    receiver = f"{ids['bob_url']}/incoming-payments/{payment_id}"
    started = time.perf_counter()
    quote = (
        await a.gql(
            "mutation($i: CreateQuoteInput!) { createQuote(input: $i) { quote { id"
            " debitAmount { value assetCode assetScale } receiveAmount { value assetCode"
            " assetScale } estimatedExchangeRate } } }",
            {
                "i": {
                    "walletAddressId": ids["alice"],
                    "receiver": receiver,
                    # SPSP does not tell a remote node what an incoming payment asks for.
                    "receiveAmount": {"value": str(amount), "assetCode": "EUR", "assetScale": 2},
                }
            },
        )
    )["createQuote"]["quote"]
    outgoing = (
        await a.gql(
            "mutation($i: CreateOutgoingPaymentInput!) { createOutgoingPayment(input: $i)"
            " { payment { id } } }",
            {"i": {"walletAddressId": ids["alice"], "quoteId": quote["id"]}},
        )
    )["createOutgoingPayment"]["payment"]["id"]
    await a.gql(
        "mutation($i: DepositOutgoingPaymentLiquidityInput!) {"
        " depositOutgoingPaymentLiquidity(input: $i) { success } }",
        {"i": {"outgoingPaymentId": outgoing, "idempotencyKey": str(uuid.uuid4())}},
    )
    debit = int(quote["debitAmount"]["value"])
    state: str = OutgoingPaymentState.SENDING
    sent = 0
    with Progress(
        TextColumn("[bold]paying bob[/bold]"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} USD cents"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task("pay", total=debit)
        deadline = time.monotonic() + 120
        unfinished = (OutgoingPaymentState.FUNDING, OutgoingPaymentState.SENDING)
        while state in unfinished and time.monotonic() < deadline:
            view = (
                await a.gql(
                    "query($id: String!) { outgoingPayment(id: $id) { state error"
                    " sentAmount { value } } }",
                    {"id": outgoing},
                )
            )["outgoingPayment"]
            state, sent = view["state"], int(view["sentAmount"]["value"])
            progress.update(task, completed=sent)
            if view["error"] and state == OutgoingPaymentState.FAILED:
                raise DemoError(f"the payment failed: {view['error']}")
            await asyncio.sleep(0.05)
    seconds = time.perf_counter() - started
    received = (
        await b.gql(
            "query($id: String!) { incomingPayment(id: $id) { state receivedAmount { value } } }",
            {"id": payment_id},
        )
    )["incomingPayment"]
    return {
        "quote": quote,
        "outgoing_payment": outgoing,
        "incoming_payment": payment_id,
        "state": state,
        "sent": sent,
        "debit": debit,
        "delivered": int(received["receivedAmount"]["value"]),
        "incoming_state": received["state"],
        "seconds": seconds,
    }


async def _balances(a: Node, b: Node, ids: dict[str, str]) -> dict[str, str]:
    liquidity = "query($id: String!) { peer(id: $id) { liquidity } }"
    asset = "query($id: String!) { asset(id: $id) { liquidity } }"
    return {
        "A: peer B (USD)": (await a.gql(liquidity, {"id": ids["a_peer"]}))["peer"]["liquidity"],
        "B: peer A (USD)": (await b.gql(liquidity, {"id": ids["b_peer"]}))["peer"]["liquidity"],
        "B: USD liquidity": (await b.gql(asset, {"id": ids["b_usd"]}))["asset"]["liquidity"],
        "B: EUR liquidity": (await b.gql(asset, {"id": ids["b_eur"]}))["asset"]["liquidity"],
    }


@contextlib.asynccontextmanager
async def _scratch(settings: Settings) -> AsyncIterator[Path]:
    if not settings.use_tigerbeetle or settings.tigerbeetle_replica_addresses:
        yield settings.data_dir
        return
    with tempfile.TemporaryDirectory(prefix="kiungo-demo-tigerbeetle-") as directory:
        yield Path(directory)


async def run_demo(settings: Settings, amount: int, console: Console) -> dict[str, Any]:
    async with contextlib.AsyncExitStack() as stack:
        if settings.database_url is None or settings.redis_url is None:
            scratch = stack.enter_context(tempfile.TemporaryDirectory(prefix="kiungo-demo-"))
            settings = replace(settings, data_dir=Path(scratch))
        server = await stack.enter_async_context(postgres_url(settings))
        redis = await stack.enter_async_context(redis_url(settings))
        databases = await _databases(server)
        stack.push_async_callback(_drop, server, databases)
        rates_port = _free_port()
        rates_server = backend_http_server(_rates_app(), "127.0.0.1", rates_port)
        await stack.enter_async_context(serving(rates_server, "demo rates server"))
        rates = f"http://127.0.0.1:{rates_port}/"
        client = await stack.enter_async_context(httpx.AsyncClient(timeout=60))
        console.print("starting node A (USD) and node B (USD, EUR) …")
        a = await stack.enter_async_context(
            _node("A", settings, databases[0], redis, rates, client)
        )
        b = await stack.enter_async_context(
            _node("B", settings, databases[1], redis, rates, client)
        )
        console.print(f"  node A  {a.settings.ilp_address}  connector {a.connector_url}")
        console.print(f"  node B  {b.settings.ilp_address}  connector {b.connector_url}")
        ids = await _set_up(a, b)
        console.print(f"alice: {a.connector_url}/alice (USD)   bob: {ids['bob_url']} (EUR)")
        result = await _pay(a, b, ids, amount, console)
        balances = await _balances(a, b, ids)
    quote = result["quote"]
    console.print(
        f"sent      {result['sent'] / 100:.2f} USD of a quoted {result['debit'] / 100:.2f}\n"
        f"delivered {result['delivered'] / 100:.2f} EUR to bob (asked {amount / 100:.2f}),"
        f" incoming payment {result['incoming_state']}\n"
        f"rate      {quote['estimatedExchangeRate']} EUR per USD (quoted)\n"
        f"time      {result['seconds']:.2f} s"
    )
    for name, value in balances.items():
        console.print(f"  {name:<20} {value}")
    ok = result["state"] == OutgoingPaymentState.COMPLETED and result["delivered"] == amount
    return {
        "demo": "kiungo",
        "ok": ok,
        "state": result["state"],
        "sent": str(result["sent"]),
        "sent_asset": "USD",
        "delivered": str(result["delivered"]),
        "delivered_asset": "EUR",
        "asked": str(amount),
        "seconds": round(result["seconds"], 3),
        "balances": balances,
    }


def run(args: argparse.Namespace) -> int:
    """kiungo demo (its arguments: kiungo.commands)."""
    settings = Settings.from_env()
    configure_logging("WARNING")
    console = Console(stderr=True)
    outcome: dict[str, Any] = {}

    async def run() -> None:
        outcome.update(await run_demo(settings, args.amount, console))

    try:
        run_service(run())
    except DemoError as exc:
        print(json.dumps({"demo": "kiungo", "ok": False, "error": str(exc)}), flush=True)
        return 1
    print(json.dumps(outcome), flush=True)
    sys.stdout.flush()
    return 0 if outcome.get("ok") else 1
