"""The incoming payment view another node reads (kiungo.open_payments): its JSON both ways, and
what a reader refuses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kiungo.open_payments import INCOMING_PAYMENT_PATH, IncomingPaymentView, wants_json

URL = "https://wallet.example/alice/incoming-payments/4f1c2a56-0d8e-4b7a-9c3f-2e5d6a7b8c9d"
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)

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
