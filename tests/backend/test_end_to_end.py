"""The backend and the connector together, as an integrator uses them: an incoming payment made
through the admin API is paid by `@interledger/pay` through the connector (a real process), the
integrator hears `incoming_payment.completed` on its webhook, withdraws the money, and both
services' views agree."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from tests.backend.harness import backend_settings, running_backend
from tests.connector.harness import WALLET_BASE, Connector, running_connector
from tests.interop.node import run_script
from tests.loopback import serve

from kiungo.ledger import AccountKind
from kiungo.signatures import verify

pytestmark = pytest.mark.interop


@pytest.fixture
async def connector(
    database_url: str, redis_server_url: str, redis_prefix: str
) -> AsyncIterator[Connector]:
    async with running_connector(
        database_url, redis_server_url, redis_prefix, as_process=True
    ) as connector:
        yield connector


async def test_an_incoming_payment_made_in_the_api_is_paid_over_ilp(
    connector: Connector, database_url: str, redis_server_url: str, redis_prefix: str
) -> None:
    received: list[dict[str, Any]] = []

    async def hook(request: Request) -> Response:
        body = json.loads(await request.body())
        verify("whsec", request.headers.get("rafiki-signature"), body, ttl_seconds=60)
        received.append(body)
        return Response(status_code=200)

    app = Starlette(routes=[Route("/hook", hook, methods=["POST"])])
    async with (
        serve(app) as hook_url,
        running_backend(
            database_url,
            redis_server_url,
            backend_settings(
                redis_prefix,
                open_payments_url=WALLET_BASE,
                webhook_url=f"{hook_url}/hook",
                signature_secret="whsec",
            ),
        ) as admin,
    ):
        carol = str(connector.seeded.wallets["carol"])
        created = await admin.data(
            "mutation($input: CreateIncomingPaymentInput!) { createIncomingPayment("
            "input: $input) { payment { id } } }",
            {
                "input": {
                    "walletAddressId": carol,
                    "incomingAmount": {"value": "700", "assetCode": "USD", "assetScale": 2},
                }
            },
        )
        payment = created["createIncomingPayment"]["payment"]["id"]
        status, result = await run_script(
            "pay.js",
            "--ilp-url", f"{connector.url}/ilp",
            "--token", "alice-token",
            "--spsp-url", f"{connector.url}/carol/incoming-payments/{payment}",
            "--amount", "700",
            "--asset-code", "USD",
            "--asset-scale", "2",
        )  # fmt: skip
        assert status == 0, result
        assert result["amountDelivered"] == "700"

        completed = await _wait(received, "incoming_payment.completed")
        assert completed["data"]["id"] == payment
        assert completed["data"]["receivedAmount"]["value"] == "700"
        assert completed["data"]["withdrawal"]["amount"] == "700"
        assert [e["type"] for e in received] == [
            "incoming_payment.created",
            "incoming_payment.completed",
        ]
        view = await admin.data(
            "query($id: String!) { incomingPayment(id: $id) { state receivedAmount { value }"
            " liquidity } }",
            {"id": payment},
        )
        assert view["incomingPayment"] == {
            "state": "COMPLETED",
            "receivedAmount": {"value": "700"},
            "liquidity": "700",
        }
        await admin.data(
            "mutation($id: String!) { createIncomingPaymentWithdrawal(input: {"
            'incomingPaymentId: $id, idempotencyKey: "w", timeoutSeconds: "0"}) { success } }',
            {"id": payment},
        )
        await connector.settled()
        assert await connector.balance(AccountKind.INCOMING_PAYMENT, _uuid(payment)) == 0
        alice = connector.seeded.peers["alice"]
        peer = await admin.data(
            "query($id: String!) { accountingTransfers(id: $id, limit: 100) { debits { amount"
            " state } } }",
            {"id": str(alice)},
        )
        sent = sum(
            int(t["amount"])
            for t in peer["accountingTransfers"]["debits"]
            if t["state"] == "POSTED"
        )
        assert sent == 700


def _uuid(value: str) -> Any:
    import uuid

    return uuid.UUID(value)


async def _wait(received: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    for _ in range(200):
        for event in received:
            if event["type"] == kind:
                return event
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {kind} among {received}")
