"""This node's own identity as an Open Payments client, configured as Rafiki's is: a wallet
address (``WALLET_ADDRESS_URL``), a key id (``KEY_ID``) and an Ed25519 private key
(``PRIVATE_KEY_FILE``). Its requests to other nodes' authorization and resource servers name
that wallet address as the client and are signed with that key; the connector publishes the
public key at ``<WALLET_ADDRESS_URL>/jwks.json``, where those servers read it.

Every process of a node must hold the same key (the backend signs, the connector publishes).
Without PRIVATE_KEY_FILE the key is derived from STREAM_SECRET, which every process of a node
already shares (HKDF-SHA256 with its own ``info``, so neither secret reveals the other); with
neither set (development only), one key is made per process and only a node running in one
process (``kiungo up``) can then pay other nodes over Open Payments.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import os
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from kiungo.config import Settings
from kiungo.openpayments.jwk import load_private_key_pem, public_key_to_jwk

__all__ = ["ClientIdentity", "node_identity"]

_HKDF_INFO = b"kiungo open payments client key"


@dataclass(frozen=True, slots=True)
class ClientIdentity:
    wallet_address: str
    """The client's wallet address URL (no trailing slash)."""
    key_id: str
    private_key: Ed25519PrivateKey

    def jwk(self) -> dict[str, str]:
        """The public key as ``<wallet address>/jwks.json`` publishes it."""
        return public_key_to_jwk(self.private_key.public_key(), self.key_id)


@functools.cache
def _run_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def _derived_key(secret: bytes) -> Ed25519PrivateKey:
    seed = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(secret)
    return Ed25519PrivateKey.from_private_bytes(seed)


def _thumbprint(key: Ed25519PrivateKey) -> str:
    x = public_key_to_jwk(key.public_key(), "k")["x"]
    canonical = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": x}, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@functools.cache
def _identity(
    wallet_address: str, key_id: str | None, key_file: str | None, secret: bytes | None
) -> ClientIdentity:
    if key_file is not None:
        with open(key_file, "rb") as handle:  # once per process, at the first use
            key = load_private_key_pem(handle.read())
    elif secret is not None:
        key = _derived_key(secret)
    else:
        key = _run_key()
    return ClientIdentity(wallet_address.rstrip("/"), key_id or _thumbprint(key), key)


def node_identity(settings: Settings) -> ClientIdentity:
    """The node's client identity under ``settings`` (read once per process)."""
    key_file = None if settings.private_key_file is None else os.fspath(settings.private_key_file)
    return _identity(settings.wallet_address_url, settings.key_id, key_file, settings.stream_secret)
