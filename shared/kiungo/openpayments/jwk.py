"""Ed25519 keys as Open Payments names them: public keys as JWKs, private keys as PEM files.

A wallet address's keys are published at ``<wallet address>/jwks.json`` as
``{"keys": [{"kid", "kty": "OKP", "crv": "Ed25519", "x", "alg": "EdDSA", "use": "sig"}]}``
(RFC 8037 OKP keys; ``x`` is the raw 32-byte public key, base64url without padding). Rafiki's
``generateJwk`` writes the same members without ``use``, and its JWK input type makes ``use``
optional, so :func:`jwk_to_public_key` accepts a JWK without it but refuses any other ``use``.

Private keys are what ``@interledger/http-signature-utils`` loads for Rafiki's
``PRIVATE_KEY_FILE``: PEM, PKCS#8 (``-----BEGIN PRIVATE KEY-----``), unencrypted, Ed25519 only.
Its ``loadBase64Key`` takes the same PEM text base64-encoded, for keys passed in environment
variables.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

__all__ = [
    "InvalidJwk",
    "InvalidPrivateKey",
    "jwk_to_public_key",
    "load_base64_private_key",
    "load_private_key_pem",
    "private_key_to_pem",
    "public_key_to_jwk",
]

MAX_KID_LENGTH = 1024


class InvalidJwk(ValueError):
    """The JWK is not an Ed25519 signing key as Open Payments publishes them."""


class InvalidPrivateKey(ValueError):
    """The bytes are not an unencrypted PKCS#8 PEM Ed25519 private key."""


def _b64url_encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _b64url_decode(text: str) -> bytes:
    # RFC 7515 §2: base64url without padding; refuse padding and anything outside the alphabet
    # so that one key has exactly one spelling.
    if "=" in text or not text.isascii():
        raise InvalidJwk("x is not unpadded base64url")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise InvalidJwk("x is not unpadded base64url") from exc
    if _b64url_encode(raw) != text:
        raise InvalidJwk("x is not unpadded base64url")
    return raw


def public_key_to_jwk(public_key: Ed25519PublicKey, kid: str) -> dict[str, str]:
    """The JWK a wallet address publishes for ``public_key`` under key id ``kid``."""
    if not kid.strip() or len(kid) > MAX_KID_LENGTH:
        raise InvalidJwk("kid must be a non-empty string")
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {
        "kid": kid,
        "kty": "OKP",
        "crv": "Ed25519",
        "x": _b64url_encode(raw),
        "alg": "EdDSA",
        "use": "sig",
    }


def jwk_to_public_key(jwk: Mapping[str, object]) -> Ed25519PublicKey:
    """The Ed25519 public key in ``jwk``; :class:`InvalidJwk` unless it is one we verify with."""
    if not isinstance(jwk, Mapping):
        raise InvalidJwk("a JWK must be a JSON object")
    kid = jwk.get("kid")
    if not isinstance(kid, str) or not kid.strip() or len(kid) > MAX_KID_LENGTH:
        raise InvalidJwk("kid must be a non-empty string")
    if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
        raise InvalidJwk("only OKP Ed25519 keys are supported")
    if jwk.get("alg") != "EdDSA":
        raise InvalidJwk('alg must be "EdDSA"')
    if jwk.get("use", "sig") != "sig":
        raise InvalidJwk('use must be "sig"')
    if "d" in jwk:
        raise InvalidJwk("a public JWK must not hold the private key")
    x = jwk.get("x")
    if not isinstance(x, str):
        raise InvalidJwk("x must be a string")
    raw = _b64url_decode(x)
    if len(raw) != 32:
        raise InvalidJwk("x must be 32 bytes")
    return Ed25519PublicKey.from_public_bytes(raw)


def load_private_key_pem(pem: bytes) -> Ed25519PrivateKey:
    """The Ed25519 private key in a PKCS#8 PEM file (Rafiki's ``PRIVATE_KEY_FILE``)."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise InvalidPrivateKey("not an unencrypted PEM private key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise InvalidPrivateKey("the private key is not Ed25519")
    return key


def load_base64_private_key(encoded: str) -> Ed25519PrivateKey:
    """The key from base64-encoded PEM text, as ``loadBase64Key`` reads it."""
    try:
        pem = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidPrivateKey("not base64") from exc
    return load_private_key_pem(pem)


def private_key_to_pem(private_key: Ed25519PrivateKey) -> bytes:
    """PKCS#8 PEM, the format ``generateKey`` writes and :func:`load_private_key_pem` reads."""
    return private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
