"""Fuzzing the connector's HTTP surface (issue 7): random and mutated bytes to ``POST /ilp`` with
right and malformed headers, and random paths, queries and headers to the SPSP endpoints.

For every input: no 5xx, an answer within ``TIMEOUT`` seconds, and every 200 from ``/ilp`` an
ILP Fulfill or Reject that decodes, never ``T00`` (the connector's reply to an exception it did
not expect) and never a Fulfill but IL-DCP's. After each run the ledger is exactly as before,
posted *and* pending balances of every account, and the ledger checks of ``kiungo ledger check``
(:func:`kiungo.ledger.check.run_checks`) pass.

Why exactly unchanged, and not "unchanged once holds resolve": no input can be fulfilled.

- The next hop (bob's and erin's endpoint) fulfills every packet with a preimage drawn per test
  from ``os.urandom``; no input knows its SHA-256, so every forwarded packet is held, answered
  F05 and its hold voided. (The harness's ``fulfilling_hop()`` answers ``PREIMAGE``, whose
  ``CONDITION`` a mutated packet could keep: that would move money, rightly.)
- The node's own STREAM receivers fulfill only data that decrypts (AES-256-GCM) under the shared
  secret of the connection. Inputs use a real SPSP destination, but their data is random bytes
  or mutations of them: no authentication tag verifies. No valid STREAM packet is a base for
  mutations, since a mutation of only its amount or expiry would pay, rightly.
- IL-DCP (``peer.config``) is answered without money.
- Forwarded holds are voided before the reply is sent, and each run sends one request at a time,
  so nothing is pending when a run ends; ``Connector.settled`` waits anyway (a received packet
  would post just after its reply).

Hostile-peer mode (issue 14): bob's endpoint is a raw socket server that answers forwarded
packets with garbage, truncated, close-delimited, chunked, HTTP/1.0, oversized, 1xx-prefixed,
stray-byte-suffixed, trickled or stalled replies. There a real Fulfill does move money: the
check is that it moves exactly when the next hop fulfilled in a valid framing (see
``test_a_hostile_next_hop_never_costs_a_fulfill_or_leaves_a_hold``).

A NUL (``%00``) in an SPSP path was a 500 when the fuzzer first ran; it is in the search, and
has a regression test at the end of this file.

How hypothesis runs with pytest-asyncio here (``asyncio_mode = "auto"``, one session loop): the
tests are async and the connector (uvicorn) serves on the test's event loop. Each ``@given``
function is synchronous, sends with a synchronous ``httpx.Client`` and runs in a worker thread
through ``asyncio.to_thread``, so the loop keeps serving meanwhile (as ``tests/backend/
test_http.py`` does). Snapshots before and after are taken on the loop with asyncpg. Hypothesis
prints a failing example (and replays it from ``.hypothesis/`` on the next run).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import event, example, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis
from tests.connector.harness import (
    ADDRESS,
    CONDITION,
    PREIMAGE,
    Connector,
    create_incoming_payment,
    fulfilling_hop,
    next_hop,
    prepare_to,
    running_connector,
)
from tests.ledger.schema import Balances, ledger_balances

from kiungo.connector.app import MAX_BODY
from kiungo.ilp.oer import encode_length, encode_var_octets
from kiungo.ilp.packet import (
    PEER_PROTOCOL_CONDITION,
    PEER_PROTOCOL_FULFILLMENT,
    Fulfill,
    Prepare,
    Reject,
    decode_prepare,
    decode_reply,
    encode_expiry,
    encode_packet,
)
from kiungo.ledger import AccountKind, account_id_for
from kiungo.ledger.check import run_checks
from kiungo.runtime.http1 import MAX_REPLY
from kiungo.spsp import SPSP_CONTENT_TYPE, SpspResponse

# Every request must be answered within this many seconds.
TIMEOUT = 5.0
OCTETS = "application/octet-stream"
TOKENS = ("alice-token", "bob-token", "nobody-token")  # nobody has no ledger account

# Bounded so that all of tests/fuzz runs in well under a minute on two cores (CI, every push);
# KIUNGO_FUZZ_EXAMPLES=5000 runs a deeper search locally.
EXAMPLES = int(os.environ.get("KIUNGO_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None)


# -- the node under test -------------------------------------------------------------------------


@dataclass
class Node:
    connector: Connector
    forwarded: list[Prepare]  # what reached the next hop
    open_payment: uuid.UUID
    expired_payment: uuid.UUID
    stream_destinations: list[str]  # real SPSP destinations: carol's, her open payment's


@pytest.fixture
async def node(
    database_url: str, redis_server_url: str, redis_prefix: str, redis: Redis
) -> AsyncIterator[Node]:
    forwarded: list[Prepare] = []
    async with (
        next_hop(fulfilling_hop(os.urandom(32), forwarded)) as hop,
        running_connector(
            database_url, redis_server_url, redis_prefix, hop_endpoint=hop
        ) as connector,
    ):
        carol, usd = connector.seeded.wallets["carol"], connector.seeded.usd
        async with connector.pool.acquire() as conn:
            open_payment = await create_incoming_payment(conn, carol, usd, 500)
            expired = await create_incoming_payment(conn, carol, usd, 7, timedelta(seconds=-1))
        destinations = []
        for path in ("/carol", f"/carol/incoming-payments/{open_payment}"):
            answer = await connector.client.get(
                f"{connector.url}{path}", headers={"Accept": SPSP_CONTENT_TYPE}
            )
            destinations.append(SpspResponse.from_json(answer.json()).destination_account)
        yield Node(connector, forwarded, open_payment, expired, destinations)


async def assert_no_money_moved(connector: Connector, before: Balances) -> None:
    await connector.settled()
    assert await ledger_balances(connector.pool) == before
    async with connector.pool.acquire() as conn:
        failed = [result for result in await run_checks(conn) if not result.ok]
    assert not failed, failed


def run_in_thread(check: Callable[[httpx.Client], None]) -> Awaitable[None]:
    """Run a ``@given`` function off the loop, which keeps serving the connector meanwhile."""

    def run() -> None:
        with httpx.Client(timeout=TIMEOUT) as client:
            check(client)

    return asyncio.to_thread(run)


def send(client: httpx.Client, method: str, url: str | httpx.URL, **kwargs: Any) -> httpx.Response:
    try:
        return client.request(method, url, **kwargs)
    except httpx.TimeoutException:
        raise AssertionError(f"no answer within {TIMEOUT} s: {method} {url}") from None


# -- packets -------------------------------------------------------------------------------------

SEGMENT = st.from_regex(r"[A-Za-z0-9_~-]{1,12}", fullmatch=True)
SCHEMES = ("g", "private", "example", "peer", "self", "test", "test1", "local")


def destinations(stream_destinations: list[str]) -> st.SearchStrategy[str]:
    known = st.sampled_from(
        [
            "test.bob.x",  # forwarded to bob's next hop (held, F05, voided)
            "test.bobland.shop",  # bob's extra route
            "test.erin.y",  # EUR: no rates, F07
            "test.alice.back",  # back to the sender when alice sends
            "test.nowhere",
            "peer.config",  # IL-DCP
            "peer.route.control",
            ADDRESS,
            f"{ADDRESS}.AAAA",
            *stream_destinations,
            *(f"{destination}.x" for destination in stream_destinations),
        ]
    )
    built = st.tuples(
        st.sampled_from((*SCHEMES, "test.bob", ADDRESS)), st.lists(SEGMENT, min_size=1, max_size=3)
    ).map(lambda parts: ".".join([parts[0], *parts[1]]))
    return known | built


def expiries() -> st.SearchStrategy[bytes]:
    """17 digits of a real instant: past, soon, later, and the extremes of the format."""
    now_plus = st.floats(min_value=-5, max_value=40).map(
        lambda seconds: encode_expiry(datetime.now(UTC) + timedelta(seconds=seconds))
    )
    return now_plus | st.sampled_from([b"00010101000000000", b"99991231235959999"])


@dataclass
class Parts:
    """An ILP Prepare as the bytes of its fields, each of which a mutation may replace."""

    kind: int
    envelope_length: bytes | None  # None: the canonical length of the body
    amount: bytes
    expiry: bytes
    condition: bytes
    destination: bytes
    data: bytes
    inside: bytes  # after the last field, inside the envelope (RFC 30 lets readers skip it)

    def encode(self) -> bytes:
        body = b"".join(
            (self.amount, self.expiry, self.condition, self.destination, self.data, self.inside)
        )
        length = encode_length(len(body)) if self.envelope_length is None else self.envelope_length
        return bytes((self.kind,)) + length + body


def valid_prepares(stream_destinations: list[str]) -> st.SearchStrategy[Parts]:
    amounts = st.integers(0, 1_001) | st.integers(0, 2**64 - 1)
    conditions = st.binary(min_size=32, max_size=32) | st.sampled_from(
        [CONDITION, PEER_PROTOCOL_CONDITION]
    )
    data = st.binary(max_size=80) | st.integers(0, 32_767).map(lambda n: b"\x01" * n)
    return st.builds(
        Parts,
        kind=st.just(12),
        envelope_length=st.none(),
        amount=amounts.map(lambda n: n.to_bytes(8, "big")),
        expiry=expiries(),
        condition=conditions,
        destination=destinations(stream_destinations).map(
            lambda d: encode_var_octets(d.encode("ascii"))
        ),
        data=data.map(encode_var_octets),
        inside=st.just(b""),
    )


def length_determinants() -> st.SearchStrategy[bytes]:
    """Any length determinant: short form, long form of 0 to 9 length bytes (0x80 alone is the
    indefinite form OER forbids; a long form below 128 is not canonical), and canonical ones."""
    return st.one_of(
        st.integers(0, 0x7F).map(lambda n: bytes((n,))),
        st.integers(0, 9).flatmap(
            lambda n: st.binary(min_size=n, max_size=n).map(lambda b: bytes((0x80 | n,)) + b)
        ),
        st.integers(0x80, 0xFF).map(lambda n: bytes((n,))),
        st.integers(0, 2**24).map(encode_length),
    )


@st.composite
def field_mutations(draw: st.DrawFn, base: st.SearchStrategy[Parts]) -> Parts:
    """A valid Prepare with some of its fields replaced: garbage of the right size or not,
    random length determinants in front of destination and data, bytes inside the envelope,
    another packet type, another envelope length."""
    parts = draw(base)
    for field in draw(st.sets(st.sampled_from(list(Parts.__dataclass_fields__)), min_size=1)):
        if field == "kind":
            parts.kind = draw(st.integers(0, 255))
        elif field == "envelope_length":
            parts.envelope_length = draw(length_determinants())
        elif field == "amount":
            parts.amount = draw(st.binary(min_size=6, max_size=10))
        elif field == "expiry":
            parts.expiry = draw(
                st.binary(min_size=17, max_size=17)
                | st.from_regex(r"[0-9]{17}", fullmatch=True).map(str.encode)
                | st.binary(max_size=20)
            )
        elif field == "condition":
            parts.condition = draw(st.binary(max_size=40))
        elif field in ("destination", "data"):
            content = draw(st.binary(max_size=60) | destinations([]).map(str.encode))
            prefix = draw(length_determinants() | st.just(encode_length(len(content))))
            setattr(parts, field, prefix + content)
        else:
            parts.inside = draw(st.binary(min_size=1, max_size=40))
    return parts


@st.composite
def byte_mutations(draw: st.DrawFn, packets: st.SearchStrategy[bytes]) -> bytes:
    """Bit flips, truncation, extension, and slices overwritten, inserted or deleted."""
    raw = bytearray(draw(packets))
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["flip", "truncate", "extend", "splice", "byte"]))
        if kind == "extend" or not raw:
            raw += draw(st.binary(min_size=1, max_size=64))
        elif kind == "flip":
            for bit in draw(st.lists(st.integers(0, len(raw) * 8 - 1), min_size=1, max_size=8)):
                raw[bit // 8] ^= 1 << (bit % 8)
        elif kind == "truncate":
            del raw[draw(st.integers(0, len(raw) - 1)) :]
        elif kind == "byte":
            raw[draw(st.integers(0, len(raw) - 1))] = draw(
                st.sampled_from([0x00, 0x01, 0x0C, 0x7F, 0x80, 0x81, 0x82, 0x88, 0x89, 0xFF])
            )
        else:
            start = draw(st.integers(0, len(raw)))
            end = draw(st.integers(start, min(len(raw), start + 16)))
            raw[start:end] = draw(st.binary(max_size=16))
    return bytes(raw)


def packets(stream_destinations: list[str]) -> st.SearchStrategy[bytes]:
    valid = valid_prepares(stream_destinations)
    structured = valid.map(Parts.encode) | field_mutations(valid).map(Parts.encode)
    return st.one_of(
        st.binary(max_size=300),
        structured,
        byte_mutations(structured),
        # a valid envelope of any type with garbage inside
        st.tuples(st.sampled_from([12, 13, 14, 0, 255]), st.binary(max_size=200)).map(
            lambda t: bytes((t[0],)) + encode_length(len(t[1])) + t[1]
        ),
        # around the body size limit
        st.integers(MAX_BODY - 2, MAX_BODY + 2).map(lambda n: b"\x0c" + bytes(n - 1)),
    )


def check_ilp_reply(response: httpx.Response, sent: bytes, token: str) -> Fulfill | Reject:
    assert response.status_code == 200, (sent[:200], response.status_code, response.text)
    reply = decode_reply(response.content)  # a DecodeError fails the example
    if isinstance(reply, Reject):
        # T00 is the connector's answer to what it did not expect. The harness seeds nobody
        # without a ledger account to provoke it (test_an_unexpected_failure_is_t00).
        if token != "nobody-token":
            assert reply.code != "T00", ("an unexpected exception in the connector", sent[:200])
    else:  # only IL-DCP may be fulfilled: nothing an input sends can pay
        assert reply.fulfillment == PEER_PROTOCOL_FULFILLMENT, (reply, sent[:200])
    return reply


async def test_random_and_mutated_packets_are_answered_and_move_no_money(node: Node) -> None:
    connector = node.connector
    before = await ledger_balances(connector.pool)
    url = f"{connector.url}/ilp"
    reached_the_next_hop = encode_packet(prepare_to("test.bob.x", 100, expires_in=60))

    @FUZZ
    @given(body=packets(node.stream_destinations), token=st.sampled_from(TOKENS))
    @example(body=reached_the_next_hop, token="alice-token")
    def check(client: httpx.Client, body: bytes, token: str) -> None:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": OCTETS}
        response = send(client, "POST", url, content=body, headers=headers)
        if len(body) > MAX_BODY:
            assert response.status_code == 413, response.text
        else:
            check_ilp_reply(response, body, token)

    await run_in_thread(check)
    assert node.forwarded, "no input reached the next hop"
    await assert_no_money_moved(connector, before)


# -- headers -------------------------------------------------------------------------------------

# What h11 lets a client send as a header value: visible bytes (obs-text too), inner spaces.
_VCHAR = [*range(0x21, 0x7F), *range(0x80, 0x100)]
header_values = (
    st.lists(st.sampled_from([*_VCHAR, 0x20]), min_size=1, max_size=60)
    .map(lambda b: bytes(b).strip(b" "))
    .filter(bool)
)
authorizations = (
    st.none()
    | header_values
    | st.sampled_from(
        [
            b"Bearer alice-token",
            b"bearer alice-token",
            b"BEARER bob-token",
            b"Bearer nobody-token",
            b"Bearer",
            b"Bearer  alice-token",
            b"Bearer alice-token,Bearer bob-token",
            b"Bearer alice-token\xff",
            b"Basic YWxpY2U6YWxpY2UtdG9rZW4=",
            b"alice-token",
            b"Bearer nope",
        ]
    )
)
content_types = (
    st.none()
    | header_values
    | st.sampled_from(
        [
            b"application/octet-stream",
            b"APPLICATION/OCTET-STREAM",
            b"application/octet-stream; charset=binary",
            b"application/octet-stream;",
            b";application/octet-stream",
            b"application/octet-stream, application/json",
            b"application/json",
            b"text/plain",
            b"multipart/form-data; boundary=x",
        ]
    )
)
header_names = st.from_regex(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,20}", fullmatch=True).filter(
    lambda name: (
        name.lower()
        not in ("content-length", "transfer-encoding", "host", "connection", "expect", "upgrade")
    )
)
ilp_header_names = header_names | st.sampled_from(["Authorization", "content-type"])
spsp_header_names = header_names | st.sampled_from(["Accept", "receipt-nonce", "Receipt-Secret"])


async def test_malformed_headers_on_ilp_are_refused_without_a_5xx(node: Node) -> None:
    connector = node.connector
    before = await ledger_balances(connector.pool)
    url = f"{connector.url}/ilp"

    @FUZZ
    @given(
        authorization=authorizations,
        content_type=content_types,
        extra=st.lists(st.tuples(ilp_header_names, header_values), max_size=3),
        body=packets(node.stream_destinations),
        chunked=st.booleans(),
    )
    def check(
        client: httpx.Client,
        authorization: bytes | None,
        content_type: bytes | None,
        extra: list[tuple[str, bytes]],
        body: bytes,
        chunked: bool,
    ) -> None:
        # The endpoint reads the last of repeated headers: random ones (Authorization and
        # Content-Type among them) go first, those of the oracle below last.
        headers = list(extra)
        if authorization is not None:
            headers.append(("Authorization", authorization))
        if content_type is not None:
            headers.append(("Content-Type", content_type))
        # A generator is sent chunked, without a Content-Length.
        content: bytes | Iterator[bytes] = iter([body[:7], body[7:]]) if chunked else body
        response = send(client, "POST", url, content=content, headers=headers)
        assert response.status_code in (200, 400, 401, 413), (headers, response.text)
        if response.status_code == 401:
            assert response.headers["www-authenticate"] == "Bearer"
        if response.status_code == 200:
            token = (authorization or b"").partition(b" ")[2].decode("latin-1")
            check_ilp_reply(response, body, token)
        if (
            authorization == b"Bearer alice-token"
            and content_type == b"application/octet-stream"
            and len(body) <= MAX_BODY
        ):
            assert response.status_code == 200, response.text

    await run_in_thread(check)
    await assert_no_money_moved(connector, before)


def raw_exchange(url: str, request: bytes, wait: float) -> bytes:
    """Send ``request`` as is on a new connection; what comes back until the server closes
    (``Connection: close``), or within ``wait`` seconds."""
    parsed = httpx.URL(url)
    assert parsed.port is not None
    answer = b""
    with socket.create_connection((parsed.host, parsed.port), timeout=wait) as sock:
        sock.sendall(request)
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass
    return answer


async def test_content_length_and_framing_lies_get_no_5xx(node: Node) -> None:
    """``Content-Length`` as sent, not as httpx would compute it: too short, non-numeric,
    signed, huge, repeated, next to ``Transfer-Encoding``. A request whose body is shorter than
    a valid length under the limit is left incomplete: the server may wait for the rest (it
    answers nothing in a short wait, then the socket is closed); every other one is answered, or
    closed, within ``TIMEOUT``."""
    connector = node.connector
    before = await ledger_balances(connector.pool)
    url = connector.url
    valid = encode_packet(prepare_to("test.bob.x", 5, expires_in=60))
    lengths = st.one_of(
        st.integers(0, 200).map(str),
        st.sampled_from(
            [
                "-1", "+5", "0x10", "1e3", " 5", "5 ", "", "abc", "٣", "00000000000000000000005",
                str(MAX_BODY + 1), "99999999999999999999999999", "18446744073709551616",
            ]
        ),
    )  # fmt: skip

    @FUZZ
    @given(
        body=st.just(valid) | packets(node.stream_destinations).filter(lambda b: len(b) < 2_000),
        declared=st.lists(lengths, min_size=0, max_size=2),
        chunked=st.sampled_from([None, "chunked", "gzip, chunked", "identity", "chunked, gzip"]),
        chunk_size=st.sampled_from(["", "zz", "-1", "ffffffffffffffffff"]) | st.none(),
    )
    def check(
        client: httpx.Client,
        body: bytes,
        declared: list[str],
        chunked: str | None,
        chunk_size: str | None,
    ) -> None:
        head = [
            "POST /ilp HTTP/1.1",
            "Host: 127.0.0.1",
            "Authorization: Bearer alice-token",
            f"Content-Type: {OCTETS}",
            "Connection: close",
        ]
        head += [f"Content-Length: {value}" for value in declared]
        payload = body
        if chunked is not None:
            head.append(f"Transfer-Encoding: {chunked}")
            size = f"{len(body):x}" if chunk_size is None else chunk_size
            payload = f"{size}\r\n".encode() + body + b"\r\n0\r\n\r\n"
        request = ("\r\n".join(head) + "\r\n\r\n").encode("utf-8") + payload
        # HTTP trims spaces and tabs around a value, and allows a repeated identical length.
        values = {value.strip(" \t") for value in declared}
        length = values.pop() if len(values) == 1 else ""
        incomplete = (
            chunked is None
            and length.isascii()
            and length.isdigit()
            and len(payload) < int(length) <= MAX_BODY
        )
        try:
            answer = raw_exchange(url, request, 0.15 if incomplete else TIMEOUT)
        except TimeoutError:
            assert incomplete, f"no answer within {TIMEOUT} s to {request[:300]!r}"
            return
        if answer:
            status = int(answer.split(b" ", 2)[1])
            assert status < 500, (request[:300], answer[:300])
            if status == 200:
                reply = answer.partition(b"\r\n\r\n")[2]
                assert isinstance(decode_reply(reply), Fulfill | Reject)

    await run_in_thread(check)
    await assert_no_money_moved(connector, before)


# -- a hostile next hop --------------------------------------------------------------------------

STALL_PATIENCE = 2.3  # a Prepare's expiry (s) when the hop stalls: about 1.3 s to answer
HOSTILE = settings(max_examples=max(EXAMPLES // 5, 10), deadline=None)
HOP_REJECT = encode_packet(Reject("F99", "test.bob", "from the next hop", b"hop"))
INTERIM = (
    b"HTTP/1.1 100 Continue\r\n\r\n",
    b"HTTP/1.1 102 Processing\r\n\r\n",
    b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n",
)


@dataclass
class HopReply:
    """What the hostile next hop writes to one forwarded packet, and what the sender must get:
    ``fulfilled`` (the hop's Fulfill relayed, the hold posted), ``relayed`` (the hop's Reject
    relayed, the hold voided) or ``rejected`` (a Reject of the connector's, the hold voided)."""

    pieces: list[tuple[float, bytes]]  # (seconds to wait first, bytes), written in turn
    close: bool  # the hop closes the connection once written
    stall: bool  # ... or stays silent until the connector hangs up
    outcome: str
    label: str  # shown when an example fails
    patience: float = 10.0  # the Prepare's expiry, in seconds from now


def _chunked(draw: st.DrawFn, body: bytes) -> bytes:
    cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=3)))
    out = b""
    for start, end in zip([0, *cuts], [*cuts, len(body)], strict=True):
        if end > start:
            extension = draw(st.sampled_from([b"", b";name=value"]))
            out += b"%x%s\r\n%s\r\n" % (end - start, extension, body[start:end])
    return out + b"0\r\n" + draw(st.sampled_from([b"", b"X-Trailer: 1\r\n"])) + b"\r\n"


@st.composite
def hop_replies(draw: st.DrawFn) -> HopReply:
    """An HTTP reply to a forwarded packet in any framing HTTP allows (Content-Length, chunked,
    the end of the connection, HTTP/1.0), after interim 1xx replies, followed by stray bytes,
    written in segments with pauses; or a faulty one: cut short, not HTTP, oversized, a 101."""
    kind = draw(st.sampled_from(["fulfill"] * 4 + ["reject", "wrong", "garbage"]))
    if kind == "fulfill":
        payload = encode_packet(Fulfill(PREIMAGE, draw(st.binary(max_size=40))))
    elif kind == "reject":
        payload = HOP_REJECT
    elif kind == "wrong":  # a Fulfill whose preimage is not the condition's
        payload = encode_packet(Fulfill(draw(st.binary(min_size=32, max_size=32)), b""))
    else:
        payload = draw(st.binary(max_size=60))
    status = draw(st.sampled_from([200] * 8 + [202, 204, 400, 500]))
    framing = draw(st.sampled_from(["length", "chunked", "close", "http/1.0"]))
    fault = draw(st.sampled_from([None] * 8 + ["truncated", "not-http", "oversize", "switching"]))
    if fault == "oversize":
        payload += bytes(MAX_REPLY + 1 - len(payload))
    version = b"HTTP/1.0" if framing == "http/1.0" else b"HTTP/1.1"
    head = [b"%s %d %s" % (version, status, draw(st.sampled_from([b"OK", b"", b"Whatever"])))]
    head += draw(
        st.lists(
            st.sampled_from([b"Content-Type: application/octet-stream", b"Server: hostile"]),
            max_size=2,
        )
    )
    close = framing in ("close", "http/1.0") or draw(st.booleans())
    if close and framing != "http/1.0" and draw(st.booleans()):
        head.append(b"Connection: close")
    body = payload
    if framing == "length":
        head.append(b"Content-Length: %d" % len(payload))
    elif framing == "chunked":
        head.append(b"Transfer-Encoding: chunked")
        body = _chunked(draw, payload)
    interim = b"".join(draw(st.lists(st.sampled_from(INTERIM), max_size=3)))
    if fault == "switching":
        interim += (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n"
        )
    reply = interim + b"\r\n".join(head) + b"\r\n\r\n" + body
    stray = b""
    if fault == "truncated":
        reply, close = reply[: draw(st.integers(0, len(reply) - 1))], True
    elif fault == "not-http":
        reply = draw(st.binary(min_size=1, max_size=80).filter(lambda b: not b.startswith(b"H")))
        close = True
    elif framing in ("length", "chunked"):
        # After a framed reply: what a proxy or a confused server sends, a whole second reply
        # among them (the next packet's reply, if the connection were reused).
        stray = draw(
            st.sampled_from(
                [
                    b"",
                    b"",
                    b"\r\n",
                    b"\r\n\r\n",
                    b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s"
                    % (len(HOP_REJECT), HOP_REJECT),
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nno",
                ]
            )
            | st.binary(min_size=1, max_size=20)
        )
    cuts = sorted(draw(st.lists(st.integers(0, len(reply)), max_size=4)))
    delays = st.sampled_from([0.0, 0.0, 0.002, 0.02])
    pieces = [
        (draw(delays), reply[start:end])
        for start, end in zip([0, *cuts], [*cuts, len(reply)], strict=True)
    ]
    if stray:
        # With the reply's last segment, or once the connector has its reply.
        pieces.append((draw(st.sampled_from([0.0, 0.02])), stray))
    if fault is not None or status != 200 or kind in ("wrong", "garbage"):
        outcome = "rejected"
    else:
        outcome = "fulfilled" if kind == "fulfill" else "relayed"
    label = f"{kind} {status} {framing} {fault} interim={len(interim)} stray={stray[:30]!r}"
    return HopReply(pieces, close, False, outcome, label)


# A hop that sends half of a valid reply, then nothing: the packet's time runs out.
_STALLING = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(HOP_REJECT) + HOP_REJECT[:5]
STALL = HopReply([(0.0, _STALLING)], False, True, "rejected", "stall", STALL_PATIENCE)
_FULFILL = encode_packet(Fulfill(PREIMAGE, b"plain"))
_PLAIN = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(_FULFILL), _FULFILL)
PLAIN = HopReply([(0.0, _PLAIN)], False, False, "fulfilled", "the plain reply after")


class HostileHop:
    """A raw socket server for bob's endpoint: it reads each forwarded packet and answers it
    as the test says, byte for byte."""

    def __init__(self) -> None:
        self.reply: HopReply | None = None
        self.forwarded: list[Prepare] = []
        self.done = threading.Event()  # the hop has written (or given up on) its reply

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[str]:
        server = await asyncio.start_server(self._connected, "127.0.0.1", 0)
        try:
            yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/ilp"
        finally:
            server.close()

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.partition(b":")[2])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                self.forwarded.append(decode_prepare(await reader.readexactly(length)))
                reply = self.reply
                assert reply is not None
                try:
                    for delay, piece in reply.pieces:
                        if delay:
                            await asyncio.sleep(delay)
                        writer.write(piece)
                        await writer.drain()
                    if reply.stall:
                        await reader.read()  # until the connector hangs up
                finally:
                    self.done.set()
                if reply.close or reply.stall:
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the connector hung up: on a reply it refused, or an idle connection
        finally:
            writer.close()


async def test_a_hostile_next_hop_never_costs_a_fulfill_or_leaves_a_hold(
    database_url: str, redis_server_url: str, redis_prefix: str, redis: Redis
) -> None:
    """Hostile-peer mode: bob's endpoint answers forwarded packets with every framing HTTP
    allows and with faults (see ``hop_replies``), through the real connector. Every reply to
    the sender is a valid ILP packet (never T00); a real Fulfill in a valid framing is relayed
    and its hold posted; anything else is a Reject and the hold is voided. Checked after each
    packet (alice's and bob's balances), and for the whole ledger at the end. Connections to
    the hop live across examples, so a reply read from a connection reused after stray bytes
    shows up as a wrong outcome of the next example."""
    hop = HostileHop()
    loop = asyncio.get_running_loop()
    async with (
        hop.serving() as hop_url,
        running_connector(
            database_url, redis_server_url, redis_prefix, hop_endpoint=hop_url,
            alice_liquidity=10**9,
        ) as connector,
    ):  # fmt: skip
        before = await ledger_balances(connector.pool)
        alice = account_id_for(AccountKind.PEER_LIQUIDITY, connector.seeded.peers["alice"])
        bob = account_id_for(AccountKind.PEER_LIQUIDITY, connector.seeded.peers["bob"])
        moved = [0]

        async def posted() -> tuple[int, int, int, int]:
            # Fulfilled packets are posted before they are relayed, but the check allows a
            # post that lands just after (an owed post drained later).
            expected = (before[alice][0] + moved[0], before[bob][1] + moved[0], 0, 0)
            for _ in range(100):
                now = await ledger_balances(connector.pool)
                found = (now[alice][0], now[bob][1], now[alice][2], now[bob][3])
                if found == expected:
                    break
                await asyncio.sleep(0.02)
            return found

        def exchange(client: httpx.Client, reply: HopReply, amount: int) -> None:
            hop.reply = reply
            hop.done.clear()
            forwarded = len(hop.forwarded)
            prepare = prepare_to("test.bob.x", amount, expires_in=reply.patience)
            response = send(
                client, "POST", f"{connector.url}/ilp", content=encode_packet(prepare),
                headers={"Authorization": "Bearer alice-token", "Content-Type": OCTETS},
            )  # fmt: skip
            assert response.status_code == 200, (reply.label, response.text)
            answer = decode_reply(response.content)  # a DecodeError fails the example
            assert hop.done.wait(TIMEOUT), reply.label
            assert len(hop.forwarded) == forwarded + 1, reply.label
            if reply.outcome == "fulfilled":
                assert isinstance(answer, Fulfill), (reply.label, answer)
                assert answer.fulfillment == PREIMAGE, reply.label
                moved[0] += amount
            elif reply.outcome == "relayed":
                assert answer == decode_reply(HOP_REJECT), (reply.label, answer)
            else:
                assert isinstance(answer, Reject), (reply.label, answer)
                assert answer.code != "T00", (reply.label, answer)
                assert answer.triggered_by == ADDRESS, (reply.label, answer)
            found = asyncio.run_coroutine_threadsafe(posted(), loop).result(TIMEOUT)
            expected = (before[alice][0] + moved[0], before[bob][1] + moved[0], 0, 0)
            assert found == expected, (reply.label, found, expected)

        @HOSTILE
        @given(reply=hop_replies(), amount=st.integers(1, 1_000))
        @example(reply=STALL, amount=7)
        def check(client: httpx.Client, reply: HopReply, amount: int) -> None:
            event(reply.outcome)
            exchange(client, reply, amount)
            # Then a plain Fulfill, on the connection the hop left if the connector kept it:
            # what was left on it must not be taken for this reply.
            exchange(client, PLAIN, 1)

        await run_in_thread(check)
        assert moved[0] > 0, "no example was fulfilled"
        await connector.settled()
        after = await ledger_balances(connector.pool)
        for account, balances in before.items():
            if account not in (alice, bob):
                assert after[account] == balances, account
        async with connector.pool.acquire() as conn:
            failed = [result for result in await run_checks(conn) if not result.ok]
        assert not failed, failed


# -- SPSP ----------------------------------------------------------------------------------------

ACCEPTS = [
    SPSP_CONTENT_TYPE,
    "APPLICATION/SPSP4+JSON",
    "application/spsp4+json; q=0.5, text/html",
    "text/html, application/spsp4+json;v=1",
    "application/json",
    "application/json, application/spsp4+json",
    "application/spsp4+json, application/json",
    "application/*",
    "*/*",
    "text/html",
    "",
    ",,,;;;",
]


def b64(size: int) -> st.SearchStrategy[str]:
    return st.binary(min_size=size, max_size=size).map(lambda b: base64.b64encode(b).decode())


receipt_values = (
    st.none()
    | b64(16)
    | b64(32)
    | header_values
    | st.sampled_from(
        ["", "====", "AAAA", "A", "-_-_", "AAAAAAAAAAAAAAAAAAAAAA", "AAAAAAAAAAAAAAAAAAAAAA=="]
    )
)


def path_segments() -> st.SearchStrategy[str]:
    """Segments percent-encoded as a client would, and raw oddities: NUL, bad escapes, dots."""
    encoded = st.text(max_size=20).map(lambda s: quote(s, safe=""))
    raw = st.sampled_from(
        ["", ".", "..", "%", "%zz", "%2F", "%ff", "%ED%A0%80", "~", "incoming-payments"]
    )
    return encoded | raw | SEGMENT


def spsp_paths(node: Node) -> st.SearchStrategy[str]:
    payments = (node.open_payment, node.expired_payment)
    known = st.sampled_from(
        [
            "/carol",
            "/carol/",
            "/dave",
            "/nobody",
            "/.well-known/pay",
            "/",
            "/healthz",
            "/metrics",
            "/ilp",
            "/internal/quote",
            *(f"/carol/incoming-payments/{p}" for p in payments),
            *(f"/dave/incoming-payments/{p}" for p in payments),  # under the wrong wallet
            f"/carol/incoming-payments/{str(node.open_payment).upper()}",
            f"/carol/incoming-payments/{node.open_payment.hex}",
            "/carol/incoming-payments/",
            "/carol/incoming-payments/not-a-uuid",
        ]
    )
    random_payment = st.tuples(st.sampled_from(["carol", "dave", "x"]), st.uuids()).map(
        lambda t: f"/{t[0]}/incoming-payments/{t[1]}"
    )
    built = st.lists(path_segments(), min_size=1, max_size=4).map(lambda s: "/" + "/".join(s))
    suffixes = st.sampled_from(["", "/", "//", "/.", "%00", "%01", "/incoming-payments"])
    return st.tuples(known | random_payment | built, suffixes).map("".join)


async def test_spsp_answers_random_paths_and_headers_without_a_5xx(node: Node) -> None:
    connector = node.connector
    before = await ledger_balances(connector.pool)
    base = httpx.URL(connector.url)
    query = st.none() | st.text(max_size=30).map(lambda s: quote(s, safe="=&"))

    @FUZZ
    @given(
        method=st.sampled_from(["GET", "GET", "GET", "OPTIONS", "HEAD"]),
        path=spsp_paths(node),
        query=query,
        accept=st.none() | st.sampled_from(ACCEPTS) | header_values,
        nonce=receipt_values,
        secret=receipt_values,
        extra=st.lists(st.tuples(spsp_header_names, header_values), max_size=3),
    )
    @example(
        method="GET", path="/carol", query=None, accept=SPSP_CONTENT_TYPE, nonce=None,
        secret=None, extra=[],
    )  # fmt: skip
    def check(
        client: httpx.Client,
        method: str,
        path: str,
        query: str | None,
        accept: str | bytes | None,
        nonce: str | bytes | None,
        secret: str | bytes | None,
        extra: list[tuple[str, bytes]],
    ) -> None:
        # Starlette reads the first of repeated headers: the random ones go last.
        headers: list[tuple[str, str | bytes]] = [
            (name, value)
            for name, value in (
                ("Accept", accept),
                ("Receipt-Nonce", nonce),
                ("Receipt-Secret", secret),
            )
            if value is not None
        ]
        headers += extra
        raw_path = path + ("" if query is None else "?" + query)
        url = base.copy_with(raw_path=raw_path.encode("ascii"))
        response = send(client, method, url, headers=headers)
        assert response.status_code < 500, (method, raw_path, headers, response.text)
        if (method, path, query, accept, nonce, secret) == (
            "GET",
            "/carol",
            None,
            SPSP_CONTENT_TYPE,
            None,
            None,
        ):
            assert response.status_code == 200, response.text
        if method != "GET" or response.status_code != 200:
            return
        content_type = response.headers.get("content-type", "")
        if content_type == SPSP_CONTENT_TYPE:
            answer = SpspResponse.from_json(response.json())
            assert answer.destination_account.startswith(f"{ADDRESS}.")
        elif content_type == "application/json":
            assert isinstance(response.json(), dict)

    await run_in_thread(check)
    await assert_no_money_moved(connector, before)


async def test_a_nul_in_an_spsp_path_is_a_404_not_a_500(node: Node) -> None:
    """Found by the fuzzer above (it was asyncpg's CharacterNotInRepertoireError, a 500)."""
    connector = node.connector
    for path in ("/carol%00", "/carol%00/incoming-payments/" + str(uuid.uuid4()), "/%00"):
        for accept in (SPSP_CONTENT_TYPE, "application/json"):
            response = await connector.client.get(
                f"{connector.url}{path}", headers={"Accept": accept}
            )
            assert response.status_code == 404, (path, accept, response.text)
