"""A GNAP authorization server under test: a migrated database with wallet addresses alice
(the client, with an Ed25519 key) and bob, and :func:`kiungo.auth.app.auth_app` served by
uvicorn on loopback; :class:`Auth` signs requests as alice's client would."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from tests.loopback import serve

from kiungo.auth.app import auth_app
from kiungo.migrations.run import upgrade
from kiungo.openpayments.client_signatures import ClientKeys
from kiungo.openpayments.http_signatures import sign_request
from kiungo.openpayments.jwk import public_key_to_jwk
from kiungo.openpayments.wallet_address_keys import create_key, parse_jwk
from kiungo.runtime.db import create_pool
from kiungo.runtime.receiver_fetch import receiver_client

__all__ = ["CLIENT", "IDP_SECRET", "IDP_URL", "INCOMING", "Auth", "auth_server"]

CLIENT = "https://wallet.test/alice"
# The identity provider the authorization server sends browsers to, and its secret.
IDP_URL = "https://idp.test/consent?tenant=1"
IDP_SECRET = "idp-secret-for-tests"
INCOMING = [{"type": "incoming-payment", "actions": ["create", "read", "list", "complete"]}]


@dataclass
class Auth:
    url: str
    pool: asyncpg.Pool
    http: httpx.AsyncClient
    key: Ed25519PrivateKey
    kid: str

    async def send(
        self,
        method: str,
        url: str,
        body: Any = None,
        *,
        token: str | None = None,
        key: Ed25519PrivateKey | None = None,
        created: int | None = None,
        tamper: bytes | None = None,
        signed: bool = True,
    ) -> httpx.Response:
        raw = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        headers = {} if token is None else {"Authorization": f"GNAP {token}"}
        if signed:
            headers |= sign_request(
                method=method,
                target_uri=url,
                headers=headers,
                body=raw,
                private_key=key or self.key,
                key_id=self.kid,
                created=int(time.time()) if created is None else created,
            )
        elif raw is not None:
            headers["Content-Type"] = "application/json"
        if tamper is not None:
            headers["Content-Length"] = str(len(tamper))
        return await self.http.request(method, url, content=tamper or raw, headers=headers)

    async def grant(self, access: Any = None, **kwargs: Any) -> httpx.Response:
        body = {
            "client": CLIENT,
            "access_token": {"access": INCOMING if access is None else access},
        }
        return await self.send("POST", self.url, body, **kwargs)

    async def rows(self) -> list[list[Any]]:
        grants = await self.pool.fetch(
            "SELECT id, state, continue_token_hash FROM grants ORDER BY id"
        )
        tokens = await self.pool.fetch(
            "SELECT id, grant_id, value_hash, revoked, expires_at FROM grant_access_tokens"
            " ORDER BY id"
        )
        return [[tuple(r) for r in grants], [tuple(r) for r in tokens]]


@pytest.fixture(name="auth")
async def auth_server(database_url: str) -> AsyncIterator[Auth]:
    await upgrade(database_url)
    pool = await create_pool(database_url)
    try:
        asset = await pool.fetchval(
            "INSERT INTO assets (id, code, scale) VALUES ($1, 'USD', 2) RETURNING id", uuid.uuid4()
        )
        for path in ("alice", "bob"):
            await pool.execute(
                "INSERT INTO wallet_addresses (id, url, asset_id) VALUES ($1, $2, $3)",
                uuid.uuid4(),
                f"https://wallet.test/{path}",
                asset,
            )
        alice = await pool.fetchval("SELECT id FROM wallet_addresses WHERE url = $1", CLIENT)
        key = Ed25519PrivateKey.generate()
        x = public_key_to_jwk(key.public_key(), "alice-key")["x"]
        await create_key(pool, alice, parse_jwk(kid="alice-key", x=x))
        # The app learns its own public URL only once the socket is bound; a placeholder
        # app is replaced right after.
        holder: dict[str, Any] = {}

        async def app(scope: Any, receive: Any, send: Any) -> None:
            await holder["app"](scope, receive, send)

        async with (
            serve(app) as url,
            httpx.AsyncClient(timeout=10) as http,
            receiver_client(refuse_private=False) as keys_http,
        ):
            holder["app"] = auth_app(
                pool,
                url,
                client_keys=ClientKeys(pool, keys_http),
                identity_server_url=IDP_URL,
                identity_server_secret=IDP_SECRET,
            )
            yield Auth(url + "/", pool, http, key, "alice-key")
    finally:
        await pool.close()
