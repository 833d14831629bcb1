"""STREAM receipts (deprecated RFC 39) against ``stream_receipts.json``."""

from __future__ import annotations

import base64
import os
from typing import Any

import pytest
from tests.vectors import load_vector

from kiungo.ilp.oer import MAX_UINT64, encode_var_octets
from kiungo.stream.packet import (
    StreamPacket,
    StreamReceiptFrame,
    decode_stream_packet,
    encode_stream_packet,
)
from kiungo.stream.receipt import (
    RECEIPT_LENGTH,
    Receipt,
    ReceiptError,
    create_receipt,
    decode_receipt,
    verify_receipt,
)

RECEIPTS: dict[str, Any] = load_vector("stream_receipts.json")
(VECTOR,) = RECEIPTS["vectors"]
NONCE = bytes.fromhex(VECTOR["receipt_nonce_hex"])
SECRET = bytes.fromhex(VECTOR["receipt_secret_hex"])
RECEIPT = bytes.fromhex(VECTOR["receipt_hex"])
NEGATIVE = {v["name"]: v["expect"] for v in RECEIPTS["negative"]}


def test_create_receipt_gives_the_vector() -> None:
    receipt = create_receipt(NONCE, VECTOR["stream_id"], int(VECTOR["total_received"]), SECRET)
    assert receipt.hex() == VECTOR["receipt_hex"]
    assert base64.b64encode(receipt).decode() == VECTOR["receipt_base64"]


def test_receipt_is_signed_message_then_its_hmac() -> None:
    assert len(RECEIPT) == RECEIPT_LENGTH == 58
    assert RECEIPT[:26].hex() == VECTOR["hmac_message_hex"]
    assert RECEIPT[26:].hex() == VECTOR["hmac_hex"]


def test_receipt_frame_encodes_to_the_vector() -> None:
    frame = StreamReceiptFrame(VECTOR["stream_id"], RECEIPT)
    wire = bytes((frame.TYPE,)) + encode_var_octets(frame.encode_content())
    assert wire.hex() == VECTOR["stream_receipt_frame_hex"]


def test_packet_with_the_receipt_frame_encodes_and_decodes() -> None:
    expected = VECTOR["stream_packet_with_frame"]
    packet = StreamPacket(0, 12, 0, [StreamReceiptFrame(1, RECEIPT)])
    assert encode_stream_packet(packet).hex() == expected["hex"]
    assert base64.b64decode(expected["base64"]) == bytes.fromhex(expected["hex"])
    assert decode_stream_packet(bytes.fromhex(expected["hex"])) == packet
    (frame_json,) = expected["packet"]["frames"]
    assert base64.b64decode(frame_json["receipt"]) == RECEIPT


def test_vector_receipt_verifies_under_its_secret() -> None:
    assert verify_receipt(RECEIPT, SECRET) == Receipt(NONCE, 1, 500)


def test_decode_receipt_reads_fields_without_checking_the_hmac() -> None:
    forged = RECEIPT[:26] + bytes(32)
    assert decode_receipt(forged) == Receipt(NONCE, 1, 500)


def test_57_byte_receipt_is_malformed() -> None:
    assert "receipt malformed" in NEGATIVE["57-byte receipt"]
    with pytest.raises(ReceiptError, match="receipt malformed"):
        verify_receipt(RECEIPT[:57], SECRET)


def test_58_zero_bytes_have_an_invalid_version() -> None:
    assert "invalid version" in NEGATIVE["58 zero bytes"]
    with pytest.raises(ReceiptError, match="invalid version"):
        verify_receipt(bytes(58), SECRET)


def test_receipt_under_another_secret_has_an_invalid_hmac() -> None:
    assert "invalid hmac" in NEGATIVE["valid receipt, random 32-byte secret"]
    with pytest.raises(ReceiptError, match="invalid hmac"):
        verify_receipt(RECEIPT, os.urandom(32))


def test_tampering_with_any_receipt_byte_fails_verification() -> None:
    for i in range(len(RECEIPT)):
        tampered = bytearray(RECEIPT)
        tampered[i] ^= 0x01
        with pytest.raises(ReceiptError):
            verify_receipt(bytes(tampered), SECRET)


def test_receipt_with_trailing_bytes_is_malformed() -> None:
    with pytest.raises(ReceiptError, match="receipt malformed"):
        verify_receipt(RECEIPT + b"\x00", SECRET)


def test_receipt_round_trips_the_largest_total() -> None:
    receipt = create_receipt(NONCE, 255, MAX_UINT64, SECRET)
    assert verify_receipt(receipt, SECRET) == Receipt(NONCE, 255, MAX_UINT64)


@pytest.mark.parametrize(
    ("nonce", "stream_id", "total", "secret"),
    [
        (bytes(15), 1, 0, bytes(32)),
        (bytes(16), 1, 0, bytes(31)),
        (bytes(16), 256, 0, bytes(32)),
        (bytes(16), -1, 0, bytes(32)),
        (bytes(16), 1, MAX_UINT64 + 1, bytes(32)),
        (bytes(16), 1, -1, bytes(32)),
    ],
)
def test_create_receipt_refuses_out_of_range_inputs(
    nonce: bytes, stream_id: int, total: int, secret: bytes
) -> None:
    with pytest.raises(ValueError):
        create_receipt(nonce, stream_id, total, secret)
