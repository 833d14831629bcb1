"""The incoming payment view another node reads (kiungo.openpayments.remote): its JSON both
ways, and what a reader refuses."""

from __future__ import annotations

import contextlib
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.hostile_http import complete, endless, hostile_server, trickled

from kiungo.openpayments.remote import (
    INCOMING_PAYMENT_PATH,
    IncomingPaymentView,
    ReceiverUnreadable,
    fetch_incoming_payment,
    wants_json,
)
from kiungo.runtime.receiver_fetch import receiver_client

URL = "https://wallet.example/alice/incoming-payments/4f1c2a56-0d8e-4b7a-9c3f-2e5d6a7b8c9d"
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
PATH = "/alice/incoming-payments/4f1c2a56-0d8e-4b7a-9c3f-2e5d6a7b8c9d"

views = st.builds(
    IncomingPaymentView,
    id=st.just(URL),
    wallet_address=st.just("https://wallet.example/alice"),
    asset_code=st.sampled_from(["USD", "EUR", "XRP"]),
    asset_scale=st.integers(0, 255),
    incoming_amount=st.none() | st.integers(1, 2**64 - 1),
    received_amount=st.integers(0, 2**64 - 1),
    completed=st.booleans(),
    expires_at=st.none() | st.integers(0, 10**6).map(lambda ms: NOW + timedelta(milliseconds=ms)),
    created_at=st.none() | st.just(NOW),
)


@given(views)
def test_a_view_reads_back_as_written(view: IncomingPaymentView) -> None:
    assert IncomingPaymentView.from_json(view.to_json()) == view


def test_the_json_is_open_payments_shaped() -> None:
    view = IncomingPaymentView(
        URL, "https://wallet.example/alice", "USD", 2, 500, 120, False, NOW, NOW
    )
    assert view.to_json() == {
        "id": URL,
        "walletAddress": "https://wallet.example/alice",
        "incomingAmount": {"value": "500", "assetCode": "USD", "assetScale": 2},
        "receivedAmount": {"value": "120", "assetCode": "USD", "assetScale": 2},
        "completed": False,
        "expiresAt": "2026-11-30T12:00:00.000Z",
        "createdAt": "2026-11-30T12:00:00.000Z",
    }


def test_what_it_still_accepts() -> None:
    def view(
        incoming: int | None, received: int, completed: bool, expires: datetime | None
    ) -> IncomingPaymentView:
        return IncomingPaymentView(URL, "w", "USD", 2, incoming, received, completed, expires)

    later, earlier = NOW + timedelta(seconds=1), NOW - timedelta(seconds=1)
    assert view(500, 120, False, later).remaining(NOW) == 380
    assert view(500, 600, False, None).remaining(NOW) == 0
    assert view(500, 120, True, later).remaining(NOW) == 0
    assert view(500, 120, False, earlier).remaining(NOW) == 0
    assert view(None, 120, False, None).remaining(NOW) is None
    assert view(None, 120, True, None).remaining(NOW) == 0


def _good() -> dict[str, Any]:
    return IncomingPaymentView(URL, "w", "USD", 2, 500, 120, False, NOW).to_json()


@pytest.mark.parametrize(
    "change",
    [
        {"id": 5},
        {"walletAddress": None},
        {"receivedAmount": None},
        {"receivedAmount": {"value": "-1", "assetCode": "USD", "assetScale": 2}},
        {"receivedAmount": {"value": str(2**64), "assetCode": "USD", "assetScale": 2}},
        {"receivedAmount": {"value": "1.5", "assetCode": "USD", "assetScale": 2}},
        {"receivedAmount": {"value": "1", "assetCode": "", "assetScale": 2}},
        {"receivedAmount": {"value": "1", "assetCode": "USD", "assetScale": 256}},
        {"receivedAmount": {"value": "1", "assetCode": "USD", "assetScale": True}},
        {"incomingAmount": {"value": "1", "assetCode": "EUR", "assetScale": 2}},
        {"completed": "yes"},
        {"completed": None},
        {"expiresAt": 17},
        {"expiresAt": "tomorrow"},
        {"expiresAt": "2026-11-30T12:00:00"},
        {"createdAt": []},
    ],
)
def test_a_malformed_view_is_refused(change: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        IncomingPaymentView.from_json({**_good(), **change})


def test_not_an_object_is_refused() -> None:
    bodies: list[Any] = [[], "x", None, 3]
    for body in bodies:
        with pytest.raises(ValueError):
            IncomingPaymentView.from_json(body)


def test_json_is_asked_for_only_plainly() -> None:
    assert wants_json("application/json")
    assert wants_json("text/html, application/json;q=0.9")
    assert not wants_json(None)
    assert not wants_json("")
    assert not wants_json("application/spsp4+json")
    assert not wants_json("*/*")


def test_incoming_payment_urls() -> None:
    match = INCOMING_PAYMENT_PATH.match(URL)
    assert match is not None and match["wallet"] == "https://wallet.example/alice"
    assert INCOMING_PAYMENT_PATH.match(URL[:-36] + URL[-36:].replace("-", "")) is not None
    assert INCOMING_PAYMENT_PATH.match("https://wallet.example/alice/incoming-payments/1") is None
    assert INCOMING_PAYMENT_PATH.match("/incoming-payments/" + URL[-36:]) is None


# -- reading another node's incoming payment from a hostile server ------------------------------


def _view_body(url: str) -> bytes:
    view = IncomingPaymentView(url, "w", "USD", 2, 500, 120, False, None, NOW)
    return json.dumps(view.to_json()).encode()


async def test_a_trickled_incoming_payment_fails_within_the_time_limit() -> None:
    async with contextlib.AsyncExitStack() as stack:
        body = b"{}" * 600  # 60 s at that pace
        server = await stack.enter_async_context(hostile_server(trickled(body, 0.05)))
        client = await stack.enter_async_context(receiver_client(refuse_private=False))
        started = time.monotonic()
        with pytest.raises(ReceiverUnreadable, match=r"did not answer within 0\.5 s"):
            await fetch_incoming_payment(client, f"{server.url}{PATH}", max_seconds=0.5)
        assert time.monotonic() - started < 10  # ample slack over the 0.5 s for a loaded machine


async def test_an_oversized_incoming_payment_is_refused_as_it_streams() -> None:
    async with hostile_server(endless()) as server, receiver_client(refuse_private=False) as c:
        started = time.monotonic()
        with pytest.raises(ReceiverUnreadable, match="more than"):
            await fetch_incoming_payment(c, f"{server.url}{PATH}", max_seconds=60)
        assert time.monotonic() - started < 10  # cut at the size, long before the time limit


async def test_an_incoming_payment_is_read_only_as_json_and_only_from_public_hosts() -> None:
    async with hostile_server(complete(b"")) as placeholder:
        good = _view_body(f"{placeholder.url}{PATH}")  # any host: the id's path is what counts
    async with hostile_server(complete(good)) as honest:
        async with receiver_client(refuse_private=False) as client:
            view = await fetch_incoming_payment(client, f"{honest.url}{PATH}")
        assert view is not None and view.received_amount == 120
        async with receiver_client(refuse_private=True) as client:
            with pytest.raises(ReceiverUnreadable, match="non-public") as raised:
                await fetch_incoming_payment(client, f"{honest.url}{PATH}")
        assert "120" not in str(raised.value)
        assert len(honest.requests) == 1  # the refusing client never connected
    async with (
        hostile_server(complete(good, "text/plain")) as mislabelled,
        receiver_client(refuse_private=False) as client,
    ):
        with pytest.raises(ReceiverUnreadable, match="JSON"):
            await fetch_incoming_payment(client, f"{mislabelled.url}{PATH}")
