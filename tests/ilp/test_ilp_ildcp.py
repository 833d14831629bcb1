"""IL-DCP (RFC 31) against ``ildcp.json`` (ilp-protocol-ildcp's tests, clock 2015-06-16T00:00Z)."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from tests.vectors import load_vector

from kiungo.ilp.errors import IlpError
from kiungo.ilp.ildcp import (
    ILDCP_DESTINATION,
    IldcpError,
    IldcpResponse,
    build_request,
    build_response,
    is_request,
    parse_response,
    validate_request,
)
from kiungo.ilp.oer import encode_var_octets
from kiungo.ilp.packet import (
    PEER_PROTOCOL_CONDITION,
    PEER_PROTOCOL_FULFILLMENT,
    Fulfill,
    PacketType,
    Reject,
    decode_prepare,
    decode_reply,
    encode_packet,
)

ILDCP: dict[str, Any] = load_vector("ildcp.json")
CONSTANTS: dict[str, str] = ILDCP["constants"]
VECTORS = {v["name"]: v for v in ILDCP["vectors"]}
NOW = datetime(2015, 6, 16, tzinfo=UTC)

REQUEST = VECTORS["IL-DCP request (serializeIldcpRequest({}))"]
REQUEST_1234 = VECTORS["IL-DCP request with expiresAt = START+1234 ms"]
RESPONSE = VECTORS["IL-DCP response"]
SERVE_REJECTS = [v for v in ILDCP["vectors"] if v["name"].startswith("serve():")]
INVALID_REQUESTS = [v for v in ILDCP["invalid"] if v["hex"][:2] == "0c"]
INVALID_RESPONSES = [v for v in ILDCP["invalid"] if v["hex"][:2] == "0d"]
EXAMPLE_RESPONSE = IldcpResponse("example.client", 13, "XAM")


def expected_error(vector: dict[str, str]) -> str:
    """The JS error text, without its final full stop, as a regex."""
    return re.escape(vector["expect"].rstrip("."))


def test_constants_match_the_reference() -> None:
    assert CONSTANTS["destination"] == ILDCP_DESTINATION
    assert PEER_PROTOCOL_CONDITION.hex() == CONSTANTS["condition_hex"]
    assert PEER_PROTOCOL_FULFILLMENT.hex() == CONSTANTS["fulfillment_hex"]


def test_request_encodes_to_the_vector() -> None:
    assert encode_packet(build_request(NOW)).hex() == REQUEST["hex"]


def test_request_vector_decodes_to_its_fields() -> None:
    prepare = decode_prepare(bytes.fromhex(REQUEST["hex"]))
    fields = REQUEST["fields"]
    assert prepare.amount == int(fields["amount"]) == int(CONSTANTS["request_amount"])
    assert prepare.expires_at == datetime.fromisoformat(fields["expiresAt"])
    assert prepare.destination == fields["destination"]
    assert prepare.data.hex() == fields["data_hex"] == CONSTANTS["request_data_hex"]
    assert prepare.execution_condition == PEER_PROTOCOL_CONDITION
    assert prepare == build_request(NOW)


def test_request_with_custom_expiry_encodes_to_the_vector() -> None:
    expires_at = datetime.fromisoformat(REQUEST_1234["fields"]["expiresAt"])
    assert expires_at == NOW + timedelta(milliseconds=1234)
    prepare = dataclasses.replace(build_request(NOW), expires_at=expires_at)
    assert encode_packet(prepare).hex() == REQUEST_1234["hex"]


@pytest.mark.parametrize("vector", [REQUEST, REQUEST_1234], ids=lambda v: v["name"])
def test_vector_request_is_recognised_and_valid(vector: dict[str, Any]) -> None:
    prepare = decode_prepare(bytes.fromhex(vector["hex"]))
    assert is_request(prepare)
    validate_request(prepare, NOW)


def test_request_expiring_exactly_now_is_expired() -> None:
    prepare = build_request(NOW)
    with pytest.raises(IldcpError, match="expired"):
        validate_request(prepare, prepare.expires_at)


def test_response_encodes_to_the_vector() -> None:
    assert encode_packet(build_response(EXAMPLE_RESPONSE)).hex() == RESPONSE["hex"]


def test_response_vector_decodes_to_its_fields() -> None:
    fulfill = decode_reply(bytes.fromhex(RESPONSE["hex"]))
    fields = RESPONSE["fields"]
    assert fulfill == Fulfill(
        bytes.fromhex(fields["fulfillment_hex"]), bytes.fromhex(fields["data_hex"])
    )
    assert parse_response(fulfill) == IldcpResponse(
        fields["clientAddress"], fields["assetScale"], fields["assetCode"]
    )


@pytest.mark.parametrize("vector", SERVE_REJECTS, ids=lambda v: v["name"])
def test_serve_reject_encodes_to_the_vector(vector: dict[str, Any]) -> None:
    fields = vector["fields"]
    reject = IlpError(fields["message"]).to_reject(fields["triggeredBy"])
    assert encode_packet(reject).hex() == vector["hex"]


@pytest.mark.parametrize("vector", SERVE_REJECTS, ids=lambda v: v["name"])
def test_serve_reject_vector_decodes_to_its_fields(vector: dict[str, Any]) -> None:
    fields = vector["fields"]
    assert decode_reply(bytes.fromhex(vector["hex"])) == Reject(
        fields["code"], fields["triggeredBy"], fields["message"], bytes.fromhex(fields["data_hex"])
    )


@pytest.mark.parametrize("vector", INVALID_REQUESTS, ids=lambda v: v["name"])
def test_invalid_request_is_refused_with_the_reference_reason(vector: dict[str, str]) -> None:
    prepare = decode_prepare(bytes.fromhex(vector["hex"]))
    with pytest.raises(IldcpError, match=expected_error(vector)):
        validate_request(prepare, NOW)


@pytest.mark.parametrize("vector", INVALID_RESPONSES, ids=lambda v: v["name"])
def test_invalid_response_is_refused_with_the_reference_reason(vector: dict[str, str]) -> None:
    fulfill = decode_reply(bytes.fromhex(vector["hex"]))
    assert isinstance(fulfill, Fulfill)
    with pytest.raises(IldcpError, match=expected_error(vector)):
        parse_response(fulfill)


def test_every_invalid_vector_is_covered() -> None:
    assert len(INVALID_REQUESTS) + len(INVALID_RESPONSES) == len(ILDCP["invalid"])


def test_other_destination_is_not_a_request() -> None:
    (wrong,) = [v for v in INVALID_REQUESTS if "peer.bonfig" in v["name"]]
    assert not is_request(decode_prepare(bytes.fromhex(wrong["hex"])))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        encode_var_octets(b"example.client"),
        encode_var_octets(b"example.client") + b"\x0d",
        encode_var_octets(b"example.client") + b"\x0d\x05XA",
        encode_var_octets(b"example.cli\xe9nt") + b"\x0d" + encode_var_octets(b"XAM"),
        encode_var_octets(b"example.client") + b"\x0d" + encode_var_octets(b"\xff"),
    ],
    ids=["empty", "no scale", "no code", "short code", "non-ASCII address", "non-UTF-8 code"],
)
def test_malformed_response_data_is_refused(data: bytes) -> None:
    with pytest.raises(IldcpError, match="malformed"):
        parse_response(Fulfill(PEER_PROTOCOL_FULFILLMENT, data))


def test_response_with_invalid_address_is_refused() -> None:
    data = encode_var_octets(b"example") + b"\x0d" + encode_var_octets(b"XAM")
    with pytest.raises(IldcpError, match="not a valid ILP address"):
        parse_response(Fulfill(PEER_PROTOCOL_FULFILLMENT, data))


def test_response_asset_code_may_be_any_utf8() -> None:
    response = IldcpResponse("example.client", 0, "€uro")
    assert parse_response(build_response(response)) == response


@pytest.mark.parametrize(
    "response",
    [
        IldcpResponse("example", 9, "USD"),
        IldcpResponse("example.client", 256, "USD"),
        IldcpResponse("example.client", -1, "USD"),
    ],
)
def test_response_that_cannot_be_encoded_is_refused(response: IldcpResponse) -> None:
    with pytest.raises(ValueError):
        build_response(response)


def test_response_is_a_fulfill_of_the_peer_protocol() -> None:
    encoded = encode_packet(build_response(EXAMPLE_RESPONSE))
    assert encoded[0] == PacketType.FULFILL
    fulfill = decode_reply(encoded)
    assert isinstance(fulfill, Fulfill)
    assert fulfill.fulfillment == PEER_PROTOCOL_FULFILLMENT
