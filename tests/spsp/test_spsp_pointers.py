"""Payment pointers and the SPSP response body, against the public vectors."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from tests.vectors import load_vector

from kiungo.spsp import (
    InvalidPaymentPointer,
    InvalidReceiptHeaders,
    InvalidSpspResponse,
    SpspResponse,
    accepts_spsp,
    normalise_pointer,
    parse_payment_pointer,
    parse_receipt_headers,
    resolve_receiver,
    url_to_pointer,
)

POINTERS = load_vector("payment_pointers.json")
SECRET = bytes(range(32))


@pytest.mark.parametrize("vector", POINTERS["resolve"], ids=lambda v: v["pointer"])
def test_pointer_resolves_to_its_url(vector: dict[str, Any]) -> None:
    assert parse_payment_pointer(vector["pointer"]) == vector["url"]


@pytest.mark.parametrize("vector", POINTERS["invalid"], ids=lambda v: v["pointer"])
def test_invalid_pointer_is_refused(vector: dict[str, Any]) -> None:
    with pytest.raises(InvalidPaymentPointer):
        parse_payment_pointer(vector["pointer"])


@pytest.mark.parametrize("vector", POINTERS["url_to_pointer"], ids=lambda v: v["url"])
def test_url_maps_to_pointer_or_none(vector: dict[str, Any]) -> None:
    assert url_to_pointer(vector["url"]) == vector["pointer"]


@pytest.mark.parametrize("vector", POINTERS["pointer_normalisation"], ids=lambda v: v["pointer"])
def test_pointer_normalisation(vector: dict[str, Any]) -> None:
    assert normalise_pointer(vector["pointer"]) == vector["canonical"]


@pytest.mark.parametrize("pointer", ["$", "$ example.com", "$exa mple.com/x", "$:80", "$/x"])
def test_malformed_pointers_are_refused(pointer: str) -> None:
    with pytest.raises(InvalidPaymentPointer):
        parse_payment_pointer(pointer)


def test_trailing_slash_is_dropped_when_resolving() -> None:
    assert parse_payment_pointer("$example.com/charlie/") == "https://example.com/charlie"


def test_receiver_urls_https_anywhere_http_only_on_loopback() -> None:
    assert resolve_receiver("https://wallet.example/alice") == "https://wallet.example/alice"
    assert resolve_receiver("http://127.0.0.1:3002/alice") == "http://127.0.0.1:3002/alice"
    with pytest.raises(InvalidPaymentPointer):
        resolve_receiver("http://wallet.example/alice")
    assert resolve_receiver("http://wallet.example/a", allow_http=True) == "http://wallet.example/a"
    with pytest.raises(InvalidPaymentPointer):
        resolve_receiver("ftp://wallet.example/alice")


def test_response_is_emitted_with_padded_standard_base64() -> None:
    body = SpspResponse("g.kiungo.alice.token", b"\xfb" * 32, True).to_json()
    assert body == {
        "destination_account": "g.kiungo.alice.token",
        "shared_secret": base64.b64encode(b"\xfb" * 32).decode(),
        "receipts_enabled": True,
    }
    assert body["shared_secret"].endswith("=")
    assert "receipts_enabled" not in SpspResponse("g.kiungo.a", SECRET).to_json()


@pytest.mark.parametrize(
    "encode",
    [
        lambda b: base64.b64encode(b).decode(),
        lambda b: base64.b64encode(b).decode().rstrip("="),
        lambda b: base64.urlsafe_b64encode(b).decode(),
        lambda b: base64.urlsafe_b64encode(b).decode().rstrip("="),
    ],
    ids=["standard", "standard-unpadded", "url", "url-unpadded"],
)
def test_response_secret_is_read_in_both_alphabets(encode: Any) -> None:
    secret = b"\xfb\xff" * 16
    body = {"destination_account": "g.x.y", "shared_secret": encode(secret), "extra": 1}
    assert SpspResponse.from_json(body) == SpspResponse("g.x.y", secret, None)


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"shared_secret": base64.b64encode(SECRET).decode()},
        {
            "destination_account": "not an address",
            "shared_secret": base64.b64encode(SECRET).decode(),
        },
        {"destination_account": "g.x", "shared_secret": base64.b64encode(SECRET[:31]).decode()},
        {"destination_account": "g.x", "shared_secret": "not base64!"},
        {"destination_account": "g.x", "shared_secret": 5},
        {
            "destination_account": "g.x",
            "shared_secret": base64.b64encode(SECRET).decode(),
            "receipts_enabled": "yes",
        },
    ],
)
def test_unusable_responses_are_refused(body: object) -> None:
    with pytest.raises(InvalidSpspResponse):
        SpspResponse.from_json(body)


def test_accept_header_must_name_spsp4() -> None:
    assert accepts_spsp("application/spsp4+json, application/spsp+json")
    assert accepts_spsp("application/json, application/spsp4+json;q=0.9")
    assert not accepts_spsp("application/json")
    assert not accepts_spsp(None)


def test_receipt_headers_both_or_neither_with_exact_lengths() -> None:
    nonce = base64.b64encode(bytes(16)).decode()
    secret = base64.b64encode(bytes(32)).decode()
    assert parse_receipt_headers(None, None) is None
    assert parse_receipt_headers(nonce, secret) == (bytes(16), bytes(32))
    for bad in [(nonce, None), (None, secret), (secret, secret), (nonce, nonce), ("%%", secret)]:
        with pytest.raises(InvalidReceiptHeaders):
            parse_receipt_headers(*bad)
