"""ISO 8601 repeating intervals as Open Payments grant limits use them (``limits.interval``):
``R[n]/<start>/<duration>``, e.g. ``R/2026-01-01T00:00:00Z/P1M`` (every month from January,
without end) or ``R12/2026-01-01T00:00:00Z/P1W`` (twelve weeks), or ``R[n]/<start>/<end>`` (the
span from start to end, repeated). The form ending at a date (``R/<duration>/<end>``) is
refused. :func:`current_interval` is the
repetition a moment falls in; a moment before the start, or after the last repetition, falls in
none (what a grant limited so allows then is nothing).

Durations are whole numbers of years, months, weeks, days, hours, minutes and seconds; months
and years are calendar ones (January 31 plus one month is the last day of February).
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

__all__ = ["InvalidInterval", "RepeatingInterval", "current_interval", "parse_interval"]

MAX_INTERVAL = 256
_DURATION = re.compile(
    r"P(?!$)(?:(\d{1,4})Y)?(?:(\d{1,5})M)?(?:(\d{1,6})W)?(?:(\d{1,7})D)?"
    r"(?:T(?=\d)(?:(\d{1,8})H)?(?:(\d{1,10})M)?(?:(\d{1,12})S)?)?"
)
_REPEAT = re.compile(r"R(\d{0,9})")


class InvalidInterval(ValueError):
    """Not a repeating interval this server understands."""


@dataclass(frozen=True)
class RepeatingInterval:
    start: datetime
    months: int
    fixed: timedelta
    # None: repeats without end.
    repetitions: int | None

    def step(self, k: int) -> datetime:
        """The start of repetition ``k`` (0 is the first); OverflowError past year 9999."""
        month = self.start.month - 1 + k * self.months
        year = self.start.year + month // 12
        month = month % 12 + 1
        if not 1 <= year <= 9999:
            raise OverflowError("year out of range")
        day = min(self.start.day, calendar.monthrange(year, month)[1])
        return self.start.replace(year=year, month=month, day=day) + k * self.fixed


def _instant(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInterval(f"not an ISO 8601 date-time or duration: {text[:40]!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def parse_interval(text: object) -> RepeatingInterval:
    """``R[n]/<start>/<duration>``, checked; InvalidInterval otherwise."""
    if not isinstance(text, str) or len(text) > MAX_INTERVAL:
        raise InvalidInterval("interval must be an ISO 8601 repeating interval string")
    parts = text.split("/")
    if len(parts) != 3:
        raise InvalidInterval("interval must be R[n]/<start>/<duration or end>")
    repeat = _REPEAT.fullmatch(parts[0])
    if repeat is None:
        raise InvalidInterval("interval must be R[n]/<start>/<duration or end>")
    start = _instant(parts[1])
    duration = _DURATION.fullmatch(parts[2])
    if duration is None:
        fixed, total_months = _instant(parts[2]) - start, 0
    else:
        years, months, weeks, days, hours, minutes, seconds = (
            int(g or 0) for g in duration.groups()
        )
        try:
            fixed = timedelta(weeks=weeks, days=days, hours=hours, minutes=minutes, seconds=seconds)
        except OverflowError:
            raise InvalidInterval("interval duration too long") from None
        total_months = years * 12 + months
    if total_months == 0 and fixed <= timedelta(0):
        raise InvalidInterval("interval duration must be positive")
    count = int(repeat.group(1)) if repeat.group(1) else None
    if count == 0:
        raise InvalidInterval("interval must repeat at least once")
    return RepeatingInterval(start, total_months, fixed, count)


def current_interval(
    interval: RepeatingInterval, now: datetime
) -> tuple[datetime, datetime] | None:
    """The repetition ``[start, end)`` of ``interval`` that ``now`` falls in, or None."""
    if now < interval.start:
        return None
    approx = interval.fixed + timedelta(days=30.436875 * interval.months)
    k = int((now - interval.start) / approx)
    try:
        while k > 0 and interval.step(k) > now:
            k -= 1
        while interval.step(k + 1) <= now:
            k += 1
        start, end = interval.step(k), interval.step(k + 1)
    except OverflowError:
        return None
    if interval.repetitions is not None and k >= interval.repetitions:
        return None
    return start, end
