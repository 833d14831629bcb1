"""Hostile receivers cannot pin the outgoing payment worker.

A replica sends at most MAX_CONCURRENT_PAYMENTS (20) payments at once. Twenty payments to
receivers that never let an attempt end (one trickles its SPSP answer, one answers every packet
F08 "received a, max a - 1", one answers every packet T04 for ever) used to hold all twenty
slots, and every other payment of the replica waited behind them. The bounds that end each
attempt, and what this test allows for them:

* an SPSP (or incoming payment) read: RECEIVER_FETCH_TIMEOUT_MS in total (2 s here);
* packet size reductions without progress: MAX_F08_REDUCTIONS (a few milliseconds here);
* anything else: OUTGOING_PAYMENT_ATTEMPT_TIMEOUT_MS (6 s here), plus the packets in flight.

With no retries, each hostile payment is FAILED within ``BOUND`` seconds, and an honest payment
queued behind all twenty completes within the same bound. The honest payment's SPSP read and
attempt have the same bounds as the hostile ones, and the F08 payments' reductions must end
before the attempt's bound to fail as F08: on a loaded machine, with twenty payments at once,
those take far longer than their few milliseconds, so the bounds leave them ample room (a
trickled answer still takes 14 s, and the busy receivers answer T04 for ever).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import uuid
from dataclasses import replace

import asyncpg
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from tests.connector.harness import next_hop, running_connector
from tests.connector.test_connector_send import (
    assert_books_balance,
    create_payment,
    sender_wallet,
    wait_for_state,
)
from tests.hostile_http import hostile_server, trickled
from tests.loopback import serve

from kiungo.config import Settings
from kiungo.ilp.errors import AmountTooLargeError
from kiungo.ilp.packet import Fulfill, Reject, decode_prepare, encode_packet
from kiungo.stream.receiver import IncomingMoney, StreamReceiver
from kiungo.stream.server import Asset, StreamServer

FETCH_SECONDS = 2
ATTEMPT_SECONDS = 6
BOUND = 20.0
"""Seconds within which every payment here ends: the bounds above, with room for a slow CI."""
HONEST = "test.bobland.honest"
SPSP = "application/spsp4+json"


def _credentials(destination: str, secret: bytes) -> Response:
    body = {"destination_account": destination, "shared_secret": base64.b64encode(secret).decode()}
    return JSONResponse(body, media_type=SPSP)


async def _claimed(pool: asyncpg.Pool, payments: list[uuid.UUID]) -> None:
    """Until the worker has taken every one of ``payments`` at least once."""
    for _ in range(200):
        taken = await pool.fetchval(
            "SELECT count(*) FROM outgoing_payments WHERE id = ANY($1::uuid[])"
            " AND (state <> 'SENDING' OR process_at > now())",
            payments,
        )
        if taken == len(payments):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the worker did not take the hostile payments")


async def test_hostile_receivers_fail_within_the_bound_while_an_honest_payment_completes(
    database_url: str, redis_server_url: str, redis_prefix: str
) -> None:
    honest = StreamServer(os.urandom(32), HONEST)
    receiver = StreamReceiver(honest)
    received: dict[str, int] = {}
    packets = {"f08": 0, "busy": 0}

    async def hop(request: Request) -> Response:
        prepare = decode_prepare(await request.body())
        reply: Fulfill | Reject
        if prepare.destination.startswith("test.bobland.f08."):
            packets["f08"] += 1
            reply = (
                AmountTooLargeError(prepare.amount, prepare.amount - 1).to_reject("test.bob")
                if prepare.amount
                else Reject("F99", "test.bob", "no money", b"")  # as the sender's closing packet
            )
        elif prepare.destination.startswith("test.bobland.busy."):
            packets["busy"] += 1
            reply = Reject("T04", "test.bob", "busy", b"")
        else:
            result = receiver.receive(prepare)
            if isinstance(result, IncomingMoney):
                total = received.get(result.connection_id, 0) + result.amount
                received[result.connection_id] = total
                result = result.accept(total)
            reply = result
        return Response(encode_packet(reply), media_type="application/octet-stream")

    async def spsp(request: Request) -> Response:
        kind, n = request.path_params["kind"], request.path_params["n"]
        if kind == "honest":
            credentials = honest.generate_credentials(asset=Asset("USD", 2))
            return _credentials(credentials.destination_account, credentials.shared_secret)
        return _credentials(f"test.bobland.{kind}.{n}", os.urandom(32))

    slow_answer = json.dumps({"destination_account": "test.bobland.x", "shared_secret": "AA=="})
    settings = replace(
        Settings(),
        max_outgoing_payment_retry_attempts=0,
        receiver_fetch_timeout_ms=FETCH_SECONDS * 1000,
        outgoing_payment_attempt_timeout_ms=ATTEMPT_SECONDS * 1000,
    )
    async with (
        next_hop(hop) as hop_url,
        serve(Starlette(routes=[Route("/{kind}/{n}", spsp)])) as spsp_url,
        hostile_server(trickled(slow_answer.encode(), 0.2)) as slow,
        running_connector(
            database_url, redis_server_url, redis_prefix, hop_endpoint=hop_url, settings=settings
        ) as connector,
    ):
        seeded, pool = connector.seeded, connector.pool
        sam = await sender_wallet(pool, seeded.usd)
        receivers = [
            *(f"{slow.url}/trickle/{n}" for n in range(7)),
            *(f"{spsp_url}/f08/{n}" for n in range(7)),
            *(f"{spsp_url}/busy/{n}" for n in range(6)),
        ]
        loop = asyncio.get_running_loop()
        started = loop.time()
        hostile = []
        for receiver_url in receivers:
            # Large enough that shrinking packets one unit at a time would never end.
            amount = 10**9
            hostile.append(
                await create_payment(
                    pool,
                    wallet=sam,
                    asset=seeded.usd,
                    receiver=receiver_url,
                    debit=amount,
                    receive=amount,
                    max_packet=amount,
                )
            )
        await _claimed(pool, hostile)
        queued = loop.time()
        payment = await create_payment(
            pool, wallet=sam, asset=seeded.usd, receiver=f"{spsp_url}/honest/0", debit=1_000,
            receive=1_000, max_packet=10**6,
        )  # fmt: skip

        row = await wait_for_state(pool, payment, "COMPLETED", "FAILED", seconds=BOUND)
        assert row["state"] == "COMPLETED", row["error"]
        assert (row["sent_amount"], row["delivered_amount"]) == (1_000, 1_000)
        assert loop.time() - queued < BOUND
        errors = []
        for hostile_payment in hostile:
            left = max(BOUND - (loop.time() - started), 0.1)
            failed = await wait_for_state(
                pool, hostile_payment, "FAILED", "COMPLETED", seconds=left
            )
            assert failed["state"] == "FAILED"
            assert (failed["sent_amount"], failed["delivered_amount"]) == (0, 0)
            errors.append(failed["error"])
        assert loop.time() - started < BOUND
        within = f"did not answer within {FETCH_SECONDS} s"
        assert all("SPSP query" in e and within in e for e in errors[:7]), errors[:7]
        assert all("F08" in e and "no progress" in e for e in errors[7:14]), errors[7:14]
        assert all("OUTGOING_PAYMENT_ATTEMPT_TIMEOUT_MS" in e for e in errors[14:]), errors[14:]
        # Each F08 payment gave up after a bounded number of packets (not one per unit).
        assert packets["f08"] <= 7 * 20
        await connector.settled()
        await assert_books_balance(pool)
