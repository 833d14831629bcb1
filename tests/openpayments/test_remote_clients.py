"""Clients that are not wallet addresses of this node: a wallet address of another node (its
``jwks.json`` read over HTTP from a real second server, bounded, kept a few minutes, refused
when hostile) and a client known by the JWK it sends. Through the authorization server on a
socket, and through the resource server of a whole node with the real Open Payments client."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route
from tests.interop.node import node_script
from tests.loopback import serve
from tests.openpayments.gnap_harness import INCOMING, Auth, auth_server  # noqa: F401 (fixture auth)
from tests.openpayments.resource_harness import (  # noqa: F401 (fixture op_node)
    Client,
    OpNode,
    incoming_access,
    op_node_fixture,
)

from kiungo.auth.app import auth_app
from kiungo.openpayments.client_signatures import ClientKeys, jwk_client_id
from kiungo.openpayments.grants import introspect
from kiungo.openpayments.http_signatures import sign_request
from kiungo.openpayments.jwk import private_key_to_pem, public_key_to_jwk
from kiungo.runtime.receiver_fetch import receiver_client


@dataclass
class KeyServer:
    """Another node's wallet address ``<url>/carol`` publishing ``keys`` at ``/carol/jwks.json``
    (or misbehaving as ``mode`` says), counting the reads."""

    url: str = ""
    keys: list[dict[str, Any]] = field(default_factory=list)
    mode: str = "ok"
    hits: int = 0
    released: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def wallet(self) -> str:
        return f"{self.url}/carol"

    async def jwks(self, request: Request) -> Response:
        self.hits += 1
        body = json.dumps({"keys": self.keys}).encode()
        match self.mode:
            case "garbage":
                return Response(b"\x00{not json", media_type="application/json")
            case "not a key set":
                return JSONResponse({"keys": "nope"})
            case "too many keys":
                return JSONResponse({"keys": [{"kid": str(n)} for n in range(1000)]})
            case "huge":
                return Response(b" " * (2 * 1024 * 1024) + body, media_type="application/json")
            case "html":
                return Response(body, media_type="text/html")
            case "redirect":
                return RedirectResponse(f"{self.url}/elsewhere/jwks.json", 302)
            case "missing":
                return JSONResponse({"error": "not found"}, 404)
            case "gzip":
                headers = {"Content-Encoding": "gzip"}
                return Response(body, media_type="application/json", headers=headers)
            case "unhurried":
                await asyncio.sleep(0.2)
            case "slow":
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(30):
                        await self.released.wait()
            case "trickle":

                async def drip() -> AsyncIterator[bytes]:
                    for byte in body:
                        if self.released.is_set():
                            return
                        yield bytes([byte])
                        await asyncio.sleep(0.2)

                return StreamingResponse(drip(), media_type="application/json")
        return Response(body, media_type="application/json")


@contextlib.asynccontextmanager
async def key_server() -> AsyncIterator[KeyServer]:
    server = KeyServer()
    routes = [Route("/{path:path}/jwks.json", server.jwks, methods=["GET"])]
    async with serve(Starlette(routes=routes)) as url:
        server.url = url
        try:
            yield server
        finally:
            server.released.set()  # slow answers end, so the server can stop


@contextlib.asynccontextmanager
async def auth_with(
    auth: Auth,
    *,
    refuse_private: bool = False,
    max_seconds: float = 10.0,
    clock: Callable[[], float] = time.monotonic,
) -> AsyncIterator[Auth]:
    """Another authorization server on ``auth``'s database, reading keys as told, each read
    within ``max_seconds`` (by default ample for an honest key server on a loaded machine)."""
    holder: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await holder["app"](scope, receive, send)

    async with receiver_client(refuse_private=refuse_private) as http, serve(app) as url:
        keys = ClientKeys(auth.pool, http, max_seconds=max_seconds, clock=clock)
        holder["app"] = auth_app(auth.pool, url, client_keys=keys)
        yield Auth(url + "/", auth.pool, auth.http, auth.key, auth.kid)


def grant_body(client: Any, access: Any = None) -> dict[str, Any]:
    return {"client": client, "access_token": {"access": access or INCOMING}}


async def test_a_wallet_address_of_another_node_is_verified_with_its_jwks(auth: Auth) -> None:
    key = Ed25519PrivateKey.generate()
    moment = [0.0]
    async with key_server() as keys, auth_with(auth, clock=lambda: moment[0]) as remote:
        keys.keys = [public_key_to_jwk(key.public_key(), "carol-1")]
        remote.key, remote.kid = key, "carol-1"
        # A request refused for its own sake reads nothing: unsigned, or outside the skew.
        unsigned = await remote.send("POST", remote.url, grant_body(keys.wallet), signed=False)
        skewed = await remote.send(
            "POST", remote.url, grant_body(keys.wallet), created=int(time.time()) - 3600
        )
        assert unsigned.status_code == skewed.status_code == 401
        assert keys.hits == 0
        granted = await remote.send("POST", remote.url, grant_body(keys.wallet))
        assert granted.status_code == 200, granted.text
        token = granted.json()["access_token"]
        info = await introspect(auth.pool, token["value"])
        assert info is not None and info.client == keys.wallet and info.client_jwk is None
        assert keys.hits == 1

        # Kept: more requests read nothing, token management included.
        again = await remote.send("POST", remote.url, grant_body({"walletAddress": keys.wallet}))
        assert again.status_code == 200, again.text
        rotated = await remote.send("POST", token["manage"], token=token["value"])
        assert rotated.status_code == 200, rotated.text
        assert keys.hits == 1

        # A key it lacks reads the set again, once per request.
        new = Ed25519PrivateKey.generate()
        keys.keys.append(public_key_to_jwk(new.public_key(), "carol-2"))
        remote.key, remote.kid = new, "carol-2"
        assert (await remote.send("POST", remote.url, grant_body(keys.wallet))).status_code == 200
        assert keys.hits == 2
        remote.kid = "carol-unknown"
        unknown = await remote.send("POST", remote.url, grant_body(keys.wallet))
        assert unknown.status_code == 401 and unknown.json()["error"]["code"] == "invalid_client"
        assert keys.hits == 3
        # A wrong signature with a kept kid is refused without reading.
        remote.key, remote.kid = Ed25519PrivateKey.generate(), "carol-1"
        wrong = await remote.send("POST", remote.url, grant_body(keys.wallet))
        assert wrong.status_code == 401 and keys.hits == 3

        # After five minutes the set is read again: a key removed since stops working.
        keys.keys = keys.keys[1:]
        remote.key, remote.kid = key, "carol-1"
        assert (await remote.send("POST", remote.url, grant_body(keys.wallet))).status_code == 200
        moment[0] += 301
        removed = await remote.send("POST", remote.url, grant_body(keys.wallet))
        assert removed.status_code == 401, removed.text
        assert keys.hits == 4


HOSTILE = (
    "garbage",
    "not a key set",
    "too many keys",
    "huge",
    "html",
    "redirect",
    "missing",
    "gzip",
    "slow",
    "trickle",
)


async def test_a_hostile_key_server_is_an_invalid_client_in_bounded_time(auth: Auth) -> None:
    key = Ed25519PrivateKey.generate()
    async with key_server() as keys, auth_with(auth, max_seconds=0.5) as remote:
        keys.keys = [public_key_to_jwk(key.public_key(), "carol-1")]
        remote.key, remote.kid = key, "carol-1"
        before = await auth.rows()
        for mode in HOSTILE:
            keys.mode = mode
            started = time.monotonic()
            response = await remote.send("POST", remote.url, grant_body(keys.wallet))
            # Ample slack over the 0.5 s: the slow server answers after 30 s, the trickle takes
            # over 20 s.
            assert time.monotonic() - started < 5, mode
            assert response.status_code == 400, (mode, response.text)
            error = response.json()["error"]
            assert error["code"] == "invalid_client" and "jwks.json" in error["description"]
        assert keys.hits == len(HOSTILE)
        assert await auth.rows() == before


async def test_private_key_servers_are_refused_when_the_node_refuses_private_receivers(
    auth: Auth,
) -> None:
    key = Ed25519PrivateKey.generate()
    async with key_server() as keys, auth_with(auth, refuse_private=True) as remote:
        keys.keys = [public_key_to_jwk(key.public_key(), "carol-1")]
        remote.key, remote.kid = key, "carol-1"
        for client in (keys.wallet, "ftp://wallet.test/x", "https://user@wallet.test/x"):
            response = await remote.send("POST", remote.url, grant_body(client))
            assert response.status_code == 400, response.text
            assert response.json()["error"]["code"] == "invalid_client"
        assert keys.hits == 0
        assert await auth.rows() == [[], []]


async def test_a_client_known_by_its_jwk_is_verified_with_it_for_the_grants_life(
    auth: Auth,
) -> None:
    key = Ed25519PrivateKey.generate()
    jwk = {k: v for k, v in public_key_to_jwk(key.public_key(), "app-key").items() if k != "use"}
    auth.key, auth.kid = key, "app-key"
    granted = await auth.send("POST", auth.url, grant_body({"jwk": jwk}))
    assert granted.status_code == 200, granted.text
    body = granted.json()
    token = body["access_token"]
    info = await introspect(auth.pool, token["value"], ("incoming-payment", "create", None))
    assert info is not None and info.client_jwk == jwk
    assert info.client == jwk_client_id(jwk)
    assert info.client.startswith("urn:ietf:params:oauth:jwk-thumbprint:sha-256:")

    other = Ed25519PrivateKey.generate()
    before = await auth.rows()
    refused = await auth.send("POST", token["manage"], token=token["value"], key=other)
    assert refused.status_code == 401 and await auth.rows() == before
    rotated = await auth.send("POST", token["manage"], token=token["value"])
    assert rotated.status_code == 200, rotated.text
    cont = body["continue"]
    cancelled = await auth.send("DELETE", cont["uri"], token=cont["access_token"]["value"])
    assert cancelled.status_code == 204

    # Another client's key signing for this JWK, or a JWK that is no Ed25519 public key.
    before = await auth.rows()
    bad_jwks: list[Any] = [
        "not an object",
        {**jwk, "d": jwk["x"]},
        {**jwk, "kty": "EC"},
        {**jwk, "x": jwk["x"][:-2]},
        {k: v for k, v in jwk.items() if k != "kid"},
        {**jwk, "use": "enc"},
    ]
    for bad in bad_jwks:
        response = await auth.send("POST", auth.url, grant_body({"jwk": bad}))
        assert response.status_code == 400, (bad, response.text)
        assert response.json()["error"]["code"] == "invalid_client"
    forged = await auth.send("POST", auth.url, grant_body({"jwk": jwk}), key=other)
    assert forged.status_code == 401
    auth.kid = "another-kid"
    renamed = await auth.send("POST", auth.url, grant_body({"jwk": jwk}))
    assert renamed.status_code == 401
    assert await auth.rows() == before


async def test_concurrent_requests_of_a_new_remote_client_make_one_read(auth: Auth) -> None:
    key = Ed25519PrivateKey.generate()
    async with key_server() as keys, auth_with(auth) as remote:
        keys.keys = [public_key_to_jwk(key.public_key(), "carol-1")]
        keys.mode = "unhurried"
        remote.key, remote.kid = key, "carol-1"
        answers = await asyncio.gather(
            *(remote.send("POST", remote.url, grant_body(keys.wallet)) for _ in range(5))
        )
        assert [a.status_code for a in answers] == [200] * 5
        assert keys.hits == 1


@pytest.mark.interop
async def test_the_open_payments_client_of_another_node_creates_an_incoming_payment(
    op_node: OpNode, tmp_path: Path
) -> None:
    """The real client configured with a wallet address served by another HTTP server; the
    authorization server and the resource server both read its keys there."""
    _, bob = await op_node.wallet()
    key = Ed25519PrivateKey.generate()
    pem = tmp_path / "carol.pem"
    pem.write_bytes(private_key_to_pem(key))
    async with key_server() as keys:
        keys.keys = [public_key_to_jwk(key.public_key(), "carol-1")]
        async with node_script("open_payments_grants.js", keys.wallet, str(pem), "carol-1") as js:
            access = incoming_access(["create", "read", "list", "complete"], bob)
            granted = await js.command({"op": "grant", "url": op_node.auth_url, "access": access})
            assert granted["ok"], granted
            token = granted["body"]["access_token"]["value"]
            created = await js.command(
                {
                    "op": "createIncoming",
                    "url": op_node.url,
                    "accessToken": token,
                    "body": {"walletAddress": bob, "incomingAmount": _usd(300)},
                }
            )
            assert created["ok"], created
            payment = created["body"]
            read = await js.command(
                {"op": "getIncoming", "url": payment["id"], "accessToken": token}
            )
            assert read["ok"], read
            assert read["body"]["incomingAmount"] == _usd(300)
            completed = await js.command(
                {"op": "completeIncoming", "url": payment["id"], "accessToken": token}
            )
            assert completed["ok"] and completed["body"]["completed"] is True, completed
        row = await op_node.pool.fetchrow(
            "SELECT client FROM incoming_payments WHERE id = $1",
            uuid.UUID(payment["id"].rsplit("/", 1)[1]),
        )
        assert row["client"] == keys.wallet
        # The resource server refuses the same token signed by a key the server never served.
        stranger = Client(op_node, keys.wallet, "", Ed25519PrivateKey.generate(), "carol-1")
        refused = await stranger.send("GET", payment["id"], token=token)
        assert refused.status_code == 401, refused.text


async def test_a_jwk_client_creates_and_reads_incoming_payments(op_node: OpNode) -> None:
    _, bob = await op_node.wallet()
    key = Ed25519PrivateKey.generate()
    jwk = public_key_to_jwk(key.public_key(), "app-key")
    app = Client(op_node, jwk_client_id(jwk), "", key, "app-key")
    granted = await app.send(
        "POST",
        op_node.auth_url,
        {"client": {"jwk": jwk}, "access_token": {"access": incoming_access(["create", "read"])}},
    )
    assert granted.status_code == 200, granted.text
    token = granted.json()["access_token"]["value"]
    created = await app.create(token, {"walletAddress": bob})
    assert created.status_code == 201, created.text
    payment = created.json()
    read = await app.send("GET", payment["id"], token=token)
    assert read.status_code == 200 and read.json()["id"] == payment["id"], read.text
    forged = Client(op_node, app.url, "", Ed25519PrivateKey.generate(), "app-key")
    refused = await forged.send("GET", payment["id"], token=token)
    assert refused.status_code == 401, refused.text
    signed = sign_request(
        method="GET",
        target_uri=payment["id"],
        headers={"Authorization": f"GNAP {token}"},
        body=None,
        private_key=key,
        key_id="app-key",
        created=int(time.time()) - 3600,
    )
    stale = await op_node.http.get(
        payment["id"], headers={"Authorization": f"GNAP {token}", **signed}
    )
    assert stale.status_code == 401


def _usd(value: int) -> dict[str, Any]:
    return {"value": str(value), "assetCode": "USD", "assetScale": 2}
