"""Full Kiungo nodes as real processes on loopback, each with its own database and Redis key
prefix: a `kiungo connector` and a `kiungo backend` per node, set up only through the admin API,
as an integrator would."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import secrets
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from tests.loopback import serve
from tests.process_output import CapturedOutput
from tests.stores import create_database

from kiungo.migrations.run import upgrade
from kiungo.signatures import signature_header

KIUNGO = str(Path(sys.executable).parent / "kiungo")

# 1 USD = 0.9 EUR, and back.
RATES = {
    "USD": {"USD": Decimal(1), "EUR": Decimal("0.9")},
    "EUR": {"EUR": Decimal(1), "USD": 1 / Decimal("0.9")},
}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def rates_service(
    table: dict[str, dict[str, Decimal]] | None = None,
) -> AsyncIterator[str]:
    """The operator's rates endpoint, serving ``table`` (RATES by default; a test may change
    its ``table`` while it runs)."""
    served = RATES if table is None else table

    async def rates(request: Request) -> Response:
        base = request.query_params.get("base", "")
        if base not in served:
            return JSONResponse({"error": "unknown base"}, 404)
        return JSONResponse({"base": base, "rates": {k: str(v) for k, v in served[base].items()}})

    async with serve(Starlette(routes=[Route("/", rates)])) as url:
        yield f"{url}/"


class GraphQLError(AssertionError):
    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(errors)
        self.errors = errors

    @property
    def code(self) -> str:
        code: str = self.errors[0]["extensions"]["code"]
        return code


@dataclass
class FullNode:
    name: str
    ilp_address: str
    connector_url: str
    admin_url: str
    database_url: str
    secret: str
    client: httpx.AsyncClient
    processes: dict[str, asyncio.subprocess.Process] = field(default_factory=dict)
    stderr: dict[str, CapturedOutput] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    auth_url: str = ""

    async def gql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        # A request id in the body keeps two identical requests signed in one millisecond
        # apart: the replay guard refuses a digest seen before.
        body: dict[str, Any] = {
            "query": query,
            "variables": variables or {},
            "extensions": {"requestId": secrets.token_hex(8)},
        }
        response = await self.client.post(
            f"{self.admin_url}/graphql",
            content=json.dumps(body),
            headers={
                "Content-Type": "application/json",
                "signature": f"{signature_header(self.secret, body)}, n={secrets.token_hex(8)}",
            },
        )
        answer = response.json()
        if answer.get("errors"):
            raise GraphQLError(answer["errors"])
        data: dict[str, Any] = answer["data"]
        return data

    async def create_asset(self, code: str, scale: int = 2, liquidity: int = 0) -> str:
        data = await self.gql(
            "mutation($i: CreateAssetInput!) { createAsset(input: $i) { asset { id } } }",
            {"i": {"code": code, "scale": scale}},
        )
        asset_id: str = data["createAsset"]["asset"]["id"]
        if liquidity:
            await self.gql(
                "mutation($i: DepositAssetLiquidityInput!) { depositAssetLiquidity(input: $i)"
                " { success } }",
                {"i": {"assetId": asset_id, "amount": str(liquidity), "id": str(uuid.uuid4()),
                       "idempotencyKey": str(uuid.uuid4())}},
            )  # fmt: skip
        return asset_id

    async def create_peer(
        self,
        asset_id: str,
        other: FullNode,
        *,
        incoming_token: str,
        outgoing_token: str,
        liquidity: int = 1_000_000,
        max_packet_amount: int | None = None,
        routes: list[str] | None = None,
    ) -> str:
        given: dict[str, Any] = {
            "assetId": asset_id,
            "staticIlpAddress": other.ilp_address,
            "name": f"node {other.name}",
            "initialLiquidity": str(liquidity),
            "http": {
                "incoming": {"authTokens": [incoming_token]},
                "outgoing": {"authToken": outgoing_token, "endpoint": f"{other.connector_url}/ilp"},
            },
        }
        if max_packet_amount is not None:
            given["maxPacketAmount"] = str(max_packet_amount)
        if routes:
            given["routes"] = routes
        data = await self.gql(
            "mutation($i: CreatePeerInput!) { createPeer(input: $i) { peer { id } } }",
            {"i": given},
        )
        peer_id: str = data["createPeer"]["peer"]["id"]
        return peer_id

    async def create_wallet(self, asset_id: str, path: str) -> tuple[str, str]:
        data = await self.gql(
            "mutation($i: CreateWalletAddressInput!) { createWalletAddress(input: $i)"
            " { walletAddress { id address } } }",
            {"i": {"assetId": asset_id, "address": f"{self.connector_url}{path}"}},
        )
        wallet = data["createWalletAddress"]["walletAddress"]
        return wallet["id"], wallet["address"]

    async def create_incoming_payment(self, wallet_id: str, amount: int | None, code: str) -> str:
        given: dict[str, Any] = {"walletAddressId": wallet_id}
        if amount is not None:
            given["incomingAmount"] = {"value": str(amount), "assetCode": code, "assetScale": 2}
        data = await self.gql(
            "mutation($i: CreateIncomingPaymentInput!) { createIncomingPayment(input: $i)"
            " { payment { id } } }",
            {"i": given},
        )
        payment_id: str = data["createIncomingPayment"]["payment"]["id"]
        return payment_id

    async def ledger_check(self) -> tuple[int, str]:
        process = await asyncio.create_subprocess_exec(
            KIUNGO, "ledger", "check",
            env={**self.env}, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await process.communicate()
        return process.returncode or 0, out.decode()


async def _wait_healthy(
    client: httpx.AsyncClient, url: str, process: Any, stderr: CapturedOutput, health: str
) -> None:
    deadline = asyncio.get_running_loop().time() + 60  # a loaded machine starts it slowly
    while asyncio.get_running_loop().time() < deadline:
        if process.returncode is not None:
            raise AssertionError(f"{url} exited: {(await stderr.finish())[-2000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if (await client.get(f"{url}/{health}")).status_code == 200:
                return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{url} did not start")


@contextlib.asynccontextmanager
async def full_node(
    name: str,
    postgres_server_url: str,
    redis_url: str,
    client: httpx.AsyncClient,
    *,
    rates_url: str | None = None,
    extra_env: dict[str, str] | None = None,
    auth: bool = False,
) -> AsyncIterator[FullNode]:
    """A node named ``name`` (ILP address ``test.<name>``): its own migrated database, key
    prefix and ports, its connector and backend running as processes (and with ``auth`` its
    authorization server, ``kiungo auth``)."""
    database = await create_database(postgres_server_url)
    await upgrade(database)
    connector_port, admin_port, auth_port = free_port(), free_port(), free_port()
    connector_url = f"http://127.0.0.1:{connector_port}"
    secret = secrets.token_hex(16)
    env = {
        **os.environ,
        "DATABASE_URL": database,
        "REDIS_URL": redis_url,
        "REDIS_KEY_PREFIX": f"kiungo-test-{uuid.uuid4().hex}:",
        "ILP_ADDRESS": f"test.{name}",
        "STREAM_SECRET": base64.b64encode(os.urandom(32)).decode(),
        "CONNECTOR_PORT": str(connector_port),
        "ADMIN_PORT": str(admin_port),
        "ADMIN_API_SECRET": secret,
        "OPEN_PAYMENTS_URL": connector_url,
        "ILP_CONNECTOR_URL": connector_url,
        "AUTH_PORT": str(auth_port),
        "AUTH_SERVER_GRANT_URL": f"http://127.0.0.1:{auth_port}",
        "WORKER_INTERVAL_MS": "50",
        "LOG_LEVEL": "warning",
        **({"EXCHANGE_RATES_URL": rates_url} if rates_url else {}),
        **(extra_env or {}),
    }
    node = FullNode(
        name, f"test.{name}", connector_url, f"http://127.0.0.1:{admin_port}", database, secret,
        client, env=env, auth_url=f"http://127.0.0.1:{auth_port}",
    )  # fmt: skip
    try:
        for service in ("connector", "backend", *(("auth",) if auth else ())):
            await start_service(node, service)
        yield node
    finally:
        for process in node.processes.values():
            if process.returncode is None:
                process.terminate()
        for service, process in node.processes.items():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(10):
                    await process.wait()
            killed = process.returncode is None
            if killed:
                process.kill()
                await process.wait()
            await node.stderr[service].finish()
            if killed:
                node.stderr[service].show(
                    f"{name}'s {service} (killed: no exit 10 s after SIGTERM)"
                )
        from tests.stores import drop_database

        await drop_database(database)


# -- payments between full nodes (tests/network/test_payments.py, test_payment_faults.py) --------


def _service_url(node: FullNode, service: str) -> str:
    if service == "connector":
        return node.connector_url
    if service == "backend":
        return node.admin_url
    if service == "auth":
        return node.auth_url
    raise ValueError(f"no service {service!r}")


async def stop_service(node: FullNode, service: str, *, kill: bool = False) -> None:
    """Stop one process of ``node``: SIGTERM (a clean stop), or SIGKILL with ``kill``."""
    process = node.processes[service]
    if process.returncode is None:
        if kill:
            process.kill()
        else:
            process.terminate()
    async with asyncio.timeout(15):
        await process.wait()


async def start_service(node: FullNode, service: str) -> None:
    """(Re)start one process of ``node`` with the node's environment; returns once healthy."""
    old = node.processes.get(service)
    if old is not None and old.returncode is None:
        raise AssertionError(f"{node.name}'s {service} is still running")
    process = await asyncio.create_subprocess_exec(
        KIUNGO, service, env=node.env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    node.processes[service] = process
    node.stderr[service] = CapturedOutput(process.stderr)
    health = "readyz" if service == "auth" else "healthz"
    await _wait_healthy(
        node.client, _service_url(node, service), process, node.stderr[service], health
    )


def money(value: int, code: str, scale: int = 2) -> dict[str, Any]:
    """An AmountInput."""
    return {"value": str(value), "assetCode": code, "assetScale": scale}


_QUOTE_FIELDS = (
    "id receiver debitAmount { value assetCode assetScale }"
    " receiveAmount { value assetCode assetScale } expiresAt estimatedExchangeRate"
)
OUTGOING_FIELDS = (
    "id state error stateAttempts liquidity receiver sentAmount { value assetCode }"
    " debitAmount { value assetCode } receiveAmount { value assetCode }"
)


async def create_quote(
    node: FullNode,
    wallet_id: str,
    receiver: str,
    *,
    debit: dict[str, Any] | None = None,
    receive: dict[str, Any] | None = None,
) -> dict[str, Any]:
    given: dict[str, Any] = {"walletAddressId": wallet_id, "receiver": receiver}
    if debit is not None:
        given["debitAmount"] = debit
    if receive is not None:
        given["receiveAmount"] = receive
    data = await node.gql(
        f"mutation($i: CreateQuoteInput!) {{ createQuote(input: $i) {{ quote {{ {_QUOTE_FIELDS} }}"
        " } }",
        {"i": given},
    )
    quote: dict[str, Any] = data["createQuote"]["quote"]
    return quote


async def create_outgoing_payment(node: FullNode, wallet_id: str, quote_id: str) -> str:
    data = await node.gql(
        "mutation($i: CreateOutgoingPaymentInput!) { createOutgoingPayment(input: $i)"
        " { payment { id state } } }",
        {"i": {"walletAddressId": wallet_id, "quoteId": quote_id}},
    )
    payment = data["createOutgoingPayment"]["payment"]
    assert payment["state"] == "FUNDING", payment
    payment_id: str = payment["id"]
    return payment_id


async def fund_outgoing_payment(node: FullNode, payment_id: str) -> None:
    data = await node.gql(
        "mutation($i: DepositOutgoingPaymentLiquidityInput!) {"
        " depositOutgoingPaymentLiquidity(input: $i) { success } }",
        {"i": {"outgoingPaymentId": payment_id, "idempotencyKey": str(uuid.uuid4())}},
    )
    assert data["depositOutgoingPaymentLiquidity"]["success"] is True


async def pay(node: FullNode, wallet_id: str, quote_id: str) -> str:
    """An outgoing payment of the quote, created and funded (SENDING); its id."""
    payment_id = await create_outgoing_payment(node, wallet_id, quote_id)
    await fund_outgoing_payment(node, payment_id)
    return payment_id


async def outgoing_payment(node: FullNode, payment_id: str) -> dict[str, Any]:
    data = await node.gql(
        f"query($id: String!) {{ outgoingPayment(id: $id) {{ {OUTGOING_FIELDS} }} }}",
        {"id": payment_id},
    )
    view: dict[str, Any] = data["outgoingPayment"]
    return view


async def wait_outgoing_payment(
    node: FullNode, payment_id: str, *, seconds: float = 30
) -> dict[str, Any]:
    """The outgoing payment once it has ended (COMPLETED, FAILED or CANCELLED)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        view = await outgoing_payment(node, payment_id)
        if view["state"] in ("COMPLETED", "FAILED", "CANCELLED"):
            return view
        if loop.time() > deadline:
            raise AssertionError(f"outgoing payment still {view['state']}: {view}")
        await asyncio.sleep(0.05)


async def incoming_payment(node: FullNode, payment_id: str) -> dict[str, Any]:
    data = await node.gql(
        "query($id: String!) { incomingPayment(id: $id) { id state liquidity"
        " receivedAmount { value assetCode } incomingAmount { value } } }",
        {"id": payment_id},
    )
    view: dict[str, Any] = data["incomingPayment"]
    return view


async def wait_incoming_payment(
    node: FullNode, payment_id: str, *, state: str = "COMPLETED", seconds: float = 30
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        view = await incoming_payment(node, payment_id)
        if view["state"] == state:
            return view
        if loop.time() > deadline:
            raise AssertionError(f"incoming payment not {state}: {view}")
        await asyncio.sleep(0.05)


async def liquidity(node: FullNode, kind: str, id_: str) -> int:
    """The ``liquidity`` of the ``kind`` (asset, peer, walletAddress, outgoingPayment,
    incomingPayment) with this id."""
    data = await node.gql(f"query($id: String!) {{ {kind}(id: $id) {{ liquidity }} }}", {"id": id_})
    return int(data[kind]["liquidity"] or 0)


async def packets_answered(node: FullNode) -> int:
    """Every ILP Prepare the node's connector has answered (fulfilled or rejected) since it
    started, from its /metrics."""
    response = await node.client.get(f"{node.connector_url}/metrics")
    response.raise_for_status()
    total = 0.0
    for line in response.text.splitlines():
        if line.startswith("kiungo_ilp_packets_total{"):
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


async def webhook_events(node: FullNode, resource_id: str) -> list[dict[str, Any]]:
    """The node's webhook events about one resource (``data.id``), oldest first."""
    data = await node.gql(
        "{ webhookEvents(first: 100, sortOrder: ASC) { edges { node { id type data } } } }"
    )
    return [
        edge["node"]
        for edge in data["webhookEvents"]["edges"]
        if edge["node"]["data"].get("id") == resource_id
    ]


async def peer_both_ways(
    a: FullNode,
    a_asset: str,
    b: FullNode,
    b_asset: str,
    *,
    max_packet_amount: int | None = None,
    a_routes: list[str] | None = None,
    b_routes: list[str] | None = None,
) -> tuple[str, str]:
    """Peer ``a`` and ``b`` with each other (1,000,000 of liquidity each way); the ids of
    ``a``'s peer ``b`` and ``b``'s peer ``a``."""
    a_token, b_token = f"{a.name}-to-{b.name}", f"{b.name}-to-{a.name}"
    a_peer = await a.create_peer(
        a_asset, b, incoming_token=b_token, outgoing_token=a_token,
        max_packet_amount=max_packet_amount, routes=a_routes,
    )  # fmt: skip
    b_peer = await b.create_peer(
        b_asset, a, incoming_token=a_token, outgoing_token=b_token,
        max_packet_amount=max_packet_amount, routes=b_routes,
    )  # fmt: skip
    return a_peer, b_peer
