"""Peers: the nodes we exchange ILP packets with, and the tokens they authenticate with."""

from __future__ import annotations

import hashlib
import uuid
from decimal import Decimal

from sqlalchemy import ARRAY, ForeignKey, LargeBinary, String, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from kiungo.models.base import U64, Base, TimestampMixin, UuidPrimaryKeyMixin

__all__ = ["Peer", "PeerIncomingToken", "token_hash"]


class Peer(UuidPrimaryKeyMixin, TimestampMixin, Base):
    __tablename__ = "peers"
    __table_args__ = (
        UniqueConstraint("static_ilp_address", "asset_id", name="uq_peers_address_asset"),
    )

    asset_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("assets.id"), index=True)
    name: Mapped[str | None] = mapped_column(String(255))
    static_ilp_address: Mapped[str] = mapped_column(String(1023))
    http_endpoint: Mapped[str] = mapped_column(String(2048))
    # Sent to the peer in our requests; never logged or returned in full.
    http_outgoing_token: Mapped[str] = mapped_column(String(1024))
    max_packet_amount: Mapped[Decimal | None] = mapped_column(U64)
    liquidity_threshold: Mapped[Decimal | None] = mapped_column(U64)
    liquidity_threshold_high: Mapped[Decimal | None] = mapped_column(U64)
    # The liquidity alert last raised ('LOW' or 'HIGH'), so each crossing raises one event.
    liquidity_alert: Mapped[str | None] = mapped_column(String(8))
    # ILP address prefixes routed to this peer besides its static address.
    routes: Mapped[list[str]] = mapped_column(ARRAY(String(1023)), server_default="{}")


def token_hash(token: bytes | str) -> bytes:
    """What ``PeerIncomingToken.token_hash`` holds: the SHA-256 of the token's bytes as a peer
    sends them. The connector hashes the ``Authorization`` header's bytes undecoded, so there is
    no encoding to agree on; the admin API takes printable ASCII only, whose UTF-8 is those
    bytes."""
    return hashlib.sha256(token.encode("utf-8") if isinstance(token, str) else token).digest()


class PeerIncomingToken(UuidPrimaryKeyMixin, TimestampMixin, Base):
    """A token a peer sends us, kept only as its SHA-256."""

    __tablename__ = "peer_incoming_tokens"

    peer_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("peers.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
