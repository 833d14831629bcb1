"""A backend under test: a migrated database of its own (copied from a template migrated once
per session), a Redis key prefix of its own, the real app served by uvicorn on loopback, and a
client that signs its requests as Rafiki's clients do."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

import asyncpg
import httpx

from kiungo.backend.context import Backend
from kiungo.backend.service import backend_server
from kiungo.config import Settings
from kiungo.signatures import signature_header

SECRET = "test-admin-secret"

ASSET_FIELDS = "id code scale withdrawalThreshold liquidityThreshold liquidity createdAt"


class GraphQLFailure(AssertionError):
    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(errors)
        self.errors = errors

    @property
    def code(self) -> str:
        code: str = self.errors[0]["extensions"]["code"]
        return code


@dataclass
class Admin:
    """A signed GraphQL client of a running backend, and that backend's own resources."""

    url: str
    client: httpx.AsyncClient
    backend: Backend
    database_url: str
    secret: str | None = SECRET

    @property
    def pool(self) -> asyncpg.Pool:
        return self.backend.pool

    async def post(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        *,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        body: dict[str, Any] = {"query": query}
        if variables is not None:
            body["variables"] = variables
        sent = dict(headers or {})
        if self.secret is not None and "signature" not in sent:
            sent["signature"] = signature_header(self.secret, body)
        return await self.client.post(f"{self.url}/graphql", json=body, headers=sent)

    async def execute(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """The response body, errors or not."""
        response = await self.post(query, variables)
        body: dict[str, Any] = response.json()
        return body

    async def data(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """The data of a request that must succeed."""
        body = await self.execute(query, variables)
        if body.get("errors"):
            raise GraphQLFailure(body["errors"])
        data: dict[str, Any] = body["data"]
        return data

    async def error(self, query: str, variables: dict[str, Any] | None = None) -> GraphQLFailure:
        """The failure of a request that must fail."""
        body = await self.execute(query, variables)
        assert body.get("errors"), f"expected an error, got {body}"
        return GraphQLFailure(body["errors"])

    # -- shortcuts for setting up --------------------------------------------------------------

    async def create_asset(self, code: str = "USD", scale: int = 2, **extra: Any) -> str:
        data = await self.data(
            "mutation($input: CreateAssetInput!) { createAsset(input: $input) { asset { id } } }",
            {"input": {"code": code, "scale": scale, **extra}},
        )
        asset_id: str = data["createAsset"]["asset"]["id"]
        return asset_id

    async def deposit_asset(self, asset_id: str, amount: int) -> None:
        await self.data(
            "mutation($input: DepositAssetLiquidityInput!) {"
            " depositAssetLiquidity(input: $input) { success } }",
            {
                "input": {
                    "assetId": asset_id,
                    "amount": str(amount),
                    "id": str(uuid.uuid4()),
                    "idempotencyKey": str(uuid.uuid4()),
                }
            },
        )


def backend_settings(redis_prefix: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "redis_key_prefix": redis_prefix,
        "admin_api_secret": SECRET,
        "worker_interval_ms": 50,
        "webhook_retry_backoff_ms": 100,
        "ilp_address": "test.kiungo",
        "open_payments_url": "https://wallet.example",
        **overrides,
    }
    return replace(Settings(), **values)


@contextlib.asynccontextmanager
async def running_backend(
    database_url: str,
    redis_url: str,
    settings: Settings,
    *,
    workers: bool = True,
) -> AsyncIterator[Admin]:
    async with (
        backend_server(settings, database_url, redis_url, workers=workers) as running,
        httpx.AsyncClient(timeout=30) as client,
    ):
        yield Admin(running.url, client, running.backend, database_url, settings.admin_api_secret)


WALLET_BASE = "https://wallet.example"


async def create_wallet_address(admin: Admin, asset_id: str, path: str = "/alice") -> str:
    data = await admin.data(
        "mutation($input: CreateWalletAddressInput!) {"
        " createWalletAddress(input: $input) { walletAddress { id } } }",
        {"input": {"assetId": asset_id, "address": WALLET_BASE + path}},
    )
    wallet_id: str = data["createWalletAddress"]["walletAddress"]["id"]
    return wallet_id


async def credit(admin: Admin, kind: str, owner_id: str, amount: int) -> None:
    """Money arriving into an account as if paid in by packets (settlement → account)."""
    from kiungo.ledger import AccountKind

    ledger = admin.backend.ledger
    owner = uuid.UUID(owner_id)
    asset_id = await admin.pool.fetchval(
        "SELECT asset_id FROM wallet_addresses WHERE id = $1 "
        "UNION ALL SELECT asset_id FROM incoming_payments WHERE id = $1",
        owner,
    )
    account = await ledger.ensure_account(AccountKind(kind), owner, asset_id)
    await ledger.deposit(uuid.uuid4(), account, amount)
