"""``POST /quotes`` on the resource server with another node's incoming payment as the receiver:
the node reads it over Open Payments under its own identity (a grant from the payment's
authorization server, the payment from its resource server) and probes it, as the admin API's
``createQuote`` does. Another node's servers that answer garbage, trickle, redirect, refuse,
want interaction or answer other shapes are a 400 ``invalid_receiver`` within the receiver read
bounds, never a 500 or a hang, and store nothing. (A remote quote that is made and paid:
tests/network/test_open_payments_two_nodes.py.)"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from tests.hostile_http import Reply, hostile_server, raw, trickled, trickled_head
from tests.openpayments.other_node import STEPS, OtherNode, other_node
from tests.openpayments.resource_harness import (  # noqa: F401 (fixture op_node)
    Client,
    OpNode,
    op_node_fixture,
)

from kiungo.openpayments.identity import node_identity

OP_NODE_RECEIVER_FETCH_TIMEOUT_MS = 500
QUOTE_ACCESS = [{"type": "quote", "actions": ["create", "read"]}]
# Open Payments (public read, grant, read; a 401 retried once with a new grant), then the SPSP
# fallback: each exchange bounded, all of it within the probe's 10 s.
BOUND_SECONDS = 6 * OP_NODE_RECEIVER_FETCH_TIMEOUT_MS / 1000 + 3

# (step, how it misbehaves): the grant's failures first, while no grant is kept.
OTHER_NODE_CASES = [
    ("grant", "garbage"),
    ("grant", "interact"),
    ("grant", "redirect"),
    ("grant", "slow"),
    ("public", "missing"),
    ("public", "garbage"),
    ("public", "huge"),
    ("public", "html"),
    ("public", "redirect"),
    ("read", "shape"),
    ("read", "unauthorized"),
    ("read", "missing"),
    ("read", "slow"),
]
HOSTILE_REPLIES: list[tuple[str, Callable[[], Reply]]] = [
    ("trickled body", lambda: trickled(b'{"receivedAmount": null}' * 20, 0.05)),
    ("trickled head", lambda: trickled_head(0.05)),
    ("not HTTP", lambda: raw(b"\x00\xff garbage\r\n\r\n")),
]


async def _quote(client: Client, token: str, receiver: str) -> tuple[int, dict[str, Any], float]:
    started = time.monotonic()
    response = await client.send(
        "POST",
        f"{client.node.url}/quotes",
        {"walletAddress": client.url, "receiver": receiver, "method": "ilp"},
        token=token,
    )
    return response.status_code, response.json(), time.monotonic() - started


@contextlib.asynccontextmanager
async def _other(op_node: OpNode) -> AsyncIterator[OtherNode]:
    async with other_node() as other:
        identity = node_identity(op_node.settings)
        other.jwk, other.client = identity.jwk(), identity.wallet_address
        yield other


async def test_a_hostile_remote_receiver_is_an_invalid_receiver_in_bounded_time(
    op_node: OpNode,
) -> None:
    alice = await op_node.client()
    token = (await alice.grant(QUOTE_ACCESS))["value"]
    quotes = await op_node.pool.fetchval("SELECT count(*) FROM quotes")
    async with _other(op_node) as other:
        for step, mode in OTHER_NODE_CASES:
            other.modes = dict.fromkeys(STEPS, "ok") | {step: mode}
            hits = other.hits[step]
            status, body, took = await _quote(alice, token, other.add_payment(100))
            assert status == 400, (step, mode, body)
            assert body["error"]["code"] == "invalid_receiver", (step, mode, body)
            assert took < BOUND_SECONDS, (step, mode, took)
            assert other.hits[step] > hits, (step, mode)  # it was that step that misbehaved

        # Answered well, but its ilp method's address is routed nowhere: the probe fails.
        other.modes = dict.fromkeys(STEPS, "ok")
        status, body, _ = await _quote(alice, token, other.add_payment(100))
        assert (status, body["error"]["code"]) == (400, "invalid_receiver"), body
        assert "probe" in body["error"]["description"], body

    for name, reply in HOSTILE_REPLIES:
        async with hostile_server(reply()) as hostile:
            receiver = f"{hostile.url}/incoming-payments/{uuid.uuid4()}"
            status, body, took = await _quote(alice, token, receiver)
            assert status == 400 and body["error"]["code"] == "invalid_receiver", (name, body)
            assert took < BOUND_SECONDS, (name, took)
            assert hostile.requests, name

    # Not an incoming payment URL: refused before anything is read.
    for receiver in ("https://elsewhere.test/alice", "$elsewhere.test/alice", "ftp://x.test/y"):
        status, body, _ = await _quote(alice, token, receiver)
        assert (status, body["error"]["code"]) == (400, "invalid_receiver"), (receiver, body)
    assert await op_node.pool.fetchval("SELECT count(*) FROM quotes") == quotes
