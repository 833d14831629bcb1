"""The receiver rules both services share: which receivers are this node's, and which are open."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from kiungo.payments.incoming import States
from kiungo.payments.receivers import (
    InvalidReceiverUrl,
    ReceiverKind,
    local_receiver_url,
    receiver_open,
)

BASE = "https://wallet.example"


@pytest.mark.parametrize(
    ("receiver", "url"),
    [
        ("https://wallet.example/alice", BASE + "/alice"),
        ("  https://WALLET.example/alice/ ", BASE + "/alice"),
        ("$wallet.example/alice", BASE + "/alice"),
        ("$wallet.example/alice/", BASE + "/alice"),
        ("$wallet.example", BASE + "/.well-known/pay"),
        # RFC 26: an empty path or "/" is /.well-known/pay; once read as the bare host.
        ("$wallet.example/", BASE + "/.well-known/pay"),
        ("$Wallet.Example/alice", BASE + "/alice"),
        ("https://wallet.example/alice/incoming-payments/1", BASE + "/alice/incoming-payments/1"),
    ],
)
def test_a_receiver_under_open_payments_url_is_this_nodes(receiver: str, url: str) -> None:
    assert local_receiver_url(BASE + "/", receiver) == url


@pytest.mark.parametrize(
    "receiver",
    [
        "https://wallet.example",
        "https://wallet.example.evil/alice",
        "http://wallet.example/alice",
        "https://other.example/alice",
        "$other.example/alice",
        "$wallet.example:443/alice",  # pointers have no port
        "$user@wallet.example/alice",  # nor user information
        "$wallet.example/alice?x=1",  # nor a query
        "ftp://wallet.example/alice",
        "not a url",
        "http://[wallet.example/alice",
        "",
    ],
)
def test_anything_else_is_not_this_nodes(receiver: str) -> None:
    assert local_receiver_url(BASE, receiver) is None


@pytest.mark.parametrize(
    "receiver", ["https://wallet.example/alice?x=1", "https://wallet.example/alice#top"]
)
def test_a_url_of_this_node_with_a_query_or_fragment_is_invalid(receiver: str) -> None:
    with pytest.raises(InvalidReceiverUrl, match="query or fragment"):
        local_receiver_url(BASE, receiver)


def test_a_receiver_is_open_while_active_or_open_and_in_time() -> None:
    now = datetime.now(UTC)
    later, earlier = now + timedelta(seconds=1), now - timedelta(seconds=1)
    assert receiver_open(ReceiverKind.WALLET_ADDRESS, "ACTIVE", None, now)
    assert not receiver_open(ReceiverKind.WALLET_ADDRESS, "INACTIVE", None, now)
    for state in States:
        is_open = state in (States.PENDING, States.PROCESSING)
        assert receiver_open(ReceiverKind.INCOMING_PAYMENT, state, later, now) is is_open
        assert receiver_open(ReceiverKind.INCOMING_PAYMENT, state, None, now) is is_open
        assert not receiver_open(ReceiverKind.INCOMING_PAYMENT, state, earlier, now)
        assert not receiver_open(ReceiverKind.INCOMING_PAYMENT, state, now, now)
