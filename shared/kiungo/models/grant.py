"""GNAP grants and their access tokens (the authorization server's state, RFC 9635 as Open
Payments uses it). Token and continuation values are never stored: only their SHA-256, so a
database read cannot be replayed as a bearer credential."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, DateTime, ForeignKey, String, Text, Uuid, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from kiungo.models.base import Base, TimestampMixin, UuidPrimaryKeyMixin

__all__ = ["Grant", "GrantAccessToken"]


class Grant(UuidPrimaryKeyMixin, TimestampMixin, Base):
    __tablename__ = "grants"

    # Who the client is: its wallet address URL, whose JWKS verifies every request made under
    # this grant; or, for a client that sent its key in the grant request, that key's RFC 9278
    # thumbprint URI (``urn:ietf:params:oauth:jwk-thumbprint:sha-256:…``) with the key itself
    # in ``client_jwk``.
    client: Mapped[str] = mapped_column(Text)
    # The public JWK of a client identified by its key (``client: {"jwk": …}``); else NULL.
    client_jwk: Mapped[Any | None] = mapped_column(JSONB)
    # The access granted, as the request's access_token.access (Open Payments access items).
    access: Mapped[Any] = mapped_column(JSONB)
    # APPROVED while usable; FINALIZED once cancelled (its tokens are revoked with it).
    state: Mapped[str] = mapped_column(String(16))
    continue_token_hash: Mapped[str] = mapped_column(String(64), unique=True)


class GrantAccessToken(UuidPrimaryKeyMixin, TimestampMixin, Base):
    __tablename__ = "grant_access_tokens"

    grant_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("grants.id"), index=True)
    value_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Rotated-away and revoked tokens stay as rows (audit); only NOT revoked ones authorize.
    revoked: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
