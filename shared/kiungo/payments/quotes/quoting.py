"""What quoting works with: the services it reads and the amounts it is given."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx

from kiungo.config import Settings
from kiungo.ledger import Ledger
from kiungo.rates import RatesClient

__all__ = ["Amount", "Probe", "Quoting"]

Probe = Callable[[str, tuple[str, int]], Awaitable[tuple[int, Any]]]
"""Probe a remote receiver in the sender's (asset code, scale): the connector's ``POST
/internal/quote`` answer as (HTTP status, JSON body)."""


@dataclass(frozen=True, slots=True)
class Amount:
    """An amount in an asset's smallest units."""

    value: int
    asset_code: str
    asset_scale: int


@dataclass(frozen=True, slots=True)
class Quoting:
    """What quoting reads: the node's settings, its database and ledger (what an incoming payment
    has received), the rates service, and the client that asks the connector to probe a remote
    receiver; or, in the connector itself, ``probe``, which probes it without HTTP."""

    settings: Settings
    pool: asyncpg.Pool
    ledger: Ledger
    rates: RatesClient
    http: httpx.AsyncClient
    probe: Probe | None = None
