"""STREAM cryptography (RFC 29 §5.2) against ``stream_crypto.json`` and ``stream_e2e_prepare.json``.

Key derivation, the AES-256-GCM envelope ``iv || tag || ciphertext``, fulfillment and condition,
and one real Prepare from the JS client followed from its address token to its STREAM packet.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from tests.vectors import load_vector

from kiungo.ilp.packet import decode_prepare
from kiungo.stream.crypto import (
    ENCRYPTION_OVERHEAD,
    DecryptionError,
    StreamKeys,
    condition_for,
    decrypt,
    derive_shared_secret,
    encrypt,
    hmac_sha256,
)
from kiungo.stream.packet import (
    Frame,
    StreamMaxDataFrame,
    StreamMaxMoneyFrame,
    StreamMoneyFrame,
    StreamPacket,
    decode_stream_packet,
)

CRYPTO: dict[str, Any] = load_vector("stream_crypto.json")
E2E: dict[str, Any] = load_vector("stream_e2e_prepare.json")
DERIVATION: list[dict[str, Any]] = CRYPTO["hmac_key_derivation"]
AES_JS, AES_RS = CRYPTO["aes_gcm"]
(FULFILLMENT,) = CRYPTO["fulfillment"]


def test_encryption_key_is_hmac_of_the_shared_secret() -> None:
    vector = DERIVATION[0]
    key = hmac_sha256(vector["shared_secret_utf8"].encode(), b"ilp_stream_encryption")
    assert key.hex() == vector["expected_hex"]


def test_fulfillment_key_is_hmac_of_the_shared_secret() -> None:
    vector = DERIVATION[1]
    key = hmac_sha256(vector["shared_secret_utf8"].encode(), b"ilp_stream_fulfillment")
    assert key.hex() == vector["expected_hex"]


def test_fulfillment_is_hmac_of_the_data_under_the_fulfillment_key() -> None:
    vector = DERIVATION[2]
    key = bytes.fromhex(vector["fulfillment_key_hex"])
    assert hmac_sha256(key, vector["data_utf8"].encode()).hex() == vector["expected_hex"]


def test_condition_is_sha256_of_the_fulfillment() -> None:
    vector = DERIVATION[3]
    assert condition_for(bytes.fromhex(vector["fulfillment_hex"])).hex() == vector["expected_hex"]


def test_stream_keys_derive_both_keys_from_the_shared_secret() -> None:
    keys = StreamKeys(bytes.fromhex(FULFILLMENT["shared_secret_hex"]))
    assert keys.encryption_key.hex() == AES_RS["encryption_key_derived_hex"]
    assert keys.fulfillment_key.hex() == FULFILLMENT["fulfillment_key_derived_hex"]


@pytest.mark.parametrize("length", [0, 16, 31, 33])
def test_stream_keys_need_a_32_byte_shared_secret(length: int) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        StreamKeys(bytes(length))


def test_envelope_from_ilp_protocol_stream_decrypts() -> None:
    cipher = AESGCM(bytes.fromhex(AES_JS["encryption_key_hex"]))
    plain = decrypt(cipher, bytes.fromhex(AES_JS["envelope_hex"]))
    assert plain.decode() == AES_JS["plaintext_utf8"]


def test_encrypting_with_the_js_vector_iv_gives_its_envelope() -> None:
    cipher = AESGCM(bytes.fromhex(AES_JS["encryption_key_hex"]))
    envelope = encrypt(
        cipher, AES_JS["plaintext_utf8"].encode(), iv=bytes.fromhex(AES_JS["nonce_hex"])
    )
    assert envelope.hex() == AES_JS["envelope_hex"]


def test_envelope_is_iv_then_tag_then_ciphertext() -> None:
    envelope = bytes.fromhex(AES_JS["envelope_hex"])
    assert envelope.hex() == AES_JS["nonce_hex"] + AES_JS["tag_hex"] + AES_JS["ciphertext_hex"]
    assert len(envelope) == ENCRYPTION_OVERHEAD + len(AES_JS["plaintext_utf8"])


def test_envelope_from_interledger_rs_decrypts_with_stream_keys() -> None:
    keys = StreamKeys(bytes.fromhex(AES_RS["shared_secret_hex"]))
    assert keys.decrypt(bytes.fromhex(AES_RS["envelope_hex"])).hex() == AES_RS["plaintext_hex"]


def test_stream_keys_encrypt_with_the_rs_vector_iv_gives_its_envelope() -> None:
    keys = StreamKeys(bytes.fromhex(AES_RS["shared_secret_hex"]))
    envelope = keys.encrypt(
        bytes.fromhex(AES_RS["plaintext_hex"]), iv=bytes.fromhex(AES_RS["nonce_hex"])
    )
    assert envelope.hex() == AES_RS["envelope_hex"]


def test_encrypt_without_iv_uses_a_fresh_random_iv() -> None:
    keys = StreamKeys(bytes(32))
    first, second = keys.encrypt(b"same"), keys.encrypt(b"same")
    assert first[:12] != second[:12]
    assert keys.decrypt(first) == keys.decrypt(second) == b"same"


@pytest.mark.parametrize("length", [8, 11, 13, 16])
def test_encrypt_refuses_an_iv_that_is_not_12_bytes(length: int) -> None:
    # The envelope has no room to say how long its IV is: any other length could not be opened.
    with pytest.raises(ValueError, match="12"):
        StreamKeys(bytes(32)).encrypt(b"x", iv=bytes(length))


def test_envelope_under_another_key_does_not_decrypt() -> None:
    envelope = StreamKeys(bytes(32)).encrypt(b"hello")
    with pytest.raises(DecryptionError):
        StreamKeys(bytes([1]) * 32).decrypt(envelope)


def test_tampering_with_any_envelope_byte_fails_decryption() -> None:
    keys = StreamKeys(bytes.fromhex(AES_RS["shared_secret_hex"]))
    envelope = bytes.fromhex(AES_RS["envelope_hex"])
    for i in range(len(envelope)):
        tampered = bytearray(envelope)
        tampered[i] ^= 0x01
        with pytest.raises(DecryptionError):
            keys.decrypt(bytes(tampered))


@pytest.mark.parametrize("length", [0, 1, 27])
def test_envelope_shorter_than_iv_and_tag_does_not_decrypt(length: int) -> None:
    with pytest.raises(DecryptionError):
        StreamKeys(bytes(32)).decrypt(bytes(length))


def test_empty_plaintext_is_an_envelope_of_28_bytes() -> None:
    keys = StreamKeys(bytes(32))
    envelope = keys.encrypt(b"")
    assert len(envelope) == ENCRYPTION_OVERHEAD
    assert keys.decrypt(envelope) == b""


def test_fulfillment_is_hmac_over_the_encrypted_data() -> None:
    keys = StreamKeys(bytes.fromhex(FULFILLMENT["shared_secret_hex"]))
    data = bytes.fromhex(FULFILLMENT["data_hex"])
    assert keys.fulfillment(data).hex() == FULFILLMENT["fulfillment_hex"]


def test_stream_keys_condition_is_sha256_of_the_fulfillment() -> None:
    keys = StreamKeys(bytes.fromhex(FULFILLMENT["shared_secret_hex"]))
    data = bytes.fromhex(FULFILLMENT["data_hex"])
    assert keys.condition(data).hex() == FULFILLMENT["condition_derived_hex"]
    assert (
        hashlib.sha256(keys.fulfillment(data)).hexdigest() == FULFILLMENT["condition_derived_hex"]
    )


# The end-to-end Prepare from the JS client that interledger-rs fulfills.
E2E_IN: dict[str, Any] = E2E["in_source"]
E2E_FIELDS: dict[str, Any] = E2E["prepare_fields"]
E2E_DERIVED: dict[str, Any] = E2E["derived"]


def _e2e_frame(obj: dict[str, Any]) -> Frame:
    """The three frame kinds the e2e STREAM packet holds, from its JSON."""
    if obj["name"] == "StreamMaxMoney":
        return StreamMaxMoneyFrame(
            int(obj["streamId"]), int(obj["receiveMax"]), int(obj["totalReceived"])
        )
    if obj["name"] == "StreamMaxData":
        return StreamMaxDataFrame(int(obj["streamId"]), int(obj["maxOffset"]))
    assert obj["name"] == "StreamMoney"
    return StreamMoneyFrame(int(obj["streamId"]), int(obj["shares"]))


def _e2e_keys() -> StreamKeys:
    token = E2E_FIELDS["destination"].rsplit(".", 1)[1]
    secret = derive_shared_secret(bytes.fromhex(E2E_IN["server_secret_hex"]), token.encode("ascii"))
    return StreamKeys(secret)


def test_e2e_prepare_decodes_to_its_fields() -> None:
    prepare = decode_prepare(bytes.fromhex(E2E_IN["prepare_hex"]))
    assert prepare.amount == int(E2E_FIELDS["amount"])
    assert prepare.execution_condition.hex() == E2E_FIELDS["executionCondition_hex"]
    assert prepare.destination == E2E_FIELDS["destination"]
    assert prepare.data.hex() == E2E_FIELDS["data_hex"]


def test_e2e_shared_secret_derives_from_server_secret_and_token() -> None:
    keys = _e2e_keys()
    assert keys.shared_secret.hex() == E2E_IN["expected_shared_secret_hex"]
    generator = hmac_sha256(bytes.fromhex(E2E_IN["server_secret_hex"]), b"ilp_stream_shared_secret")
    assert generator.hex() == E2E_DERIVED["shared_secret_generator_hex"]


def test_e2e_keys_and_fulfillment_match_the_prepare_condition() -> None:
    keys = _e2e_keys()
    data = bytes.fromhex(E2E_FIELDS["data_hex"])
    assert keys.encryption_key.hex() == E2E_DERIVED["encryption_key_hex"]
    assert keys.fulfillment_key.hex() == E2E_DERIVED["fulfillment_key_hex"]
    assert keys.fulfillment(data).hex() == E2E_DERIVED["fulfillment_hex"]
    assert keys.condition(data).hex() == E2E_FIELDS["executionCondition_hex"]


def test_e2e_prepare_data_decrypts_to_its_stream_packet() -> None:
    plain = _e2e_keys().decrypt(bytes.fromhex(E2E_FIELDS["data_hex"]))
    assert plain.hex() == E2E_DERIVED["stream_plaintext_hex"]
    expected = E2E_DERIVED["stream_packet"]
    assert plain[0] == expected["version"]
    assert decode_stream_packet(plain) == StreamPacket(
        sequence=int(expected["sequence"]),
        ilp_packet_type=expected["packetType"],
        prepare_amount=int(expected["prepareAmount"]),
        frames=[_e2e_frame(f) for f in expected["frames"]],
    )
