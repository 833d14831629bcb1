"""Stateless STREAM connection credentials (RFC 29 §4.1, @interledger/stream-receiver's scheme)."""

from __future__ import annotations

import base64
import itertools

import pytest

from kiungo.ilp.address import MAX_ADDRESS_LENGTH, is_valid_address
from kiungo.ilp.oer import encode_var_octets
from kiungo.stream.crypto import hmac_sha256
from kiungo.stream.server import Asset, ReceiptSetup, StreamServer

SECRET = bytes(range(32))
OTHER_SECRET = bytes(range(1, 33))
BASE = "test.receiver"
RECEIPTS = ReceiptSetup(nonce=bytes(range(16)), secret=bytes(range(100, 132)))
ASSET = Asset("USD", 2)

COMBINATIONS = list(
    itertools.product([None, "invoice-42"], [None, RECEIPTS], [None, ASSET, Asset("€uro", 255)])
)


def _token(destination: str) -> str:
    return destination[len(BASE) + 1 :]


@pytest.mark.parametrize(("payment_tag", "receipt_setup", "asset"), COMBINATIONS)
def test_credentials_round_trip_through_the_destination(
    payment_tag: str | None, receipt_setup: ReceiptSetup | None, asset: Asset | None
) -> None:
    server = StreamServer(SECRET, BASE)
    credentials = server.generate_credentials(
        payment_tag=payment_tag, receipt_setup=receipt_setup, asset=asset
    )
    details = server.connection(credentials.destination_account)
    assert details is not None
    assert details.payment_tag == payment_tag
    assert details.receipt_setup == receipt_setup
    assert details.asset == asset
    assert details.keys.shared_secret == credentials.shared_secret


def test_credentials_are_a_valid_address_under_the_base_and_a_32_byte_secret() -> None:
    credentials = StreamServer(SECRET, BASE).generate_credentials(payment_tag="x")
    assert is_valid_address(credentials.destination_account)
    assert credentials.destination_account.startswith(BASE + ".")
    assert "." not in _token(credentials.destination_account)
    assert len(credentials.shared_secret) == 32


def test_each_credential_is_a_new_connection() -> None:
    server = StreamServer(SECRET, BASE)
    first = server.generate_credentials(payment_tag="same")
    second = server.generate_credentials(payment_tag="same")
    assert first.destination_account != second.destination_account
    assert first.shared_secret != second.shared_secret
    one, two = (
        server.connection(first.destination_account),
        server.connection(second.destination_account),
    )
    assert one is not None and two is not None
    assert one.connection_id != two.connection_id


def test_another_server_with_the_same_secret_recognises_the_token() -> None:
    credentials = StreamServer(SECRET, BASE).generate_credentials(
        payment_tag="tag", receipt_setup=RECEIPTS, asset=ASSET
    )
    details = StreamServer(SECRET, BASE).connection(credentials.destination_account)
    assert details is not None
    assert (details.payment_tag, details.receipt_setup, details.asset) == ("tag", RECEIPTS, ASSET)
    assert details.keys.shared_secret == credentials.shared_secret


def test_connection_id_is_the_same_on_every_server_with_the_secret() -> None:
    credentials = StreamServer(SECRET, BASE).generate_credentials()
    one = StreamServer(SECRET, BASE).connection(credentials.destination_account)
    two = StreamServer(SECRET, BASE).connection(credentials.destination_account)
    assert one is not None and two is not None
    assert one.connection_id == two.connection_id


def test_server_with_another_secret_does_not_recognise_the_token() -> None:
    credentials = StreamServer(SECRET, BASE).generate_credentials()
    assert StreamServer(OTHER_SECRET, BASE).connection(credentials.destination_account) is None


def test_extra_segments_after_the_token_name_the_same_connection() -> None:
    server = StreamServer(SECRET, BASE)
    credentials = server.generate_credentials(payment_tag="t")
    plain = server.connection(credentials.destination_account)
    extended = StreamServer(SECRET, BASE).connection(credentials.destination_account + ".a.b")
    assert plain is not None and extended is not None
    assert extended.connection_id == plain.connection_id
    assert extended.keys.shared_secret == credentials.shared_secret
    assert extended.payment_tag == "t"


def test_token_must_be_the_first_segment_after_the_base() -> None:
    # pay's second asset probe inserts "_" before the token; JS receivers do not look past it.
    server = StreamServer(SECRET, BASE)
    credentials = server.generate_credentials()
    assert server.connection(f"{BASE}._.{_token(credentials.destination_account)}") is None


@pytest.mark.parametrize(
    "destination",
    [
        BASE,
        "test.other",
        "test.receiverx",
        "test",
        "g.receiver",
    ],
)
def test_destination_without_a_token_under_the_base_has_no_token_segment(destination: str) -> None:
    assert StreamServer(SECRET, BASE).token_segment(destination) is None


@pytest.mark.parametrize("prefix", ["test.other.", "test.receiverx.", "test.", "g.receiver."])
def test_token_outside_the_base_is_not_recognised(prefix: str) -> None:
    server = StreamServer(SECRET, BASE)
    token = _token(server.generate_credentials().destination_account)
    assert server.connection(prefix + token) is None


def test_token_segment_is_the_first_segment_after_the_base() -> None:
    server = StreamServer(SECRET, BASE)
    assert server.token_segment(f"{BASE}.abc") == "abc"
    assert server.token_segment(f"{BASE}.abc.def") == "abc"


def test_tampered_token_is_not_recognised() -> None:
    server = StreamServer(SECRET, BASE)
    token = _token(server.generate_credentials().destination_account)
    for i in range(len(token)):
        swapped = "A" if token[i] != "A" else "B"
        assert server.connection(f"{BASE}.{token[:i]}{swapped}{token[i + 1 :]}") is None


@pytest.mark.parametrize("segment", ["", "x", "abcd", "A" * 40, "~~~~", "_-_-_-_-"])
def test_segment_that_is_no_token_of_ours_is_not_recognised(segment: str) -> None:
    server = StreamServer(SECRET, BASE)
    assert server.connection(f"{BASE}.{segment}") is None


def test_token_with_ignored_characters_inserted_is_not_recognised() -> None:
    # Lenient base64 skips '~' (a legal address character); accepting it would let one token
    # answer to many destinations, each with its own connection id.
    server = StreamServer(SECRET, BASE)
    token = _token(server.generate_credentials().destination_account)
    assert server.connection(f"{BASE}.{token}~~~~") is None
    assert server.connection(f"{BASE}.{token[:8]}~~~~{token[8:]}") is None


def test_token_with_non_canonical_trailing_bits_is_not_recognised() -> None:
    server = StreamServer(SECRET, BASE)
    while True:  # a token whose base64 has spare bits in its last character
        token = _token(server.generate_credentials().destination_account)
        if len(token) % 4:
            break
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet[alphabet.index(token[-1]) ^ 1]
    assert server.connection(f"{BASE}.{token[:-1]}{last}") is None


def test_shared_secret_is_hmac_of_the_token_bytes_under_the_derived_generator() -> None:
    credentials = StreamServer(SECRET, BASE).generate_credentials()
    segment = _token(credentials.destination_account)
    token = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    generator = hmac_sha256(SECRET, b"ilp_stream_shared_secret")
    assert credentials.shared_secret == hmac_sha256(generator, token)


def test_huge_payment_tag_does_not_fit_in_an_address() -> None:
    with pytest.raises(ValueError, match="ILP address"):
        StreamServer(SECRET, BASE).generate_credentials(payment_tag="t" * 1000)


def _address_length(tag_length: int) -> int:
    token_length = 1 + len(encode_var_octets(bytes(tag_length))) + 28
    return len(BASE) + 1 + len(base64.urlsafe_b64encode(bytes(token_length)).rstrip(b"="))


def test_longest_payment_tag_that_fits_gives_an_address_up_to_the_limit() -> None:
    server = StreamServer(SECRET, BASE)
    longest = max(n for n in range(1000) if _address_length(n) <= MAX_ADDRESS_LENGTH)
    credentials = server.generate_credentials(payment_tag="t" * longest)
    assert len(credentials.destination_account) == _address_length(longest)
    assert is_valid_address(credentials.destination_account)
    details = server.connection(credentials.destination_account)
    assert details is not None and details.payment_tag == "t" * longest
    with pytest.raises(ValueError):
        server.generate_credentials(payment_tag="t" * (longest + 1))


def test_non_ascii_payment_tag_is_refused() -> None:
    with pytest.raises(ValueError, match="ASCII"):
        StreamServer(SECRET, BASE).generate_credentials(payment_tag="café")


def test_receipt_setup_of_wrong_lengths_is_refused() -> None:
    with pytest.raises(ValueError, match="receipt"):
        StreamServer(SECRET, BASE).generate_credentials(
            receipt_setup=ReceiptSetup(bytes(15), bytes(32))
        )
    with pytest.raises(ValueError, match="receipt"):
        StreamServer(SECRET, BASE).generate_credentials(
            receipt_setup=ReceiptSetup(bytes(16), bytes(31))
        )


@pytest.mark.parametrize("scale", [-1, 256])
def test_asset_scale_outside_a_byte_is_refused(scale: int) -> None:
    with pytest.raises(ValueError, match="scale"):
        StreamServer(SECRET, BASE).generate_credentials(asset=Asset("USD", scale))


def test_server_secret_must_be_32_bytes() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        StreamServer(bytes(31), BASE)


@pytest.mark.parametrize("base", ["", "receiver", "test.", "test..x", "test.a b"])
def test_base_address_must_be_a_valid_address(base: str) -> None:
    with pytest.raises(ValueError, match="not a valid ILP address"):
        StreamServer(SECRET, base)


def test_token_is_recognised_after_the_cache_evicted_it() -> None:
    server = StreamServer(SECRET, BASE, cache_size=1)
    first = server.generate_credentials(payment_tag="first")
    second = server.generate_credentials(payment_tag="second")
    assert server.connection(first.destination_account) is not None
    assert server.connection(second.destination_account) is not None
    details = server.connection(first.destination_account)
    assert details is not None and details.payment_tag == "first"
