"""ILP error codes (RFC 27 §3.3) as exceptions, and the F08 data against ``ilp_error_data.json``."""

from __future__ import annotations

from typing import Any

import pytest
from tests.vectors import load_vector

from kiungo.ilp.errors import (
    AmountTooLargeError,
    IlpError,
    decode_amount_too_large_data,
    encode_amount_too_large_data,
    error_class_for_code,
)
from kiungo.ilp.oer import DecodeError
from kiungo.ilp.packet import Reject, decode_reply, encode_packet

ERROR_DATA: list[dict[str, Any]] = load_vector("ilp_error_data.json")["vectors"]
OUR_ADDRESS = "test.us"

# RFC 27 §3.3, code and name.
RFC27_CODES = [
    ("F00", "Bad Request"),
    ("F01", "Invalid Packet"),
    ("F02", "Unreachable"),
    ("F03", "Invalid Amount"),
    ("F04", "Insufficient Destination Amount"),
    ("F05", "Wrong Condition"),
    ("F06", "Unexpected Payment"),
    ("F07", "Cannot Receive"),
    ("F08", "Amount Too Large"),
    ("F99", "Application Error"),
    ("T00", "Internal Error"),
    ("T01", "Peer Unreachable"),
    ("T02", "Peer Busy"),
    ("T03", "Connector Busy"),
    ("T04", "Insufficient Liquidity"),
    ("T05", "Rate Limited"),
    ("T99", "Application Error"),
    ("R00", "Transfer Timed Out"),
    ("R01", "Insufficient Source Amount"),
    ("R02", "Insufficient Timeout"),
    ("R99", "Application Error"),
]
SIMPLE_CODES = [code for code, _ in RFC27_CODES if code != "F08"]


def error_for(code: str, message: str = "") -> IlpError:
    cls = error_class_for_code(code)
    assert cls is not None
    return cls(message)


@pytest.mark.parametrize(("code", "name"), RFC27_CODES)
def test_every_rfc27_code_has_its_class(code: str, name: str) -> None:
    cls = error_class_for_code(code)
    assert cls is not None
    assert issubclass(cls, IlpError)
    assert (cls.code, cls.name) == (code, name)


def test_each_rfc27_code_has_a_distinct_class() -> None:
    assert len({error_class_for_code(code) for code, _ in RFC27_CODES}) == len(RFC27_CODES)


@pytest.mark.parametrize("code", ["F09", "T42", "X00", "f00", ""])
def test_code_outside_rfc27_has_no_class(code: str) -> None:
    assert error_class_for_code(code) is None


@pytest.mark.parametrize("code", SIMPLE_CODES)
def test_to_reject_carries_our_address_code_and_message(code: str) -> None:
    reject = error_for(code, "something went wrong").to_reject(OUR_ADDRESS)
    assert reject == Reject(code, OUR_ADDRESS, "something went wrong", b"")


@pytest.mark.parametrize("code", SIMPLE_CODES)
def test_error_reject_survives_the_wire(code: str) -> None:
    reject = error_for(code, "why").to_reject(OUR_ADDRESS)
    assert decode_reply(encode_packet(reject)) == reject


def test_error_data_goes_into_the_reject() -> None:
    error = IlpError("stream says no", b"\x01\x02")
    assert error.to_reject(OUR_ADDRESS).data == b"\x01\x02"


def test_plain_ilp_error_is_a_bad_request() -> None:
    assert IlpError("oops").to_reject(OUR_ADDRESS).code == "F00"


@pytest.mark.parametrize(
    ("code", "final", "temporary", "relative"),
    [(code, code[0] == "F", code[0] == "T", code[0] == "R") for code, _ in RFC27_CODES],
)
def test_rfc27_error_is_classified_by_its_letter(
    code: str, final: bool, temporary: bool, relative: bool
) -> None:
    cls = error_class_for_code(code)
    assert cls is not None
    error = cls(0, 0) if cls is AmountTooLargeError else cls()
    assert (error.is_final, error.is_temporary, error.is_relative) == (final, temporary, relative)


@pytest.mark.parametrize(
    ("code", "final", "temporary", "relative"),
    [
        ("F09", True, False, False),
        ("T42", False, True, False),
        ("R10", False, False, True),
        ("X00", False, False, False),
    ],
)
def test_unknown_code_is_classified_by_its_letter(
    code: str, final: bool, temporary: bool, relative: bool
) -> None:
    error = IlpError("from downstream", code=code)
    assert (error.is_final, error.is_temporary, error.is_relative) == (final, temporary, relative)


def test_unknown_code_is_kept_in_the_reject() -> None:
    reject = IlpError("invalid peer response", code="F09").to_reject(OUR_ADDRESS)
    assert reject.code == "F09"
    assert decode_reply(encode_packet(reject)) == reject


def test_code_override_does_not_leak_into_the_class() -> None:
    IlpError(code="T42")
    assert IlpError.code == "F00"
    assert IlpError().to_reject(OUR_ADDRESS).code == "F00"


@pytest.mark.parametrize("vector", ERROR_DATA, ids=lambda v: v["name"])
def test_amount_too_large_reject_carries_the_vector_data(vector: dict[str, str]) -> None:
    received, maximum = int(vector["receivedAmount"]), int(vector["maximumAmount"])
    reject = AmountTooLargeError(received, maximum).to_reject(OUR_ADDRESS)
    assert (reject.code, reject.triggered_by) == ("F08", OUR_ADDRESS)
    assert reject.data.hex() == vector["hex"]


@pytest.mark.parametrize("vector", ERROR_DATA, ids=lambda v: v["name"])
def test_amount_too_large_data_decodes_from_the_vector(vector: dict[str, str]) -> None:
    assert decode_amount_too_large_data(bytes.fromhex(vector["hex"])) == (
        int(vector["receivedAmount"]),
        int(vector["maximumAmount"]),
    )


@pytest.mark.parametrize("vector", ERROR_DATA, ids=lambda v: v["name"])
def test_amount_too_large_data_encodes_to_the_vector(vector: dict[str, str]) -> None:
    data = encode_amount_too_large_data(int(vector["receivedAmount"]), int(vector["maximumAmount"]))
    assert data.hex() == vector["hex"]


def test_amount_too_large_error_keeps_its_amounts() -> None:
    error = AmountTooLargeError(255, 65535)
    assert (error.received_amount, error.maximum_amount) == (255, 65535)
    assert error.is_final


def test_amount_too_large_data_survives_the_wire() -> None:
    reject = AmountTooLargeError(197121, 394500).to_reject(OUR_ADDRESS)
    decoded = decode_reply(encode_packet(reject))
    assert isinstance(decoded, Reject)
    assert decode_amount_too_large_data(decoded.data) == (197121, 394500)


def test_amount_too_large_data_ignores_trailing_bytes() -> None:
    data = bytes.fromhex(ERROR_DATA[0]["hex"]) + b"\xff"
    assert decode_amount_too_large_data(data) == (255, 65535)


def test_short_amount_too_large_data_is_refused() -> None:
    with pytest.raises(DecodeError):
        decode_amount_too_large_data(bytes(15))
