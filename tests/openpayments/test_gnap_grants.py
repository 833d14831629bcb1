"""The GNAP authorization server over HTTP on a real socket, against Postgres: non-interactive
grants for a local client wallet address signed with its key, token rotation and revocation,
grant cancellation, introspection, every refusal leaving the rows as they were, and the real
Open Payments client (JavaScript, validating responses) requesting, rotating and revoking."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from tests.connector.harness import KIUNGO, free_port
from tests.interop.node import node_script
from tests.openpayments.gnap_harness import CLIENT, INCOMING, Auth, auth_server  # noqa: F401 (fixture auth)

from kiungo.auth.app import auth_app
from kiungo.openpayments.client_signatures import ClientKeys
from kiungo.openpayments.grants import introspect
from kiungo.openpayments.jwk import private_key_to_pem
from kiungo.runtime.db import create_pool
from kiungo.runtime.receiver_fetch import receiver_client


def sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


async def test_a_signed_request_from_a_local_wallet_address_gets_a_non_interactive_grant(
    auth: Auth,
) -> None:
    access = [*INCOMING, {"type": "quote", "actions": ["create", "read"]}]
    response = await auth.grant(access)
    assert response.status_code == 200, response.text
    body = response.json()
    token, cont = body["access_token"], body["continue"]
    assert set(body) == {"access_token", "continue"}
    assert set(token) == {"value", "manage", "expires_in", "access"}
    assert token["access"] == access and token["expires_in"] == 600
    assert token["manage"].startswith(auth.url + "token/")
    assert cont["uri"].startswith(auth.url + "continue/")
    [grants, tokens] = await auth.rows()
    assert len(grants) == 1 and len(tokens) == 1
    # Only hashes are stored.
    assert tokens[0][2] == sha256(token["value"]) and grants[0][2] == sha256(
        cont["access_token"]["value"]
    )
    assert str(tokens[0][0]) == token["manage"].rsplit("/", 1)[1]

    info = await introspect(auth.pool, token["value"], ("incoming-payment", "create", CLIENT))
    assert info is not None and info.client == CLIENT and info.access == access
    assert await introspect(auth.pool, token["value"], ("quote", "read", None)) is not None
    assert (
        await introspect(auth.pool, token["value"], ("incoming-payment", "read-all", None)) is None
    )
    assert await introspect(auth.pool, token["value"], ("outgoing-payment", "create", None)) is None
    assert await introspect(auth.pool, "not-a-token") is None


async def test_an_identifier_limits_the_grant_to_that_wallet_address(auth: Auth) -> None:
    bob = "https://wallet.test/bob"
    access = [{"type": "incoming-payment", "actions": ["create"], "identifier": bob}]
    token = (await auth.grant(access)).json()["access_token"]["value"]
    assert await introspect(auth.pool, token, ("incoming-payment", "create", bob)) is not None
    assert await introspect(auth.pool, token, ("incoming-payment", "create", CLIENT)) is None


async def test_rotation_gives_a_new_token_and_the_old_one_stops_working(auth: Auth) -> None:
    first = (await auth.grant()).json()["access_token"]
    rotated = await auth.send("POST", first["manage"], token=first["value"])
    assert rotated.status_code == 200, rotated.text
    second = rotated.json()["access_token"]
    assert set(second) == {"value", "manage", "expires_in", "access"}
    assert second["value"] != first["value"] and second["manage"] != first["manage"]
    assert second["access"] == INCOMING
    assert await introspect(auth.pool, first["value"]) is None
    assert await introspect(auth.pool, second["value"]) is not None

    before = await auth.rows()
    again = await auth.send("POST", first["manage"], token=first["value"])
    assert again.status_code == 404 and again.json()["error"]["code"] == "invalid_rotation"
    revoke_old = await auth.send("DELETE", first["manage"], token=first["value"])
    assert revoke_old.status_code == 401 and revoke_old.json()["error"]["code"] == "invalid_client"
    # The new token's value does not manage the old token's URL either.
    crossed = await auth.send("POST", first["manage"], token=second["value"])
    assert crossed.status_code == 404
    assert await auth.rows() == before


async def test_revocation_ends_the_token_and_a_revoked_token_manages_nothing(auth: Auth) -> None:
    token = (await auth.grant()).json()["access_token"]
    revoked = await auth.send("DELETE", token["manage"], token=token["value"])
    assert revoked.status_code == 204
    assert await introspect(auth.pool, token["value"]) is None
    before = await auth.rows()
    assert before[1][0][3] is True
    rotate = await auth.send("POST", token["manage"], token=token["value"])
    assert rotate.status_code == 404 and rotate.json()["error"]["code"] == "invalid_rotation"
    again = await auth.send("DELETE", token["manage"], token=token["value"])
    assert again.status_code == 401
    assert await auth.rows() == before


async def test_cancelling_the_grant_revokes_its_tokens(auth: Auth) -> None:
    body = (await auth.grant()).json()
    cont = body["continue"]
    value = cont["access_token"]["value"]
    # Grants are approved at once: nothing to continue.
    pending = await auth.send("POST", cont["uri"], token=value)
    assert pending.status_code == 401 and pending.json()["error"]["code"] == "request_denied"
    wrong = await auth.send("DELETE", cont["uri"], token=body["access_token"]["value"])
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_continuation"
    cancelled = await auth.send("DELETE", cont["uri"], token=value)
    assert cancelled.status_code == 204
    assert await introspect(auth.pool, body["access_token"]["value"]) is None
    [grants, tokens] = await auth.rows()
    assert grants[0][1] == "FINALIZED" and tokens[0][3] is True
    rotate = await auth.send(
        "POST", body["access_token"]["manage"], token=body["access_token"]["value"]
    )
    assert rotate.status_code == 404


async def test_bad_grant_requests_are_refused_and_change_nothing(auth: Auth) -> None:
    other = Ed25519PrivateKey.generate()
    good = {"client": CLIENT, "access_token": {"access": INCOMING}}
    tampered = json.dumps(
        {"client": CLIENT, "access_token": {"access": [{"type": "quote", "actions": ["create"]}]}},
        separators=(",", ":"),
    ).encode()
    cases: list[tuple[str, Any, int, str]] = [
        ("unsigned", auth.grant(signed=False), 401, "invalid_client"),
        ("wrong key", auth.grant(key=other), 401, "invalid_client"),
        ("skewed created", auth.grant(created=int(time.time()) - 3600), 401, "invalid_client"),
        ("future created", auth.grant(created=int(time.time()) + 3600), 401, "invalid_client"),
        (
            "tampered body",
            auth.send("POST", auth.url, good, tamper=tampered),
            401,
            "invalid_client",
        ),
        (
            "unknown client",
            auth.send("POST", auth.url, {**good, "client": "https://wallet.test/nobody"}),
            400,
            "invalid_client",
        ),
        (
            "remote client",
            auth.send("POST", auth.url, {**good, "client": "https://elsewhere.test/x"}),
            400,
            "invalid_client",
        ),
        (
            "client by jwk",
            auth.send("POST", auth.url, {**good, "client": {"jwk": {"kid": "k"}}}),
            400,
            "invalid_client",
        ),
        (
            "unknown access type",
            auth.grant([{"type": "coffee", "actions": ["read"]}]),
            400,
            "invalid_request",
        ),
        (
            "unknown action",
            auth.grant([{"type": "quote", "actions": ["complete"]}]),
            400,
            "invalid_request",
        ),
        (
            "outgoing payment needs interaction",
            auth.grant([{"type": "outgoing-payment", "actions": ["create"], "identifier": CLIENT}]),
            400,
            "invalid_request",
        ),
        ("no access", auth.send("POST", auth.url, {"client": CLIENT}), 400, "invalid_request"),
        ("not json", auth.send("POST", auth.url, "x", tamper=b"{nope"), 400, "invalid_request"),
    ]
    before = await auth.rows()
    for name, call, status, code in cases:
        response = await call
        assert response.status_code == status, (name, response.text)
        assert response.json()["error"]["code"] == code, name
    assert await auth.rows() == before == [[], []]


async def test_token_management_needs_the_clients_signature(auth: Auth) -> None:
    token = (await auth.grant()).json()["access_token"]
    before = await auth.rows()
    other = Ed25519PrivateKey.generate()
    refusals = [
        (await auth.send("POST", token["manage"], token=token["value"], key=other), 401),
        (await auth.send("DELETE", token["manage"], token=token["value"], signed=False), 401),
        (await auth.send("POST", token["manage"], signed=False), 401),
        (
            await auth.send(
                "DELETE", token["manage"], token=token["value"], created=int(time.time()) - 600
            ),
            401,
        ),
        (await auth.send("POST", auth.url + "token/not-a-uuid", token=token["value"]), 404),
    ]
    for response, status in refusals:
        assert response.status_code == status, response.text
        assert "error" in response.json()
    assert await auth.rows() == before
    assert await introspect(auth.pool, token["value"]) is not None


@pytest.mark.interop
async def test_the_open_payments_client_requests_rotates_and_revokes(
    auth: Auth, tmp_path: Path
) -> None:
    pem = tmp_path / "alice.pem"
    pem.write_bytes(private_key_to_pem(auth.key))
    async with node_script("open_payments_grants.js", CLIENT, str(pem), auth.kid) as js:
        granted = await js.command({"op": "grant", "url": auth.url.rstrip("/"), "access": INCOMING})
        assert granted["ok"], granted
        token = granted["body"]["access_token"]
        assert token["access"] == INCOMING
        assert await introspect(auth.pool, token["value"], ("incoming-payment", "create", None))

        rotated = await js.command(
            {"op": "rotate", "url": token["manage"], "accessToken": token["value"]}
        )
        assert rotated["ok"], rotated
        new = rotated["body"]["access_token"]
        assert await introspect(auth.pool, token["value"]) is None
        assert await introspect(auth.pool, new["value"]) is not None

        stale = await js.command(
            {"op": "rotate", "url": token["manage"], "accessToken": token["value"]}
        )
        assert not stale["ok"] and stale["status"] == 404, stale

        revoked = await js.command(
            {"op": "revoke", "url": new["manage"], "accessToken": new["value"]}
        )
        assert revoked["ok"], revoked
        assert await introspect(auth.pool, new["value"]) is None

        outgoing = await js.command(
            {
                "op": "grant",
                "url": auth.url,
                "access": [
                    {"type": "outgoing-payment", "actions": ["create"], "identifier": CLIENT}
                ],
            }
        )
        assert not outgoing["ok"] and outgoing["status"] == 400, outgoing

        second = await js.command({"op": "grant", "url": auth.url, "access": INCOMING})
        cont = second["body"]["continue"]
        cancelled = await js.command(
            {"op": "cancel", "url": cont["uri"], "accessToken": cont["access_token"]["value"]}
        )
        assert cancelled["ok"], cancelled
        assert await introspect(auth.pool, second["body"]["access_token"]["value"]) is None


async def test_kiungo_auth_serves_grants_from_two_processes(
    auth: Auth, database_url: str, redis_server_url: str
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_server_url,
        "AUTH_PORT": str(port),
        "AUTH_SERVER_GRANT_URL": url,
        "ACCESS_TOKEN_EXPIRY_SECONDS": "90",
    }
    process = await asyncio.create_subprocess_exec(
        KIUNGO, "auth", "--processes", "2", env=env, stdout=asyncio.subprocess.DEVNULL
    )
    try:
        served = Auth(url + "/", auth.pool, auth.http, auth.key, auth.kid)
        for _ in range(300):
            with contextlib.suppress(httpx.TransportError):
                response = await served.grant()
                break
            await asyncio.sleep(0.05)
        assert response.status_code == 200, response.text
        assert (await auth.http.get(f"{url}/livez")).json() == {"status": "ok"}
        ready = await auth.http.get(f"{url}/readyz")
        assert ready.status_code == 200 and ready.json() == {"status": "ok"}
        token = response.json()["access_token"]
        assert token["expires_in"] == 90 and token["manage"].startswith(f"{url}/token/")
        # Any process manages a token another issued: the state is only in Postgres.
        for _ in range(4):
            rotated = await served.send("POST", token["manage"], token=token["value"])
            assert rotated.status_code == 200, rotated.text
            token = rotated.json()["access_token"]
        assert await introspect(auth.pool, token["value"]) is not None
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 20) == 0


async def test_deeply_nested_or_oversized_bodies_are_refused_as_bad_requests(auth: Auth) -> None:
    for body in (b"[" * 50_000, b'{"a":' * 20_000, b" " * (65 * 1024)):
        response = await auth.http.post(
            auth.url, content=body, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "invalid_request"
    assert await auth.rows() == [[], []]


async def test_an_expired_token_authorizes_nothing_but_can_still_be_rotated(auth: Auth) -> None:
    body = {"client": {"walletAddress": CLIENT}, "access_token": {"access": INCOMING}}
    granted = await auth.send("POST", auth.url, body)  # the client's object form
    assert granted.status_code == 200, granted.text
    token = granted.json()["access_token"]
    await auth.pool.execute("UPDATE grant_access_tokens SET expires_at = now() - interval '1 s'")
    assert await introspect(auth.pool, token["value"]) is None
    # As Rafiki: rotation is how a client renews an expired token.
    rotated = await auth.send("POST", token["manage"], token=token["value"])
    assert rotated.status_code == 200, rotated.text
    assert await introspect(auth.pool, rotated.json()["access_token"]["value"]) is not None


async def test_readyz_is_503_without_postgres_and_livez_still_200(
    auth: Auth, database_url: str
) -> None:
    pool = await create_pool(database_url)
    await pool.close()  # every acquire now fails, as with Postgres gone
    async with receiver_client(refuse_private=True) as http:
        app = auth_app(pool, "http://auth.test", client_keys=ClientKeys(pool, http))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://auth.test") as client:
            assert (await client.get("/livez")).status_code == 200
            ready = await client.get("/readyz")
            assert ready.status_code == 503
            assert set(ready.json()["reason"]) == {"postgres"}
