"""What resolvers reach: the process's pools, ledger and stores, and per-request caches."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

import asyncpg
import httpx
import strawberry
from redis.asyncio import Redis

from kiungo.backend.errors import ApiError, ErrorCode
from kiungo.config import Settings
from kiungo.ledger import AccountKind, Ledger, UnknownAccount, account_id_for
from kiungo.openpayments.client import OpenPaymentsClient
from kiungo.openpayments.identity import node_identity
from kiungo.rates import RatesClient
from kiungo.runtime.receiver_fetch import receiver_client
from kiungo.runtime.telemetry import BACKEND, Tracing, start_tracing
from kiungo.store.channels import (
    PAYMENTS_DUE_CHANNEL,
    PEERS_CHANGED_CHANNEL,
    RECEIVERS_CHANGED_CHANNEL,
)
from kiungo.store.idempotency import Conflict, Finished, IdempotencyStore, InProgress, Started

__all__ = ["Backend", "Context"]

T = TypeVar("T")

log = logging.getLogger("kiungo.backend")

# A running idempotent mutation holds its key this long if its process dies mid-way.
_IDEMPOTENCY_LEASE_SECONDS = 30
# How long a second call with the same key waits for the first to finish.
_IDEMPOTENCY_WAIT_SECONDS = 10.0


@dataclass
class Backend:
    """The process-wide resources of one backend replica."""

    settings: Settings
    pool: asyncpg.Pool
    ledger: Ledger
    redis: Redis
    idempotency: IdempotencyStore = field(init=False)
    # One client for the rates service and the connector's internal routes: a client per
    # request would build a TLS context (tens of milliseconds) each time.
    http: httpx.AsyncClient = field(init=False)
    # Another node's receivers are read with their own client: bounded, and kept off private
    # addresses with REFUSE_PRIVATE_RECEIVERS (the connector and the rates service are private).
    receiver_http: httpx.AsyncClient = field(init=False)
    rates: RatesClient = field(init=False)
    # Set with ENABLE_TELEMETRY_TRACES (kiungo.runtime.telemetry): operations and webhooks traced.
    tracing: Tracing | None = field(init=False)
    # This node as an Open Payments client of other nodes (receivers created and read there).
    open_payments: OpenPaymentsClient = field(init=False)

    def __post_init__(self) -> None:
        self.idempotency = IdempotencyStore(self.redis, self.settings.redis_key_prefix)
        self.http = httpx.AsyncClient(timeout=15)
        self.receiver_http = receiver_client(refuse_private=self.settings.refuse_private_receivers)
        self.rates = RatesClient(
            self.settings.exchange_rates_url,
            client=self.http,
            lifetime=timedelta(milliseconds=self.settings.exchange_rates_lifetime_ms),
        )
        self.tracing = start_tracing(self.settings, BACKEND)
        self.open_payments = OpenPaymentsClient(
            node_identity(self.settings),
            self.receiver_http,
            self.redis,
            self.settings.redis_key_prefix,
            max_seconds=self.settings.receiver_fetch_timeout_ms / 1000,
        )

    async def close(self) -> None:
        await self.http.aclose()
        await self.receiver_http.aclose()
        if self.tracing is not None:
            await self.tracing.shutdown()

    async def receiver_changed(self, owner_id: uuid.UUID) -> None:
        """Tell every connector replica to forget what it cached of a wallet address or incoming
        payment whose state changed (cancelled, completed, deactivated): it refuses money from
        the next packet on, not a cache lifetime later. Best effort: the cache is short-lived."""
        try:
            await self.redis.publish(
                self.settings.redis_key_prefix + RECEIVERS_CHANGED_CHANNEL, str(owner_id)
            )
        except Exception:
            log.warning("could not publish a receiver change for %s", owner_id)

    async def peers_changed(self) -> None:
        """Tell every connector replica to reload its peers and routes."""
        await self.redis.publish(self.settings.redis_key_prefix + PEERS_CHANGED_CHANNEL, "1")

    async def payments_due(self) -> None:
        """Wake the connectors' sending workers: an outgoing payment is ready to send. Best
        effort: the workers also poll."""
        try:
            await self.redis.publish(self.settings.redis_key_prefix + PAYMENTS_DUE_CHANNEL, "1")
        except Exception:
            log.warning("could not publish payments-due; the sending workers will poll")

    async def available(self, kind: AccountKind, owner_id: uuid.UUID) -> int:
        """The liquidity an account can still spend (0 when it has no account yet)."""
        try:
            return (await self.ledger.balance(account_id_for(kind, owner_id))).available
        except UnknownAccount:
            return 0


@dataclass
class Context:
    """Per request: the backend and small caches so a page of peers loads each asset once."""

    backend: Backend
    cache: dict[tuple[str, Any], Any] = field(default_factory=dict)

    @property
    def pool(self) -> asyncpg.Pool:
        return self.backend.pool

    @property
    def ledger(self) -> Ledger:
        return self.backend.ledger

    async def cached(self, key: tuple[str, Any], load: Callable[[], Awaitable[T]]) -> T:
        if key in self.cache:
            value: T = self.cache[key]
            return value
        value = await load()
        self.cache[key] = value
        return value

    async def idempotent(
        self,
        operation: str,
        key: str | None,
        request: Any,
        run: Callable[[], Awaitable[tuple[dict[str, Any], T]]],
        replay: Callable[[dict[str, Any]], Awaitable[T]],
    ) -> T:
        """Run a mutation once per idempotency key (DESIGN §7).

        ``run`` returns a JSON-able record of its result and the result; the record is kept in
        Redis, and a later call with the same key and the same ``request`` gets ``replay`` of it.
        The same key with another request is a CONFLICT. A concurrent call with the key waits
        for the first. A failed run releases the key, so that the caller can retry.
        """
        if key is None:
            return (await run())[1]
        if not key or len(key) > 256:
            raise ApiError(ErrorCode.BAD_USER_INPUT, "idempotencyKey must be 1 to 256 characters")
        # Deterministic within the node is all a fingerprint needs: the C encoder, not RFC 8785.
        fingerprint = hashlib.sha256(
            json.dumps(_jsonable(request), sort_keys=True, separators=(",", ":")).encode()
        ).hexdigest()
        store = self.backend.idempotency
        ttl = max(1, self.backend.settings.graphql_idempotency_key_ttl_ms // 1000)
        scope = f"graphql:{operation}"
        deadline = asyncio.get_running_loop().time() + _IDEMPOTENCY_WAIT_SECONDS
        while True:
            state = await store.begin(
                scope, key, fingerprint, ttl, lease_seconds=_IDEMPOTENCY_LEASE_SECONDS
            )
            if isinstance(state, Finished):
                return await replay(json.loads(state.result))
            if isinstance(state, Conflict):
                raise ApiError(
                    ErrorCode.CONFLICT,
                    f"idempotencyKey {key!r} was already used for a different {operation} request",
                )
            if isinstance(state, Started):
                break
            assert isinstance(state, InProgress)
            if asyncio.get_running_loop().time() > deadline:
                raise ApiError(
                    ErrorCode.CONFLICT,
                    f"a {operation} request with idempotencyKey {key!r} is still running",
                )
            await asyncio.sleep(0.01)
        try:
            record, result = await run()
        except BaseException:
            await store.abandon(scope, key)
            raise
        await store.finish(scope, key, json.dumps(record))
        return result

    async def idempotent_change(
        self,
        operation: str,
        key: str | None,
        request: Any,
        change: Callable[[], Awaitable[object]],
        respond: Callable[[dict[str, Any]], Awaitable[T]],
    ) -> T:
        """:meth:`idempotent` for a mutation that answers with what it changed, read afresh:
        ``change`` does it and gives the id of what it changed; ``respond`` answers from the
        record ``{"id": …}``, after the change and on a replay alike."""

        async def run() -> tuple[dict[str, Any], T]:
            record = {"id": str(await change())}
            return record, await respond(record)

        return await self.idempotent(operation, key, request, run, respond)


def _jsonable(value: Any) -> Any:
    """An input object as plain JSON, for fingerprinting (idempotencyKey itself left out)."""
    if value is None or value is strawberry.UNSET:
        return None
    if isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items() if k != "idempotency_key"}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "__dataclass_fields__"):
        return {
            name: _jsonable(getattr(value, name))
            for name in value.__dataclass_fields__
            if name != "idempotency_key"
        }
    if hasattr(value, "value") and hasattr(value, "name"):  # enums
        return _jsonable(value.value)
    return str(value)
