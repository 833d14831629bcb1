"""When a new incoming payment expires: when asked, within INCOMING_PAYMENT_EXPIRY_MAX_MS."""

from __future__ import annotations

from datetime import datetime, timedelta

__all__ = ["InvalidExpiry", "expiry"]


class InvalidExpiry(ValueError):
    """The expiry asked for is no time, or not one a new payment may have."""


def expiry(requested: str | None, now: datetime, longest: timedelta) -> datetime:
    """The expiry of a payment created at ``now``: ``requested`` (ISO 8601 with a time zone),
    which must be in the future and at most ``longest`` ahead, or ``now + longest`` when none
    is asked for."""
    if requested is None:
        return now + longest
    try:
        moment = datetime.fromisoformat(requested.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidExpiry(
            "expiresAt must be an ISO 8601 date-time, such as 2030-01-01T00:00:00Z"
        ) from None
    if moment.tzinfo is None:
        raise InvalidExpiry("expiresAt needs a time zone, such as Z")
    if moment <= now:
        raise InvalidExpiry("expiresAt must be in the future")
    if moment > now + longest:
        raise InvalidExpiry(
            f"expiresAt may be at most {longest.days} days ahead (INCOMING_PAYMENT_EXPIRY_MAX_MS)"
        )
    return moment
