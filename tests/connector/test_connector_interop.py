"""The real JavaScript senders and receivers through our connector over HTTP."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from tests.connector.harness import (
    Connector,
    create_incoming_payment,
    incoming_payment_state,
    running_connector,
)
from tests.interop.node import node_script, run_script
from tests.loopback import serve

from kiungo.config import Settings
from kiungo.ledger import AccountKind
from kiungo.stream.receipt import verify_receipt

pytestmark = pytest.mark.interop


@pytest.fixture
async def connector(
    database_url: str, redis_server_url: str, redis_prefix: str
) -> AsyncIterator[Connector]:
    async with running_connector(
        database_url, redis_server_url, redis_prefix, as_process=True
    ) as connector:
        yield connector


async def pay(connector: Connector, spsp_url: str, amount: int, *extra: str) -> dict[str, object]:
    status, result = await run_script(
        "pay.js",
        "--ilp-url", f"{connector.url}/ilp",
        "--token", "alice-token",
        "--spsp-url", spsp_url,
        "--amount", str(amount),
        "--asset-code", "USD",
        "--asset-scale", "2",
        *extra,
    )  # fmt: skip
    assert status == 0, result
    return result


async def test_pay_pays_a_wallet_address_with_receipts(connector: Connector) -> None:
    nonce, secret = os.urandom(16), os.urandom(32)
    result = await pay(
        connector,
        f"{connector.url}/carol",
        1000,
        "--receipt-nonce", base64.b64encode(nonce).decode(),
        "--receipt-secret", base64.b64encode(secret).decode(),
    )  # fmt: skip
    assert result["amountDelivered"] == "1000"
    await connector.settled()
    carol = connector.seeded.wallets["carol"]
    assert await connector.balance(AccountKind.WALLET_ADDRESS, carol) == 1000
    alice = connector.seeded.peers["alice"]
    assert await connector.balance(AccountKind.PEER_LIQUIDITY, alice) == 9_000
    receipt = verify_receipt(base64.b64decode(str(result["streamReceipt"])), secret)
    assert (receipt.nonce, receipt.total_received) == (nonce, 1000)


async def test_ilp_protocol_streams_client_pays_a_wallet_address(connector: Connector) -> None:
    status, result = await run_script(
        "stream_client.js",
        "--ilp-url", f"{connector.url}/ilp",
        "--token", "alice-token",
        "--spsp-url", f"{connector.url}/carol",
        "--amount", "1234",
    )  # fmt: skip
    assert status == 0, result
    assert result["totalDelivered"] == "1234"
    await connector.settled()
    carol = connector.seeded.wallets["carol"]
    assert await connector.balance(AccountKind.WALLET_ADDRESS, carol) == 1234


async def test_pay_completes_an_incoming_payment(connector: Connector) -> None:
    async with connector.pool.acquire() as conn:
        payment = await create_incoming_payment(
            conn, connector.seeded.wallets["carol"], connector.seeded.usd, 700
        )
    result = await pay(connector, f"{connector.url}/carol/incoming-payments/{payment}", 700)
    assert result["amountDelivered"] == "700"
    await connector.settled()
    assert await connector.balance(AccountKind.INCOMING_PAYMENT, payment) == 700
    assert await incoming_payment_state(connector.pool, payment) == "COMPLETED"
    again = await connector.client.get(
        f"{connector.url}/carol/incoming-payments/{payment}",
        headers={"Accept": "application/spsp4+json"},
    )
    assert again.status_code == 404


async def test_a_usd_payment_is_forwarded_as_eur_to_a_stream_receiver_behind_a_peer(
    database_url: str, redis_server_url: str, redis_prefix: str
) -> None:
    async def rates(request: Request) -> Response:
        assert request.query_params["base"] == "USD"
        return Response(json.dumps({"base": "USD", "rates": {"EUR": "0.9"}}))

    args = ("--address", "test.erin.shop", "--asset-code", "EUR", "--asset-scale", "2")
    async with (
        serve(Starlette(routes=[Route("/rates", rates)])) as rates_url,
        node_script("stream_receiver.js", *args) as receiver,
    ):
        ready = await receiver.read()
        receiver_url = f"http://127.0.0.1:{ready['port']}"
        settings = replace(Settings(), exchange_rates_url=f"{rates_url}/rates")
        async with running_connector(
            database_url,
            redis_server_url,
            redis_prefix,
            hop_endpoint=f"{receiver_url}/ilp",
            settings=settings,
            as_process=True,
        ) as connector:
            result = await pay(
                connector,
                f"{receiver_url}/spsp",
                1000,
                "--prices", json.dumps({"USD": 1, "EUR": 1 / 0.9}),
            )  # fmt: skip
            assert result["amountSent"] == "1000"
            assert result["amountDelivered"] == "900"
            assert (await receiver.command("total"))["totalReceived"] == "900"
            seeded = connector.seeded
            assert (
                await connector.balance(AccountKind.PEER_LIQUIDITY, seeded.peers["alice"]) == 9_000
            )
            assert await connector.balance(AccountKind.ASSET_LIQUIDITY, seeded.usd) == 1_000
            assert await connector.balance(AccountKind.PEER_LIQUIDITY, seeded.peers["erin"]) == 900
            assert await connector.balance(AccountKind.ASSET_LIQUIDITY, seeded.eur) == 10**9 - 900
