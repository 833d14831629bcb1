"""STREAM cryptography (RFC 29 §5.2): key derivation, the AES-256-GCM envelope, fulfillments.

The envelope is ``iv (12) || tag (16) || ciphertext`` with no additional data; Python's AESGCM
returns ``ciphertext || tag``, so the two are swapped here. The fulfillment is an HMAC over the
*encrypted* ILP data, and the condition is its SHA-256.
"""

from __future__ import annotations

import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "ENCRYPTION_OVERHEAD",
    "DecryptionError",
    "StreamKeys",
    "condition_for",
    "decrypt",
    "derive_shared_secret",
    "encrypt",
    "hmac_sha256",
    "random_condition",
]

IV_LENGTH = 12
TAG_LENGTH = 16
ENCRYPTION_OVERHEAD = IV_LENGTH + TAG_LENGTH

_ENCRYPTION_STRING = b"ilp_stream_encryption"
_FULFILLMENT_STRING = b"ilp_stream_fulfillment"
_SHARED_SECRET_STRING = b"ilp_stream_shared_secret"


class DecryptionError(ValueError):
    """Data that does not authenticate under the key (wrong secret, tampered, or too short)."""


def hmac_sha256(key: bytes, message: bytes) -> bytes:
    return hmac.digest(key, message, "sha256")


def derive_shared_secret(server_secret: bytes, token: bytes) -> bytes:
    """The connection's shared secret from the server secret and its address token."""
    return hmac_sha256(hmac_sha256(server_secret, _SHARED_SECRET_STRING), token)


def encrypt(cipher: AESGCM, plaintext: bytes, iv: bytes | None = None) -> bytes:
    if iv is None:
        iv = os.urandom(IV_LENGTH)
    elif len(iv) != IV_LENGTH:
        # AESGCM takes other lengths, but the envelope's layout fixes the IV at 12 bytes.
        raise ValueError(f"a STREAM IV is {IV_LENGTH} bytes")
    sealed = cipher.encrypt(iv, plaintext, None)
    return iv + sealed[-TAG_LENGTH:] + sealed[:-TAG_LENGTH]


def decrypt(cipher: AESGCM, envelope: bytes) -> bytes:
    if len(envelope) < ENCRYPTION_OVERHEAD:
        raise DecryptionError("ciphertext is shorter than the IV and tag")
    iv = envelope[:IV_LENGTH]
    tag = envelope[IV_LENGTH:ENCRYPTION_OVERHEAD]
    try:
        return cipher.decrypt(iv, envelope[ENCRYPTION_OVERHEAD:] + tag, None)
    except InvalidTag:
        raise DecryptionError("data does not authenticate with this key") from None


def condition_for(fulfillment: bytes) -> bytes:
    return hashlib.sha256(fulfillment).digest()


def random_condition() -> bytes:
    """A condition nobody can fulfill: unfulfillable test packets and closes use it."""
    return os.urandom(32)


class StreamKeys:
    """The keys of one STREAM connection, derived once from its shared secret."""

    __slots__ = ("_cipher", "encryption_key", "fulfillment_key", "shared_secret")

    def __init__(self, shared_secret: bytes) -> None:
        if len(shared_secret) != 32:
            raise ValueError("a STREAM shared secret is 32 bytes")
        self.shared_secret = shared_secret
        self.encryption_key = hmac_sha256(shared_secret, _ENCRYPTION_STRING)
        self.fulfillment_key = hmac_sha256(shared_secret, _FULFILLMENT_STRING)
        self._cipher = AESGCM(self.encryption_key)

    def encrypt(self, plaintext: bytes, iv: bytes | None = None) -> bytes:
        return encrypt(self._cipher, plaintext, iv)

    def decrypt(self, envelope: bytes) -> bytes:
        return decrypt(self._cipher, envelope)

    def fulfillment(self, data: bytes) -> bytes:
        """The fulfillment for a Prepare carrying ``data`` (the encrypted envelope)."""
        return hmac.digest(self.fulfillment_key, data, "sha256")

    def condition(self, data: bytes) -> bytes:
        return hashlib.sha256(hmac.digest(self.fulfillment_key, data, "sha256")).digest()
