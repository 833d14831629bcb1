"""Sending money between two full nodes (real `kiungo connector` and `kiungo backend` processes
on Postgres and Redis): prints one JSON line per figure.

    .venv/bin/python -m tests.benchmarks.payments [--seconds 30] [--clients 5]

(a) ``--clients`` closed-loop clients, each iterating Rafiki's k6 scenario: a receiver on node B
    (``createReceiver``), a quote on node A for it (``createQuote``: a STREAM rate probe through
    both connectors), an outgoing payment on A (``createOutgoingPayment``): iterations/s and
    the latency of each request;
(b) one-packet cross-currency payments, one at a time: from ``createOutgoingPayment`` (funded
    right after) to COMPLETED as seen by polling ``outgoingPayment``: p50/p95;
(c) the Open Payments flow (tests/benchmarks/payments_op.py): ``--clients`` closed-loop apps,
    each iteration an incoming payment on B, a quote on A, an interactive outgoing-payment
    grant consented through A's interaction API, the outgoing payment, funded by the operator
    and polled to COMPLETED: iterations/s, the iteration's latency and each step's;
(d) a 1,000-packet payment (the peer's maximum packet amount set to 1): packets/s.
Uses DATABASE_URL/REDIS_URL (scratch databases and key prefixes) or embedded engines. Not a
test: it never fails on speed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from tests.benchmarks.payments_op import IDP_SECRET, IDP_URL, STEPS, OpenPaymentsApp
from tests.network.harness import FullNode, full_node, rates_service

from kiungo.store.embedded import EmbeddedPostgres, EmbeddedRedis


def _ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000, 2)


async def _network(a: FullNode, b: FullNode) -> dict[str, str]:
    ids: dict[str, str] = {}
    ids["a_usd"] = await a.create_asset("USD")
    ids["b_usd"] = await b.create_asset("USD")
    ids["b_eur"] = await b.create_asset("EUR", liquidity=10**12)
    ids["a_peer"] = await a.create_peer(
        ids["a_usd"], b, incoming_token="b-to-a", outgoing_token="a-to-b", liquidity=10**12
    )
    ids["b_peer"] = await b.create_peer(
        ids["b_usd"], a, incoming_token="a-to-b", outgoing_token="b-to-a", liquidity=10**12
    )
    ids["alice"], _ = await a.create_wallet(ids["a_usd"], "/alice")
    ids["bob"], ids["bob_url"] = await b.create_wallet(ids["b_eur"], "/bob")
    ids["carol"], ids["carol_url"] = await b.create_wallet(ids["b_usd"], "/carol")
    return ids


async def _receiver(b: FullNode, url: str, amount: int, code: str) -> str:
    data = await b.gql(
        "mutation($i: CreateReceiverInput!) { createReceiver(input: $i) { receiver { id } } }",
        {"i": {"walletAddressUrl": url,
               "incomingAmount": {"value": str(amount), "assetCode": code, "assetScale": 2}}},
    )  # fmt: skip
    receiver: str = data["createReceiver"]["receiver"]["id"]
    return receiver


async def _quote(a: FullNode, ids: dict[str, str], receiver: str, amount: int, code: str) -> str:
    data = await a.gql(
        "mutation($i: CreateQuoteInput!) { createQuote(input: $i) { quote { id } } }",
        {"i": {"walletAddressId": ids["alice"], "receiver": receiver,
               "receiveAmount": {"value": str(amount), "assetCode": code, "assetScale": 2}}},
    )  # fmt: skip
    quote: str = data["createQuote"]["quote"]["id"]
    return quote


async def _outgoing(a: FullNode, ids: dict[str, str], quote: str) -> str:
    data = await a.gql(
        "mutation($i: CreateOutgoingPaymentInput!) { createOutgoingPayment(input: $i)"
        " { payment { id } } }",
        {"i": {"walletAddressId": ids["alice"], "quoteId": quote}},
    )
    payment: str = data["createOutgoingPayment"]["payment"]["id"]
    return payment


async def _fund_and_wait(a: FullNode, payment: str, poll: float = 0.002) -> dict[str, Any]:
    await a.gql(
        "mutation($i: DepositOutgoingPaymentLiquidityInput!) {"
        " depositOutgoingPaymentLiquidity(input: $i) { success } }",
        {"i": {"outgoingPaymentId": payment, "idempotencyKey": str(uuid.uuid4())}},
    )
    while True:
        data = await a.gql(
            "query($id: String!) { outgoingPayment(id: $id) { state error sentAmount { value } } }",
            {"id": payment},
        )
        view: dict[str, Any] = data["outgoingPayment"]
        if view["state"] not in ("FUNDING", "SENDING"):
            return view
        await asyncio.sleep(poll)


async def _fulfilled(client: httpx.AsyncClient, node: FullNode) -> int:
    """Packets the node's connector has fulfilled so far (its /metrics)."""
    text = (await client.get(f"{node.connector_url}/metrics")).text
    prefix = 'kiungo_ilp_packets_total{outcome="fulfilled",'  # one line per peer: their sum
    lines = text.splitlines()
    return sum(int(float(line.split()[-1])) for line in lines if line.startswith(prefix))


async def _open_payments(
    a: FullNode,
    b: FullNode,
    ids: dict[str, str],
    client: httpx.AsyncClient,
    seconds: float,
    clients: int,
) -> dict[str, Any]:
    app = OpenPaymentsApp(a, b, f"{a.connector_url}/alice", ids["bob_url"], client)
    await app.register(ids["alice"])
    iterations: list[float] = []
    deadline = time.perf_counter() + seconds

    async def iterate() -> None:
        async with httpx.AsyncClient(timeout=60) as browser:
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                await app.iteration(browser)
                iterations.append(time.perf_counter() - t0)

    started = time.perf_counter()
    await asyncio.gather(*(iterate() for _ in range(clients)))
    elapsed = time.perf_counter() - started
    steps: dict[str, float] = {}
    for step in STEPS:
        steps[f"{step}_p50_ms"] = _ms(app.timings[step], 0.5)
        steps[f"{step}_p95_ms"] = _ms(app.timings[step], 0.95)
    return {
        "benchmark": "payments",
        "figure": "open_payments_flow_to_completed",
        "clients": clients,
        "iterations": len(iterations),
        "iterations_per_second": round(len(iterations) / elapsed, 1),
        "iteration_p50_ms": _ms(iterations, 0.5),
        "iteration_p95_ms": _ms(iterations, 0.95),
        **steps,
    }


async def bench(postgres: str, redis: str, seconds: float, clients: int) -> None:
    async with (
        httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=50)) as client,
        rates_service() as rates,
        full_node(
            "alpha", postgres, redis, client, rates_url=rates, auth=True,
            extra_env={"IDENTITY_SERVER_URL": IDP_URL, "IDENTITY_SERVER_SECRET": IDP_SECRET},
        ) as a,
        full_node("beta", postgres, redis, client, rates_url=rates, auth=True) as b,
    ):  # fmt: skip
        ids = await _network(a, b)

        # (a) Rafiki's k6 scenario, closed loop.
        timings: dict[str, list[float]] = {"createReceiver": [], "createQuote": [], "create": []}
        iterations = 0
        deadline = time.perf_counter() + seconds

        async def iterate() -> None:
            nonlocal iterations
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                receiver = await _receiver(b, ids["bob_url"], 100, "EUR")
                t1 = time.perf_counter()
                quote = await _quote(a, ids, receiver, 100, "EUR")
                t2 = time.perf_counter()
                await _outgoing(a, ids, quote)
                t3 = time.perf_counter()
                timings["createReceiver"].append(t1 - t0)
                timings["createQuote"].append(t2 - t1)
                timings["create"].append(t3 - t2)
                iterations += 1

        started = time.perf_counter()
        await asyncio.gather(*(iterate() for _ in range(clients)))
        elapsed = time.perf_counter() - started
        every = timings["createReceiver"] + timings["createQuote"] + timings["create"]
        print(
            json.dumps(
                {
                    "benchmark": "payments",
                    "figure": "receiver_quote_outgoing_payment",
                    "clients": clients,
                    "iterations": iterations,
                    "iterations_per_second": round(iterations / elapsed, 1),
                    "request_p50_ms": _ms(every, 0.5),
                    "request_p95_ms": _ms(every, 0.95),
                    "quote_p50_ms": _ms(timings["createQuote"], 0.5),
                    "quote_p95_ms": _ms(timings["createQuote"], 0.95),
                }
            ),
            flush=True,
        )

        # (b) one-packet payments, one at a time.
        latencies: list[float] = []
        for _ in range(30):
            receiver = await _receiver(b, ids["bob_url"], 100, "EUR")
            quote = await _quote(a, ids, receiver, 100, "EUR")
            t0 = time.perf_counter()
            payment = await _outgoing(a, ids, quote)
            view = await _fund_and_wait(a, payment)
            latencies.append(time.perf_counter() - t0)
            if view["state"] != "COMPLETED":
                raise RuntimeError(f"payment ended {view}")
        print(
            json.dumps(
                {
                    "benchmark": "payments",
                    "figure": "one_packet_payment_to_completed",
                    "payments": len(latencies),
                    "p50_ms": _ms(latencies, 0.5),
                    "p95_ms": _ms(latencies, 0.95),
                }
            ),
            flush=True,
        )

        # (c) the Open Payments flow, closed loop.
        print(json.dumps(await _open_payments(a, b, ids, client, seconds, clients)), flush=True)

        # (d) 1,000 packets of 1 unit, same currency.
        await a.gql(
            "mutation($i: UpdatePeerInput!) { updatePeer(input: $i) { peer { id } } }",
            {"i": {"id": ids["a_peer"], "maxPacketAmount": "1"}},
        )
        await asyncio.sleep(0.5)  # the connector reloads its peers on the change message
        receiver = await _receiver(b, ids["carol_url"], 1000, "USD")
        quote = await _quote(a, ids, receiver, 1000, "USD")
        before = await _fulfilled(client, b)
        t0 = time.perf_counter()
        payment = await _outgoing(a, ids, quote)
        view = await _fund_and_wait(a, payment, poll=0.05)
        took = time.perf_counter() - t0
        packets = await _fulfilled(client, b) - before
        print(
            json.dumps(
                {
                    "benchmark": "payments",
                    "figure": "thousand_packet_payment",
                    "state": view["state"],
                    "sent": view["sentAmount"]["value"],
                    "packets_fulfilled_by_b": packets,
                    "seconds": round(took, 2),
                    "packets_per_second": round(packets / took, 1),
                }
            ),
            flush=True,
        )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--clients", type=int, default=5)
    args = parser.parse_args()
    postgres = os.environ.get("DATABASE_URL")
    redis = os.environ.get("REDIS_URL")
    with tempfile.TemporaryDirectory() as tmp:
        async with contextlib.AsyncExitStack() as stack:
            if not postgres:
                postgres = (await stack.enter_async_context(EmbeddedPostgres(Path(tmp)))).url
            if not redis:
                redis = (await stack.enter_async_context(EmbeddedRedis(Path(tmp)))).url
            await bench(postgres, redis, args.seconds, args.clients)


if __name__ == "__main__":
    asyncio.run(main())
