"""Open Payments end to end between two full Kiungo nodes (connector, backend and authorization
server processes each, own databases and Redis key prefixes): an app using the unmodified
``@interledger/open-payments`` client (tests/js/open_payments_grants.js), whose client is
alice's wallet address on A (its key made through A's admin API, read by B's servers over
HTTP), pays bob's incoming payment on B from alice's wallet on A. The account holder's consent
is given through A's interaction API as an identity provider calls it; the operator funds the
payment through A's admin API. One pair of nodes serves the module."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from tests.interop.node import NodeProcess, node_script
from tests.network.harness import (
    FullNode,
    full_node,
    fund_outgoing_payment,
    incoming_payment,
    liquidity,
    outgoing_payment,
    peer_both_ways,
    start_service,
    stop_service,
    wait_incoming_payment,
    wait_outgoing_payment,
)

from kiungo.openpayments.jwk import private_key_to_pem, public_key_to_jwk

pytestmark = pytest.mark.interop

MAX_PACKET = 10
IDP_URL = "https://idp.test/consent"
IDP_SECRET = secrets.token_hex(16)
FINISH_URI = "https://app.test/finished"
# The worker's lease on a payment (kiungo.connector.sending.LEASE): a killed worker's payment
# is taken up again once it has run out.
LEASE_SECONDS = 10
KEY = """mutation($i: CreateWalletAddressKeyInput!) {
  createWalletAddressKey(input: $i) { walletAddressKey { id } } }"""


def usd(value: int) -> dict[str, Any]:
    return {"value": str(value), "assetCode": "USD", "assetScale": 2}


@dataclass
class Pair:
    a: FullNode
    b: FullNode
    a_peer: str
    b_peer: str
    alice_id: str
    alice: str
    bob: str
    pem: Path
    kid: str


@pytest.fixture(scope="module")
async def pair(
    postgres_server_url: str, redis_server_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Pair]:
    idp = {"IDENTITY_SERVER_URL": IDP_URL, "IDENTITY_SERVER_SECRET": IDP_SECRET}
    async with (
        httpx.AsyncClient(timeout=60) as client,
        full_node(
            "alpha", postgres_server_url, redis_server_url, client, auth=True,
            # One retry (1 s): a resumed payment that cannot finish ends in time.
            extra_env={**idp, "MAX_OUTGOING_PAYMENT_RETRY_ATTEMPTS": "1"},
        ) as a,
        full_node("beta", postgres_server_url, redis_server_url, client, auth=True) as b,
    ):  # fmt: skip
        a_usd = await a.create_asset("USD")
        b_usd = await b.create_asset("USD")
        a_peer, b_peer = await peer_both_ways(a, a_usd, b, b_usd, max_packet_amount=MAX_PACKET)
        alice_id, alice = await a.create_wallet(a_usd, "/alice")
        _, bob = await b.create_wallet(b_usd, "/bob")
        # The app's key: alice's, made through A's admin API.
        key, kid = Ed25519PrivateKey.generate(), "app-key-1"
        jwk = public_key_to_jwk(key.public_key(), kid)
        await a.gql(
            KEY,
            {"i": {"walletAddressId": alice_id,
                   "jwk": {k: jwk[k] for k in ("kid", "x", "alg", "kty", "crv")}}},
        )  # fmt: skip
        pem = tmp_path_factory.mktemp("app") / "alice.pem"
        pem.write_bytes(private_key_to_pem(key))
        yield Pair(a, b, a_peer, b_peer, alice_id, alice, bob, pem, kid)


class App:
    """The app: the Open Payments client (signing as alice's key) and its browser."""

    def __init__(self, pair: Pair, js: NodeProcess) -> None:
        self.pair = pair
        self.js = js
        self.tokens: dict[str, str] = {}

    async def ok(self, request: dict[str, Any]) -> Any:
        answer = await self.js.command(request)
        assert answer["ok"], (request["op"], answer)
        return answer["body"]

    async def incoming_payment(self, amount: int) -> dict[str, Any]:
        """An incoming payment of ``amount`` on bob's wallet address (B), with a grant of B's
        authorization server (kept for reading it later)."""
        bob = await self.ok({"op": "getWalletAddress", "url": self.pair.bob})
        if "incoming" not in self.tokens:
            access = [{"type": "incoming-payment", "actions": ["create", "read"],
                       "identifier": self.pair.bob}]  # fmt: skip
            granted = await self.ok({"op": "grant", "url": bob["authServer"], "access": access})
            self.tokens["incoming"] = granted["access_token"]["value"]
        made: dict[str, Any] = await self.ok(
            {"op": "createIncoming", "url": bob["resourceServer"],
             "accessToken": self.tokens["incoming"],
             "body": {"walletAddress": self.pair.bob, "incomingAmount": usd(amount)}}
        )  # fmt: skip
        return made

    async def quote(self, receiver: str) -> dict[str, Any]:
        """A's quote of ``receiver`` from alice, with no amount (what it still expects)."""
        alice = await self.ok({"op": "getWalletAddress", "url": self.pair.alice})
        if "quote" not in self.tokens:
            access = [{"type": "quote", "actions": ["create", "read"]}]
            granted = await self.ok({"op": "grant", "url": alice["authServer"], "access": access})
            self.tokens["quote"] = granted["access_token"]["value"]
        made: dict[str, Any] = await self.ok(
            {"op": "createQuote", "url": alice["resourceServer"],
             "accessToken": self.tokens["quote"],
             "body": {"walletAddress": self.pair.alice, "receiver": receiver, "method": "ilp"}}
        )  # fmt: skip
        return made

    async def outgoing_grant(self, limits: dict[str, Any]) -> str:
        """An interactive outgoing-payment grant on alice's wallet address: consent through
        A's interaction API, the finish redirect's hash checked, then continuation."""
        alice = await self.ok({"op": "getWalletAddress", "url": self.pair.alice})
        access = [{"type": "outgoing-payment", "actions": ["create", "read", "list"],
                   "identifier": self.pair.alice, "limits": limits}]  # fmt: skip
        nonce = secrets.token_hex(8)
        finish = {"method": "redirect", "uri": FINISH_URI, "nonce": nonce}
        interact = {"start": ["redirect"], "finish": finish}
        granted = await self.ok(
            {"op": "grant", "url": alice["authServer"], "access": access, "interact": interact}
        )
        assert "access_token" not in granted, granted
        ref = await self.consent(granted, access, nonce, alice["authServer"])
        cont = granted["continue"]
        continued = await self.ok(
            {"op": "continue", "url": cont["uri"],
             "accessToken": cont["access_token"]["value"], "interactRef": ref}
        )  # fmt: skip
        assert continued["access_token"]["access"] == access, continued
        token: str = continued["access_token"]["value"]
        return token

    async def consent(
        self, granted: dict[str, Any], access: list[dict[str, Any]], nonce: str, grant_url: str
    ) -> str:
        """The browser goes to the interaction, the identity provider reads the grant and
        accepts it (``x-idp-secret``), the browser finishes at the app: its
        ``interact_ref`` once the hash is the one GNAP defines."""
        auth = self.pair.a.auth_url
        async with httpx.AsyncClient(timeout=30) as browser, httpx.AsyncClient(timeout=30) as idp:
            started = await browser.get(granted["interact"]["redirect"])
            assert started.status_code == 302, started.text
            to_idp = started.headers["location"]
            assert to_idp.startswith(IDP_URL + "?"), to_idp
            query = {k: v[0] for k, v in parse_qs(urlsplit(to_idp).query).items()}
            where = f"{auth}/grant/{query['interactId']}/{query['nonce']}"
            headers = {"x-idp-secret": IDP_SECRET}
            shown = await idp.get(where, headers=headers)
            assert shown.status_code == 200, shown.text
            assert shown.json()["access"] == access, shown.json()
            assert (await idp.post(f"{where}/accept", headers=headers)).status_code == 202
            finished = await browser.get(
                f"{auth}/interact/{query['interactId']}/{query['nonce']}/finish"
            )
            assert finished.status_code == 302, finished.text
        back = finished.headers["location"]
        assert back.startswith(FINISH_URI + "?"), back
        params = {k: v[0] for k, v in parse_qs(urlsplit(back).query).items()}
        ref = params["interact_ref"]
        # RFC 9635 §4.2.3: the client's nonce, the server's, the reference and the grant
        # endpoint the app asked (``<authServer>/``), as Open Payments encodes it.
        server_nonce = granted["interact"]["finish"]
        endpoint = grant_url.rstrip("/") + "/"
        data = f"{nonce}\n{server_nonce}\n{ref}\n{endpoint}".encode()
        assert params["hash"] == base64.b64encode(hashlib.sha256(data).digest()).decode()
        return ref

    async def pay(self, quote: dict[str, Any], token: str) -> dict[str, Any]:
        alice = await self.ok({"op": "getWalletAddress", "url": self.pair.alice})
        made: dict[str, Any] = await self.ok(
            {"op": "createOutgoing", "url": alice["resourceServer"], "accessToken": token,
             "body": {"walletAddress": self.pair.alice, "quoteId": quote["id"]}}
        )  # fmt: skip
        return made

    async def spent(self, token: str) -> dict[str, Any]:
        alice = await self.ok({"op": "getWalletAddress", "url": self.pair.alice})
        spent: dict[str, Any] = await self.ok(
            {"op": "grantSpent", "url": alice["resourceServer"], "accessToken": token}
        )
        return spent


@pytest.fixture
async def app(pair: Pair) -> AsyncIterator[App]:
    async with node_script("open_payments_grants.js", pair.alice, str(pair.pem), pair.kid) as js:
        yield App(pair, js)


async def _books(pair: Pair) -> tuple[int, int]:
    """(what A's books say A has paid B, what B's books say B was paid), from their peers'
    liquidity (each started at 1,000,000)."""
    a_paid = await liquidity(pair.a, "peer", pair.a_peer) - 1_000_000
    b_paid = 1_000_000 - await liquidity(pair.b, "peer", pair.b_peer)
    return a_paid, b_paid


async def _ledgers_check(pair: Pair) -> None:
    checks = await asyncio.gather(pair.a.ledger_check(), pair.b.ledger_check())
    for node, (code, report) in zip((pair.a, pair.b), checks, strict=True):
        assert code == 0, f"{node.name}: {report}"


async def test_an_app_pays_an_incoming_payment_on_b_from_a_wallet_on_a(app: App) -> None:
    pair = app.pair
    incoming = await app.incoming_payment(500)
    assert incoming["id"].startswith(f"{pair.b.connector_url}/incoming-payments/")
    b_payment = incoming["id"].rsplit("/", 1)[1]

    quote = await app.quote(incoming["id"])
    assert quote["receiver"] == incoming["id"] and quote["receiveAmount"] == usd(500), quote
    debit = quote["debitAmount"]
    assert debit == usd(506), debit  # same asset, no fee: ceil(500 / 0.99), the slippage's room
    token = await app.outgoing_grant({"debitAmount": debit, "receiver": incoming["id"]})
    before = await _books(pair)
    created = await app.pay(quote, token)
    assert created["receiver"] == incoming["id"] and created["sentAmount"] == usd(0), created
    assert created["grantSpentDebitAmount"] == debit, created
    payment_id = created["id"].rsplit("/", 1)[1]
    assert (await outgoing_payment(pair.a, payment_id))["state"] == "FUNDING"

    await fund_outgoing_payment(pair.a, payment_id)  # the operator
    paid = await wait_outgoing_payment(pair.a, payment_id)
    assert paid["state"] == "COMPLETED", paid
    assert paid["sentAmount"] == {"value": "500", "assetCode": "USD"}
    received = await wait_incoming_payment(pair.b, b_payment)
    assert received["receivedAmount"] == {"value": "500", "assetCode": "USD"}
    after = await _books(pair)
    assert (after[0] - before[0], after[1] - before[1]) == (500, 500)

    # What the app reads back: its payment sent, B's incoming payment completed, the grant
    # spent exactly the quote.
    read = await app.ok({"op": "getOutgoing", "url": created["id"], "accessToken": token})
    assert read["sentAmount"] == usd(500) and read["failed"] is False, read
    on_b = await app.ok(
        {"op": "getIncoming", "url": incoming["id"], "accessToken": app.tokens["incoming"]}
    )
    assert on_b["completed"] is True and on_b["receivedAmount"] == usd(500), on_b
    assert await app.spent(token) == {"spentDebitAmount": debit, "spentReceiveAmount": usd(500)}
    # Under that grant nothing more: its debit amount is spent, and it names one receiver.
    again = await app.quote((await app.incoming_payment(100))["id"])
    refused = await app.js.command(
        {"op": "createOutgoing", "url": pair.a.connector_url, "accessToken": token,
         "body": {"walletAddress": pair.alice, "quoteId": again["id"]}}
    )  # fmt: skip
    assert not refused["ok"] and refused["status"] == 403, refused
    await _ledgers_check(pair)


async def test_an_open_payments_payment_survives_its_connector_being_killed(app: App) -> None:
    """A's connector (the worker sending the payment) is SIGKILLed once B has received some of
    a 200-packet payment, and started again; once the dead worker's lease has run out the
    payment is taken up again, reads over Open Payments what B's incoming payment got, and
    ends COMPLETED: B received exactly its amount, both books and both ledgers agree."""
    pair = app.pair
    amount = 2_000
    incoming = await app.incoming_payment(amount)
    b_payment = incoming["id"].rsplit("/", 1)[1]
    quote = await app.quote(incoming["id"])
    debit = int(quote["debitAmount"]["value"])
    token = await app.outgoing_grant({"debitAmount": quote["debitAmount"]})
    payment_id = (await app.pay(quote, token))["id"].rsplit("/", 1)[1]
    before = await _books(pair)

    await fund_outgoing_payment(pair.a, payment_id)
    for _ in range(2000):
        received = int((await incoming_payment(pair.b, b_payment))["receivedAmount"]["value"])
        if received > 0:
            break
        await asyncio.sleep(0.005)
    else:
        raise AssertionError("B received nothing")
    await stop_service(pair.a, "connector", kill=True)
    killed_at = time.monotonic()
    await asyncio.sleep(0.5)
    at_kill = int((await incoming_payment(pair.b, b_payment))["receivedAmount"]["value"])
    assert 0 < at_kill < amount, at_kill
    assert (await outgoing_payment(pair.a, payment_id))["state"] == "SENDING"

    await start_service(pair.a, "connector")
    view = await wait_outgoing_payment(pair.a, payment_id, seconds=LEASE_SECONDS + 20)
    assert time.monotonic() - killed_at > LEASE_SECONDS - 5  # not before the lease ran out
    assert view["state"] == "COMPLETED", view
    done = await wait_incoming_payment(pair.b, b_payment)
    assert done["receivedAmount"]["value"] == str(amount)
    after = await _books(pair)
    a_paid, b_paid = after[0] - before[0], after[1] - before[1]
    assert b_paid == amount
    assert int(view["sentAmount"]["value"]) == a_paid
    assert await liquidity(pair.a, "outgoingPayment", payment_id) == debit - a_paid
    # A never saw the Fulfills of the packets in flight when it died: at most 10 packets.
    assert 0 <= b_paid - a_paid <= 10 * MAX_PACKET, (a_paid, b_paid)
    assert await app.spent(token) == {
        "spentDebitAmount": quote["debitAmount"],
        "spentReceiveAmount": usd(amount),
    }
    await _ledgers_check(pair)
