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
    running_op_node,
)

from kiungo.openpayments.identity import node_identity

OP_NODE_RECEIVER_FETCH_TIMEOUT_MS = 10_000
"""The node's bound on each read of another node, where that node answers at once (well or
badly): ample for the honest steps before the bad one on a loaded machine."""
HASTY_FETCH_TIMEOUT_MS = 1_000
"""The bound of a second node, for the other node's slow answers: short, so that those cases
stay quick, yet the honest steps before a slow one (its public read, a grant) must fit in it."""
QUOTE_ACCESS = [{"type": "quote", "actions": ["create", "read"]}]
# Open Payments (public read, grant, read; a 401 retried once with a new grant), then the SPSP
# fallback: each exchange bounded, all of it within the probe's 10 s.
HASTY_BOUND_SECONDS = 6 * HASTY_FETCH_TIMEOUT_MS / 1000 + 3
# An answer that is bad at once is refused well before a read could have timed out.
PROMPT_BOUND_SECONDS = OP_NODE_RECEIVER_FETCH_TIMEOUT_MS / 1000

# (step, how it misbehaves): the grant's failures first, while no grant is kept.
OTHER_NODE_CASES = [
    ("grant", "garbage"),
    ("grant", "interact"),
    ("grant", "redirect"),
    ("public", "missing"),
    ("public", "garbage"),
    ("public", "huge"),
    ("public", "html"),
    ("public", "redirect"),
    ("read", "shape"),
    ("read", "unauthorized"),
    ("read", "missing"),
]
SLOW_CASES = [("grant", "slow"), ("read", "slow")]  # each answers after 30 s
SLOW_REPLIES: list[tuple[str, Callable[[], Reply]]] = [
    ("trickled body", lambda: trickled(b'{"receivedAmount": null}' * 20, 0.05)),  # 24 s
    ("trickled head", lambda: trickled_head(0.05)),  # never ends
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


async def _refused(
    other: OtherNode, alice: Client, token: str, cases: list[tuple[str, str]], bound: float
) -> None:
    """Each step of ``other`` misbehaving as its case says: a 400 invalid_receiver within
    ``bound`` seconds, having reached that step."""
    for step, mode in cases:
        other.modes = dict.fromkeys(STEPS, "ok") | {step: mode}
        hits = other.hits[step]
        status, body, took = await _quote(alice, token, other.add_payment(100))
        assert status == 400, (step, mode, body)
        assert body["error"]["code"] == "invalid_receiver", (step, mode, body)
        assert took < bound, (step, mode, took)
        assert other.hits[step] > hits, (step, mode)  # it was that step that misbehaved


async def _refused_by_server(
    alice: Client, token: str, reply: Reply, what: str, bound: float
) -> None:
    """A server answering ``reply`` to every request: a 400 invalid_receiver within ``bound``."""
    async with hostile_server(reply) as hostile:
        receiver = f"{hostile.url}/incoming-payments/{uuid.uuid4()}"
        status, body, took = await _quote(alice, token, receiver)
        assert status == 400 and body["error"]["code"] == "invalid_receiver", (what, body)
        assert took < bound, (what, took)
        assert hostile.requests, what


async def test_a_hostile_remote_receiver_is_an_invalid_receiver_at_once(op_node: OpNode) -> None:
    alice = await op_node.client()
    token = (await alice.grant(QUOTE_ACCESS))["value"]
    quotes = await op_node.pool.fetchval("SELECT count(*) FROM quotes")
    async with _other(op_node) as other:
        await _refused(other, alice, token, OTHER_NODE_CASES, PROMPT_BOUND_SECONDS)

        # Answered well, but its ilp method's address is routed nowhere: the probe fails.
        other.modes = dict.fromkeys(STEPS, "ok")
        status, body, _ = await _quote(alice, token, other.add_payment(100))
        assert (status, body["error"]["code"]) == (400, "invalid_receiver"), body
        assert "probe" in body["error"]["description"], body

    garbage = raw(b"\x00\xff garbage\r\n\r\n")
    await _refused_by_server(alice, token, garbage, "not HTTP", PROMPT_BOUND_SECONDS)

    # Not an incoming payment URL: refused before anything is read.
    for receiver in ("https://elsewhere.test/alice", "$elsewhere.test/alice", "ftp://x.test/y"):
        status, body, _ = await _quote(alice, token, receiver)
        assert (status, body["error"]["code"]) == (400, "invalid_receiver"), (receiver, body)
    assert await op_node.pool.fetchval("SELECT count(*) FROM quotes") == quotes


async def test_a_slow_remote_receiver_is_an_invalid_receiver_in_bounded_time(
    postgres_server_url: str, redis_server_url: str
) -> None:
    async with running_op_node(
        postgres_server_url, redis_server_url, fetch_ms=HASTY_FETCH_TIMEOUT_MS
    ) as hasty:
        alice = await hasty.client()
        token = (await alice.grant(QUOTE_ACCESS))["value"]
        async with _other(hasty) as other:
            await _refused(other, alice, token, SLOW_CASES, HASTY_BOUND_SECONDS)
        for name, reply in SLOW_REPLIES:
            await _refused_by_server(alice, token, reply(), name, HASTY_BOUND_SECONDS)
        assert await hasty.pool.fetchval("SELECT count(*) FROM quotes") == 0
