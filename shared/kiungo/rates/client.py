"""Exchange rates from the operator's rates service (DESIGN §6), and exact conversion.

``GET <EXCHANGE_RATES_URL>?base=USD`` answers ``{"base": "USD", "rates": {"EUR": 0.9, ...}}``
(Rafiki's format). Rates are parsed without ever passing through a float and kept as
``Fraction``; a rate that is not a positive finite number is left out. Each base is cached for
the configured lifetime; concurrent misses share one request; failures are not cached.

Rounding: source → destination amounts floor (:func:`convert`), destination → source amounts
ceil (:func:`convert_ceil`), as Rafiki and @interledger/pay do, so the node never promises more
than it converts.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from fractions import Fraction

import httpx

__all__ = [
    "RatesClient",
    "RatesError",
    "RatesUnavailable",
    "convert",
    "convert_ceil",
    "scaled_rate",
]


class RatesError(Exception):
    """Any failure to get a rate."""


class RatesUnavailable(RatesError):
    """The rates service could not be asked, answered badly, or has no rate for the pair."""


def scaled_rate(rate: Fraction, source_scale: int, destination_scale: int) -> Fraction:
    """A whole-unit rate (destination units per source unit) as a rate between the assets'
    smallest units."""
    shift = destination_scale - source_scale
    # Most pairs share a scale; the power is then 1 and the packet path skips its arithmetic.
    return rate if shift == 0 else rate * Fraction(10) ** shift


def _scaled(amount: int, rate: Fraction, source_scale: int, destination_scale: int) -> Fraction:
    if amount < 0:
        raise ValueError("amounts are never negative")
    return amount * scaled_rate(rate, source_scale, destination_scale)


def convert(amount: int, rate: Fraction, source_scale: int, destination_scale: int) -> int:
    """``amount`` (source units) in destination units, rounded down."""
    value = _scaled(amount, rate, source_scale, destination_scale)
    return value.numerator // value.denominator


def convert_ceil(amount: int, rate: Fraction, source_scale: int, destination_scale: int) -> int:
    """``amount`` converted with ``rate``, rounded up (for destination → source sizing)."""
    value = _scaled(amount, rate, source_scale, destination_scale)
    return -(-value.numerator // value.denominator)


def _parse_rates(body: bytes, base: str) -> dict[str, Fraction]:
    try:
        document = json.loads(body, parse_float=Decimal, parse_int=Decimal)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise RatesUnavailable("rates service answered something that is not JSON") from None
    if not isinstance(document, dict) or not isinstance(document.get("rates"), dict):
        raise RatesUnavailable("rates service answer has no 'rates' object")
    if document.get("base", base) != base:
        raise RatesUnavailable(f"rates service answered base {document.get('base')!r}")
    rates: dict[str, Fraction] = {}
    for code, raw in document["rates"].items():
        try:
            value = Decimal(raw) if isinstance(raw, str) else raw
            if isinstance(value, Decimal) and value.is_finite() and value > 0:
                rates[str(code)] = Fraction(value)
        except (InvalidOperation, ValueError, TypeError):
            continue  # one unusable rate does not spoil the others
    return rates


class RatesClient:
    def __init__(
        self,
        url: str | None,
        *,
        client: httpx.AsyncClient,
        lifetime: timedelta,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._url = url
        self._client = client
        self._lifetime = lifetime.total_seconds()
        self._clock = clock
        self._cache: dict[str, tuple[float, dict[str, Fraction]]] = {}
        self._in_flight: dict[str, asyncio.Future[dict[str, Fraction]]] = {}

    async def rate(self, source_code: str, destination_code: str) -> Fraction:
        """Destination units per source unit (whole units; scales are applied by convert)."""
        if source_code == destination_code:
            return Fraction(1)
        rates = await self.rates(source_code)
        rate = rates.get(destination_code)
        if rate is None:
            raise RatesUnavailable(f"no rate from {source_code} to {destination_code}")
        return rate

    async def rates(self, base: str) -> dict[str, Fraction]:
        cached = self._cache.get(base)
        if cached is not None and cached[0] > self._clock():
            return cached[1]
        if self._url is None:
            raise RatesUnavailable("no rates service configured (EXCHANGE_RATES_URL)")
        pending = self._in_flight.get(base)
        if pending is None:
            pending = asyncio.ensure_future(self._fetch(base))
            self._in_flight[base] = pending
            pending.add_done_callback(lambda _: self._in_flight.pop(base, None))
        return await asyncio.shield(pending)

    async def _fetch(self, base: str) -> dict[str, Fraction]:
        assert self._url is not None
        try:
            response = await self._client.get(self._url, params={"base": base})
        except httpx.HTTPError as exc:
            raise RatesUnavailable(f"rates service unreachable: {type(exc).__name__}") from None
        if response.status_code != 200:
            raise RatesUnavailable(f"rates service answered HTTP {response.status_code}")
        rates = _parse_rates(response.content, base)
        self._cache[base] = (self._clock() + self._lifetime, rates)
        return rates
