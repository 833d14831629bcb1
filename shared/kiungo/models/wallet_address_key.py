"""Wallet address keys: the Ed25519 public keys (JWKs) a wallet address's owner signs Open
Payments requests with (Rafiki's ``walletAddressKeys``)."""

from __future__ import annotations

import uuid

from sqlalchemy import Boolean, ForeignKey, Index, String, Uuid, text
from sqlalchemy.orm import Mapped, mapped_column

from kiungo.models.base import Base, TimestampMixin, UuidPrimaryKeyMixin

__all__ = ["WalletAddressKey"]


class WalletAddressKey(UuidPrimaryKeyMixin, TimestampMixin, Base):
    __tablename__ = "wallet_address_keys"
    __table_args__ = (
        # One active key per kid and wallet address, as Rafiki; revoking a key frees its kid.
        Index(
            "uq_wallet_address_keys_active_kid",
            "wallet_address_id",
            "kid",
            unique=True,
            postgresql_where=text("NOT revoked"),
        ),
    )

    wallet_address_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("wallet_addresses.id"), index=True
    )
    kid: Mapped[str] = mapped_column(String(255))
    # The 32-byte public key, unpadded base64url as the JWK carries it (kty OKP, crv Ed25519).
    x: Mapped[str] = mapped_column(String(43))
    revoked: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
