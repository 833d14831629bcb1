"""The Open Payments flow between two full nodes, for tests/benchmarks/payments.py: what an app
does to pay a wallet of another node, every request RFC 9421-signed by the app's key (alice's
wallet address on A, its key made through A's admin API; B's servers read it over HTTP).

One iteration, as the Open Payments flow has it:

1. **incoming**: an ``incoming-payment`` grant from B's authorization server, ``POST
   /incoming-payments`` on B's resource server (bob, 1.00 EUR);
2. **quote**: a ``quote`` grant from A's, ``POST /quotes`` on A's with B's incoming payment as
   the receiver and no amount (A reads it over Open Payments and probes it);
3. **consent**: an interactive ``outgoing-payment`` grant limited to the quote's debit amount:
   the browser starts the interaction, the identity provider reads the grant and accepts it
   (``x-idp-secret``), the browser finishes, the app continues with the ``interact_ref``;
4. **outgoing**: ``POST /outgoing-payments`` from the quote;
5. **completion**: the operator funds it (``depositOutgoingPaymentLiquidity``), then A's admin
   API is polled until it is COMPLETED.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from tests.network.harness import FullNode

from kiungo.openpayments.http_signatures import sign_request
from kiungo.openpayments.jwk import public_key_to_jwk

__all__ = ["IDP_SECRET", "IDP_URL", "STEPS", "OpenPaymentsApp"]

IDP_URL = "https://idp.bench/consent"
IDP_SECRET = "payments-bench-idp-secret"
STEPS = ("incoming", "quote", "consent", "outgoing", "completion")
_FINISH = "https://app.bench/finished"
_KEY = """mutation($i: CreateWalletAddressKeyInput!) {
  createWalletAddressKey(input: $i) { walletAddressKey { id } } }"""
_FUND = """mutation($i: DepositOutgoingPaymentLiquidityInput!) {
  depositOutgoingPaymentLiquidity(input: $i) { success } }"""
_STATE = "query($id: String!) { outgoingPayment(id: $id) { state error } }"


class FlowError(RuntimeError):
    pass


@dataclass
class OpenPaymentsApp:
    a: FullNode
    b: FullNode
    alice: str
    bob: str
    http: httpx.AsyncClient
    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    kid: str = "payments-bench-app"
    timings: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STEPS})

    async def register(self, alice_id: str) -> None:
        """Alice's key, through A's admin API."""
        jwk = public_key_to_jwk(self.key.public_key(), self.kid)
        await self.a.gql(
            _KEY,
            {"i": {"walletAddressId": alice_id,
                   "jwk": {k: jwk[k] for k in ("kid", "x", "alg", "kty", "crv")}}},
        )  # fmt: skip

    async def send(
        self, method: str, url: str, body: Any = None, token: str | None = None
    ) -> httpx.Response:
        content = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        headers = {} if token is None else {"Authorization": f"GNAP {token}"}
        headers |= sign_request(
            method=method, target_uri=url, headers=headers, body=content,
            private_key=self.key, key_id=self.kid, created=int(time.time()),
        )  # fmt: skip
        return await self.http.request(method, url, content=content, headers=headers)

    def _ok(self, response: httpx.Response, status: int = 200) -> Any:
        if response.status_code != status:
            raise FlowError(f"{response.request.url}: {response.status_code} {response.text}")
        return response.json()

    async def grant(self, auth_url: str, access: list[dict[str, Any]]) -> str:
        body = {"client": self.alice, "access_token": {"access": access}}
        granted = self._ok(await self.send("POST", auth_url, body))
        token: str = granted["access_token"]["value"]
        return token

    async def consented_grant(
        self, access: list[dict[str, Any]], browser: httpx.AsyncClient
    ) -> str:
        auth = self.a.auth_url
        finish = {"method": "redirect", "uri": _FINISH, "nonce": uuid.uuid4().hex}
        body = {"client": self.alice, "access_token": {"access": access},
                "interact": {"start": ["redirect"], "finish": finish}}  # fmt: skip
        granted = self._ok(await self.send("POST", auth, body))
        browser.cookies.clear()
        started = await browser.get(granted["interact"]["redirect"])
        if started.status_code != 302:
            raise FlowError(f"interaction start: {started.status_code} {started.text}")
        query = {k: v[0] for k, v in parse_qs(urlsplit(started.headers["location"]).query).items()}
        where = f"{auth}/grant/{query['interactId']}/{query['nonce']}"
        idp = {"x-idp-secret": IDP_SECRET}
        self._ok(await self.http.get(where, headers=idp))
        accepted = await self.http.post(f"{where}/accept", headers=idp)
        if accepted.status_code != 202:
            raise FlowError(f"accept: {accepted.status_code} {accepted.text}")
        finished = await browser.get(
            f"{auth}/interact/{query['interactId']}/{query['nonce']}/finish"
        )
        if finished.status_code != 302:
            raise FlowError(f"interaction finish: {finished.status_code} {finished.text}")
        ref = parse_qs(urlsplit(finished.headers["location"]).query)["interact_ref"][0]
        cont = granted["continue"]
        continued = self._ok(
            await self.send(
                "POST", cont["uri"], {"interact_ref": ref}, cont["access_token"]["value"]
            )
        )
        token: str = continued["access_token"]["value"]
        return token

    async def iteration(self, browser: httpx.AsyncClient, poll: float = 0.01) -> None:
        """One payment of 1.00 EUR to bob, from incoming payment to COMPLETED."""
        a, b, marks = self.a, self.b, [time.perf_counter()]
        token = await self.grant(
            b.auth_url,
            [{"type": "incoming-payment", "actions": ["create"], "identifier": self.bob}],
        )
        incoming = self._ok(
            await self.send(
                "POST", f"{b.connector_url}/incoming-payments",
                {"walletAddress": self.bob,
                 "incomingAmount": {"value": "100", "assetCode": "EUR", "assetScale": 2}},
                token,
            ), 201,
        )  # fmt: skip
        marks.append(time.perf_counter())
        token = await self.grant(a.auth_url, [{"type": "quote", "actions": ["create"]}])
        body = {"walletAddress": self.alice, "receiver": incoming["id"], "method": "ilp"}
        quote = self._ok(await self.send("POST", f"{a.connector_url}/quotes", body, token), 201)
        marks.append(time.perf_counter())
        limits = {"debitAmount": quote["debitAmount"]}
        access = [{"type": "outgoing-payment", "actions": ["create", "read"],
                   "identifier": self.alice, "limits": limits}]  # fmt: skip
        token = await self.consented_grant(access, browser)
        marks.append(time.perf_counter())
        body = {"walletAddress": self.alice, "quoteId": quote["id"]}
        payment = self._ok(
            await self.send("POST", f"{a.connector_url}/outgoing-payments", body, token), 201
        )
        marks.append(time.perf_counter())
        payment_id = payment["id"].rsplit("/", 1)[1]
        await a.gql(
            _FUND, {"i": {"outgoingPaymentId": payment_id, "idempotencyKey": str(uuid.uuid4())}}
        )
        while True:
            view = (await a.gql(_STATE, {"id": payment_id}))["outgoingPayment"]
            if view["state"] not in ("FUNDING", "SENDING"):
                break
            await asyncio.sleep(poll)
        if view["state"] != "COMPLETED":
            raise FlowError(f"the payment ended {view}")
        marks.append(time.perf_counter())
        for step, start, end in zip(STEPS, marks[:-1], marks[1:], strict=True):
            self.timings[step].append(end - start)
