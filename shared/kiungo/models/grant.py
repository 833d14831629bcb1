"""GNAP grants and their access tokens (the authorization server's state, RFC 9635 as Open
Payments uses it). Token and continuation values are never stored: only their SHA-256, so a
database read cannot be replayed as a bearer credential."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, DateTime, ForeignKey, String, Text, Uuid, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from kiungo.models.base import Base, TimestampMixin, UuidPrimaryKeyMixin

__all__ = ["Grant", "GrantAccessToken", "GrantState"]


class GrantState(enum.StrEnum):
    """A grant's state, as Rafiki's auth service names them."""

    PROCESSING = "PROCESSING"
    PENDING = "PENDING"
    APPROVED = "APPROVED"
    FINALIZED = "FINALIZED"


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
    # PROCESSING (interactive, consent not yet asked), PENDING (the account holder is being
    # asked), APPROVED while usable; FINALIZED once cancelled, revoked or rejected (its tokens
    # are revoked with it), the reason in ``finalization_reason``.
    state: Mapped[str] = mapped_column(String(16))
    continue_token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # ISSUED, REVOKED or REJECTED once FINALIZED; else NULL.
    finalization_reason: Mapped[str | None] = mapped_column(String(16))
    # An interactive grant's interaction (GNAP redirect start, redirect finish); all NULL for a
    # grant given without interaction. ``interact_id`` and ``interact_nonce`` address it in the
    # interaction URLs; ``interact_state`` is PENDING until the identity provider accepts
    # (APPROVED) or rejects (DENIED) it; ``interact_ref`` is handed to the client in the finish
    # redirect and presented once at continuation (NULL once used).
    interact_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, unique=True)
    interact_nonce: Mapped[str | None] = mapped_column(String(64))
    interact_state: Mapped[str | None] = mapped_column(String(16))
    interact_ref: Mapped[str | None] = mapped_column(String(64))
    interact_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The SHA-256 of the browser session cookie set at the interaction's start; the finish
    # must come with it.
    interact_session_hash: Mapped[str | None] = mapped_column(String(64))
    # The client's finish: its nonce and redirect URI.
    client_nonce: Mapped[str | None] = mapped_column(Text)
    finish_uri: Mapped[str | None] = mapped_column(Text)


class GrantAccessToken(UuidPrimaryKeyMixin, TimestampMixin, Base):
    __tablename__ = "grant_access_tokens"

    grant_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("grants.id"), index=True)
    value_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Rotated-away and revoked tokens stay as rows (audit); only NOT revoked ones authorize.
    revoked: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
