"""Fuzzing how this node reads receivers (issue 14): a hostile receiver on a real loopback socket
answers the SPSP query (:func:`kiungo.spsp.query`) and the incoming payment read
(:func:`kiungo.openpayments.remote.fetch_incoming_payment`) with replies drawn by hypothesis: any
status, content type and body (valid answers, JSON of any shape, random bytes, bodies around and
far past the size cap), framed correctly or not (declared length too long or too short, close
delimited, chunked, broken chunks, an endless body, a body trickled slower than the time bound,
a head that never ends, silence, bytes that are no HTTP at all).

For every reply: the reader returns a well-formed answer or raises its own error
(:class:`~kiungo.spsp.SpspQueryError`, :class:`~kiungo.openpayments.remote.ReceiverUnreadable`),
never anything else, and always within its time bound (plus scheduling slack), never hanging.

Each example runs on an event loop of its own (``asyncio.run`` in a synchronous test): the
server and the reader share it, and nothing is left between examples. The time bound is a
fifth of a second, so the slow shapes (trickle, silence, a never-ending head) cost at most
that each and the whole file runs in a few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.hostile_http import Reply, head, hostile_server, silent, trickled_head

from kiungo.openpayments.remote import (
    IncomingPaymentView,
    ReceiverUnreadable,
    fetch_incoming_payment,
)
from kiungo.runtime.receiver_fetch import receiver_client
from kiungo.spsp import SpspQueryError, SpspResponse, query
from kiungo.spsp.client import MAX_SPSP_BYTES

BOUND = 0.2
"""Each read's ``max_seconds``."""
SLACK = 4.8
"""What a loaded two-core machine may add to it (a read the bound did not end would never end:
the trickled and silent answers go on for ever)."""
EXAMPLES = int(os.environ.get("KIUNGO_FUZZ_EXAMPLES", "50"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None)
PAYMENT_PATH = "/alice/incoming-payments/4f1c2a56-0d8e-4b7a-9c3f-2e5d6a7b8c9d"

_SPSP_BODY = json.dumps(SpspResponse("test.receiver.x", bytes(32), True).to_json()).encode()
_VIEW_BODY = json.dumps(
    IncomingPaymentView(
        "https://r.example" + PAYMENT_PATH, "https://r.example/a", "USD", 2, 500, 20, False, None
    ).to_json()
).encode()

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=10,
)
bodies = st.one_of(
    st.just(_SPSP_BODY),
    st.just(_VIEW_BODY),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=300),
    st.sampled_from([MAX_SPSP_BYTES - 10, MAX_SPSP_BYTES + 1, 10 * MAX_SPSP_BYTES]).map(
        lambda n: _SPSP_BODY[:-1] + b" " * n + b"}"
    ),
)
content_types = st.sampled_from(
    [
        "application/spsp4+json",
        "application/json",
        "application/json; charset=utf-8",
        "text/html",
        "application/octet-stream",
        None,
        "\x01garbage",
    ]
)
statuses = st.sampled_from([200, 200, 200, 200, 201, 204, 302, 404, 418, 500, 999])
framings = st.sampled_from(
    [
        "exact",
        "exact",
        "declared-longer",
        "declared-shorter",
        "close-delimited",
        "chunked",
        "chunked-broken",
        "endless",
        "trickled",
        "head-forever",
        "silent",
        "garbage",
    ]
)


@dataclass(frozen=True)
class Plan:
    status: int
    content_type: str | None
    body: bytes
    framing: str


plans = st.builds(Plan, statuses, content_types, bodies, framings)


def _reply(plan: Plan) -> Reply:
    if plan.framing == "silent":
        return silent()
    if plan.framing == "head-forever":
        return trickled_head(0.02)
    body = plan.body

    async def reply(writer: asyncio.StreamWriter) -> None:
        framing = plan.framing
        if framing == "garbage":
            writer.write(body or b"\x00")
        elif framing == "exact":
            writer.write(head(plan.status, plan.content_type, len(body)) + body)
        elif framing == "declared-longer":
            writer.write(head(plan.status, plan.content_type, len(body) + 50) + body)
        elif framing == "declared-shorter":
            writer.write(head(plan.status, plan.content_type, len(body) // 2) + body)
        elif framing == "close-delimited":
            writer.write(head(plan.status, plan.content_type, extra="Connection: close") + body)
        elif framing in ("chunked", "chunked-broken", "endless"):
            extra = "Transfer-Encoding: chunked"
            writer.write(head(plan.status, plan.content_type, extra=extra))
            size = f"{len(body):x}" if framing != "chunked-broken" else "zz"
            writer.write(f"{size}\r\n".encode() + body + b"\r\n")
            if framing == "endless":
                while True:
                    writer.write(b"400\r\n" + b" " * 1024 + b"\r\n")
                    await writer.drain()
            writer.write(b"0\r\n\r\n")
        elif framing == "trickled":
            writer.write(head(plan.status, plan.content_type, len(body) + 1) + body)
            while True:  # the last byte never comes in time
                await writer.drain()
                await asyncio.sleep(0.05)
                writer.write(b" ")
        await writer.drain()

    return reply


Read = Callable[[str, httpx.AsyncClient], Awaitable[object]]


def _run(plan: Plan, read: Read, path: str) -> None:
    async def one() -> None:
        async with (
            hostile_server(_reply(plan)) as server,
            receiver_client(refuse_private=False) as client,
        ):
            started = time.monotonic()
            with contextlib.suppress(SpspQueryError, ReceiverUnreadable):
                await read(f"{server.url}{path}", client)
            elapsed = time.monotonic() - started
            assert elapsed < BOUND + SLACK, (plan, elapsed)

    asyncio.run(one())


async def _spsp(url: str, client: httpx.AsyncClient) -> object:
    return await query(url, client=client, max_seconds=BOUND)


async def _incoming_payment(url: str, client: httpx.AsyncClient) -> object:
    view = await fetch_incoming_payment(client, url, max_seconds=BOUND)
    assert view is None or view.received_amount == 20
    return view


@FUZZ
@given(plan=plans)
def test_the_spsp_client_answers_or_fails_cleanly_within_its_bound(plan: Plan) -> None:
    _run(plan, _spsp, "/alice")


@FUZZ
@given(plan=plans)
def test_the_incoming_payment_reader_answers_or_fails_cleanly_within_its_bound(plan: Plan) -> None:
    _run(plan, _incoming_payment, PAYMENT_PATH)
