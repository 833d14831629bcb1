"""Stateless STREAM connection credentials (RFC 29 §4.1, the @interledger/stream-receiver scheme).

One 32-byte server secret derives everything. A connection's address is
``<base address>.<base64url token>``, where the token is the AES-256-GCM envelope (under
``HMAC(secret, "ilp_stream_connection_token")``) of ``flags UInt8`` followed, as flagged, by the
payment tag, the receipt nonce and secret, and the asset. Its shared secret is
``HMAC(HMAC(secret, "ilp_stream_shared_secret"), token)``. Any Prepare is matched back to its
connection from its destination alone, so every replica of a node can receive on any connection.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections import OrderedDict
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kiungo.ilp.address import is_valid_address
from kiungo.ilp.oer import DecodeError, Reader, encode_var_octets
from kiungo.stream.crypto import DecryptionError, StreamKeys, decrypt, encrypt, hmac_sha256

__all__ = ["Asset", "ConnectionDetails", "Credentials", "ReceiptSetup", "StreamServer"]

_TOKEN_KEY_STRING = b"ilp_stream_connection_token"
_SHARED_SECRET_STRING = b"ilp_stream_shared_secret"
_FLAG_PAYMENT_TAG = 1
_FLAG_RECEIPTS = 2
_FLAG_ASSET = 4


@dataclass(frozen=True, slots=True)
class Asset:
    code: str
    scale: int


@dataclass(frozen=True, slots=True)
class ReceiptSetup:
    nonce: bytes
    secret: bytes


@dataclass(frozen=True, slots=True)
class Credentials:
    destination_account: str
    shared_secret: bytes


@dataclass(frozen=True, slots=True)
class ConnectionDetails:
    """What a connection's token says, and its keys."""

    connection_id: str
    payment_tag: str | None
    receipt_setup: ReceiptSetup | None
    asset: Asset | None
    keys: StreamKeys


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _from_b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class StreamServer:
    """Issues connection credentials under ``base_address`` and recognises their packets."""

    def __init__(self, server_secret: bytes, base_address: str, cache_size: int = 10_000) -> None:
        if len(server_secret) != 32:
            raise ValueError("the STREAM server secret must be 32 bytes")
        if not is_valid_address(base_address):
            raise ValueError(f"{base_address!r} is not a valid ILP address")
        self.base_address = base_address
        self._prefix = base_address + "."
        self._token_cipher = AESGCM(hmac_sha256(server_secret, _TOKEN_KEY_STRING))
        self._shared_secret_key = hmac_sha256(server_secret, _SHARED_SECRET_STRING)
        # Deriving keys costs more than the rest of a packet; connections send many packets.
        self._cache: OrderedDict[str, ConnectionDetails | None] = OrderedDict()
        self._cache_size = cache_size

    def generate_credentials(
        self,
        *,
        payment_tag: str | None = None,
        receipt_setup: ReceiptSetup | None = None,
        asset: Asset | None = None,
    ) -> Credentials:
        flags = 0
        parts = [b""]
        if payment_tag is not None:
            if not payment_tag.isascii():
                raise ValueError("payment tag must be ASCII")
            flags |= _FLAG_PAYMENT_TAG
            parts.append(encode_var_octets(payment_tag.encode("ascii")))
        if receipt_setup is not None:
            if len(receipt_setup.nonce) != 16 or len(receipt_setup.secret) != 32:
                raise ValueError("receipt nonce must be 16 bytes and receipt secret 32 bytes")
            flags |= _FLAG_RECEIPTS
            parts.append(receipt_setup.nonce + receipt_setup.secret)
        if asset is not None:
            if not 0 <= asset.scale <= 255:
                raise ValueError("asset scale must be 0..255")
            flags |= _FLAG_ASSET
            parts.append(encode_var_octets(asset.code.encode("utf-8")) + bytes((asset.scale,)))
        parts[0] = bytes((flags,))
        token = encrypt(self._token_cipher, b"".join(parts))
        destination = self._prefix + _b64url(token)
        if not is_valid_address(destination):
            raise ValueError("too much data to encode within an ILP address")
        return Credentials(destination, hmac_sha256(self._shared_secret_key, token))

    def token_segment(self, destination: str) -> str | None:
        """The first segment after our base address (as JS receivers read it), if any."""
        if not destination.startswith(self._prefix):
            return None
        segment = destination[len(self._prefix) :].split(".", 1)[0]
        return segment or None

    def connection(self, destination: str) -> ConnectionDetails | None:
        """The connection a destination names, or None when its token does not authenticate."""
        segment = self.token_segment(destination)
        if segment is None:
            return None
        cache = self._cache
        if segment in cache:
            cache.move_to_end(segment)
            return cache[segment]
        details = self._open_token(segment)
        cache[segment] = details
        if len(cache) > self._cache_size:
            cache.popitem(last=False)
        return details

    def _open_token(self, segment: str) -> ConnectionDetails | None:
        try:
            token = _from_b64url(segment)
            # Lenient base64 skips '~' and spare trailing bits: one token, many connection ids.
            if _b64url(token) != segment:
                return None
            plain = decrypt(self._token_cipher, token)
        except (binascii.Error, ValueError, DecryptionError):
            return None
        try:
            reader = Reader(plain)
            flags = reader.read_uint8()
            tag = reader.read_ascii() if flags & _FLAG_PAYMENT_TAG else None
            receipts = None
            if flags & _FLAG_RECEIPTS:
                receipts = ReceiptSetup(reader.read(16), reader.read(32))
            asset = None
            if flags & _FLAG_ASSET:
                asset = Asset(reader.read_utf8(), reader.read_uint8())
        except DecodeError:
            return None
        shared_secret = hmac_sha256(self._shared_secret_key, token)
        return ConnectionDetails(
            # Keyed on the token, so extra segments after it do not split one connection's totals.
            connection_id=hashlib.sha256((self._prefix + segment).encode("ascii")).hexdigest(),
            payment_tag=tag,
            receipt_setup=receipts,
            asset=asset,
            keys=StreamKeys(shared_secret),
        )
