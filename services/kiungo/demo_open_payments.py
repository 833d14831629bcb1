"""``kiungo demo --open-payments``: alice's payment to bob made as an Open Payments client app
makes it, rather than through the admin APIs.

The app is a client under alice's wallet address on A: its Ed25519 key is made here and
registered on alice through A's admin API (``createWalletAddressKey``), and every request it
makes is RFC 9421-signed with it by :meth:`kiungo.openpayments.client.OpenPaymentsClient.send`
(bounded in time and bytes; B's servers read the key at ``<alice>/jwks.json`` over HTTP). It
knows only the two wallet addresses; their documents name the servers. The flow:

1. a non-interactive ``incoming-payment`` grant from bob's ``authServer`` (B), and the incoming
   payment on bob's ``resourceServer`` (B);
2. a ``quote`` grant from alice's ``authServer`` (A), and the quote on A with B's incoming
   payment as the receiver and no amount: A reads it over Open Payments under its own node
   identity and probes the path;
3. an interactive ``outgoing-payment`` grant on A, limited to the quote's debit amount and that
   receiver. The account holder consents on A's development consent page: by default the demo
   is the browser (the interaction's redirect with a cookie jar, Accept on the page, the finish
   redirect to the app's finish URI); with ``--consent-in-browser`` the user opens the consent
   URL and accepts, and the app waits for the browser at its finish URI. The app serves that
   URI on a loopback port, checks the finish ``hash`` (RFC 9635 §4.2.3) and continues the grant
   with the ``interact_ref`` for its token;
4. the outgoing payment on A, from the quote; the operator funds it through A's admin API
   (``depositOutgoingPaymentLiquidity``), as Open Payments leaves funding to the operator.

Once it has ended, :meth:`OpenPaymentsApp.read_back` reads both payments back over Open
Payments with the app's tokens.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from redis.asyncio import Redis
from rich.console import Console
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from kiungo.demo_nodes import DemoError, Node, Payment
from kiungo.openpayments.client import OpenPaymentsClient, OpenPaymentsError
from kiungo.openpayments.identity import ClientIdentity
from kiungo.openpayments.interactions import interaction_hash
from kiungo.openpayments.jwk import public_key_to_jwk
from kiungo.runtime.receiver_fetch import (
    FetchedReply,
    ReceiverFetchError,
    exchange,
    receiver_client,
)
from kiungo.runtime.runner import http_server, listening_url
from kiungo.runtime.runner import started as serving

__all__ = ["OpenPaymentsApp"]

# The app's requests and the demo's browser are bounded as every fetch is, generously: they
# reach nodes on this machine, which may be loaded (A's quote reads B and probes the path).
_REQUEST_SECONDS = 30.0
_MAX_PAGE = 64 * 1024
_MAX_REDIRECTS = 5
_KEY = """mutation($i: CreateWalletAddressKeyInput!) {
  createWalletAddressKey(input: $i) { walletAddressKey { id } } }"""
_GRANT = """query($id: String!) { grant(id: $id) { id client state
  access { type actions identifier limits { receiver debitAmount { value assetCode } } } } }"""


def _text(document: Any, *path: str) -> str:
    """The string at ``path`` in an answer (a :class:`DemoError` naming it otherwise)."""
    value = document
    for name in path:
        value = value.get(name) if isinstance(value, dict) else None
    if not isinstance(value, str) or not value:
        raise DemoError(f"the answer has no {'.'.join(path)}: {str(document)[:300]}")
    return value


class _Finish:
    """The app's finish URI, on a loopback port: where the browser returns after consent."""

    def __init__(self) -> None:
        self.returned: asyncio.Future[dict[str, str]] = asyncio.get_running_loop().create_future()

    def app(self) -> Starlette:
        async def finish(request: Request) -> Response:
            if not self.returned.done():
                self.returned.set_result(dict(request.query_params))
            return HTMLResponse(
                "<!doctype html><title>kiungo demo</title>"
                "<p>Back at the app: kiungo demo goes on in its terminal. You may close this tab."
            )

        return Starlette(routes=[Route("/finish", finish, methods=["GET"])])


class OpenPaymentsApp:
    """The app (see the module docstring), for :meth:`running`'s lifetime."""

    def __init__(
        self,
        a: Node,
        client: OpenPaymentsClient,
        browser: httpx.AsyncClient,
        finish_uri: str,
        finish: _Finish,
        console: Console,
        in_browser: bool,
    ) -> None:
        self.a = a
        self.client = client
        self.browser = browser
        self.finish_uri = finish_uri
        self.finish = finish
        self.console = console
        self.in_browser = in_browser
        self.tokens: dict[str, str] = {}
        self.record: dict[str, Any] = {"client": client.identity.wallet_address}

    @classmethod
    @contextlib.asynccontextmanager
    async def running(
        cls, a: Node, ids: dict[str, str], redis: str, console: Console, *, in_browser: bool
    ) -> AsyncIterator[OpenPaymentsApp]:
        """The app of alice (``ids["alice"]`` on ``a``), its key registered through A's admin
        API, its finish URI served. ``redis`` holds nothing of the app's: the client keeps
        node grants there, which the app does not ask for."""
        key, kid = Ed25519PrivateKey.generate(), f"demo-app-{secrets.token_hex(4)}"
        jwk = public_key_to_jwk(key.public_key(), kid)
        await a.gql(
            _KEY,
            {"i": {"walletAddressId": ids["alice"],
                   "jwk": {k: jwk[k] for k in ("kid", "x", "alg", "kty", "crv")}}},
        )  # fmt: skip
        finish = _Finish()
        server = http_server(finish.app(), "127.0.0.1", 0)
        async with (
            contextlib.aclosing(Redis.from_url(redis)) as store,
            receiver_client(refuse_private=False) as http,
            receiver_client(refuse_private=False) as browser,
            serving(server, "demo app's finish server"),
        ):
            client = OpenPaymentsClient(
                ClientIdentity(ids["alice_url"], kid, key),
                http,
                store,
                f"kiungo-demo-app-{secrets.token_hex(4)}:",
                max_seconds=_REQUEST_SECONDS,
            )
            finish_uri = f"{listening_url(server)}/finish"
            yield cls(a, client, browser, finish_uri, finish, console, in_browser)

    # -- requests -----------------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        url: str,
        what: str,
        *,
        body: dict[str, Any] | None = None,
        token: str | None = None,
        status: int = 200,
    ) -> dict[str, Any]:
        try:
            answered, document, raw = await self.client.send(
                method, url, body=body, token=token, what=what
            )
        except OpenPaymentsError as exc:
            raise DemoError(exc.message) from None
        if answered != status or not isinstance(document, dict):
            text = raw[:300].decode(errors="replace")
            raise DemoError(f"{what}: HTTP {answered} {text}")
        return document

    async def _grant(
        self, auth_server: str, access: list[dict[str, Any]], interact: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "access_token": {"access": access},
            "client": self.client.identity.wallet_address,
        }
        if interact is not None:
            body["interact"] = interact
        kind = access[0]["type"]
        return await self._call(
            "POST", auth_server, f"a grant for {kind} at {auth_server}", body=body
        )

    async def _wallet(self, url: str) -> tuple[str, str]:
        """(authServer, resourceServer) of the wallet address at ``url``."""
        try:
            document = await self.client.wallet_address(url)
        except OpenPaymentsError as exc:
            raise DemoError(exc.message) from None
        return document.auth_server, document.resource_server.rstrip("/")

    # -- the payment --------------------------------------------------------------------------

    async def pay(self, bob: str, amount: int) -> Payment:
        """Bob's incoming payment of ``amount`` EUR cents on B, paid from alice's wallet on A
        (funded: sending when this returns)."""
        alice = self.client.identity.wallet_address
        print_ = self.console.print
        print_(f"alice's app (its key {self.client.identity.key_id}) pays over Open Payments:")
        bob_auth, bob_resources = await self._wallet(bob)
        access = [{"type": "incoming-payment", "actions": ["create", "read"], "identifier": bob}]
        self.tokens["incoming"] = _text(
            await self._grant(bob_auth, access), "access_token", "value"
        )
        incoming = await self._call(
            "POST", f"{bob_resources}/incoming-payments", "creating bob's incoming payment",
            body={"walletAddress": bob,
                  "incomingAmount": {"value": str(amount), "assetCode": "EUR", "assetScale": 2},
                  "metadata": {"description": "kiungo demo, over Open Payments"}},
            token=self.tokens["incoming"], status=201,
        )  # fmt: skip
        receiver = _text(incoming, "id")
        print_(f"  incoming payment on B  {receiver}")

        alice_auth, alice_resources = await self._wallet(alice)
        quote_token = _text(
            await self._grant(alice_auth, [{"type": "quote", "actions": ["create", "read"]}]),
            "access_token", "value",
        )  # fmt: skip
        quote = await self._call(
            "POST", f"{alice_resources}/quotes", "quoting bob's incoming payment on A",
            body={"walletAddress": alice, "receiver": receiver, "method": "ilp"},
            token=quote_token, status=201,
        )  # fmt: skip
        debit = quote.get("debitAmount")
        print_(f"  quote on A             {_text(quote, 'id')}")

        self.tokens["outgoing"] = await self._consented_grant(
            alice_auth, [{"type": "outgoing-payment", "actions": ["create", "read"],
                          "identifier": alice,
                          "limits": {"debitAmount": debit, "receiver": receiver}}],
        )  # fmt: skip
        started = time.perf_counter()
        outgoing = await self._call(
            "POST", f"{alice_resources}/outgoing-payments", "creating alice's outgoing payment",
            body={"walletAddress": alice, "quoteId": _text(quote, "id")},
            token=self.tokens["outgoing"], status=201,
        )  # fmt: skip
        print_(f"  outgoing payment on A  {_text(outgoing, 'id')}  (the operator funds it)")
        self.record |= {
            "incoming_payment": receiver,
            "quote": quote["id"],
            "outgoing_payment": outgoing["id"],
        }
        outgoing_id = outgoing["id"].rsplit("/", 1)[1]
        await self.a.fund(outgoing_id)
        quote_view = await self.a.quote(quote["id"].rsplit("/", 1)[1])
        return Payment(receiver.rsplit("/", 1)[1], quote_view, outgoing_id, started)

    async def _consented_grant(self, auth_server: str, access: list[dict[str, Any]]) -> str:
        """The token of an ``outgoing-payment`` grant the account holder consented to."""
        nonce = secrets.token_urlsafe(16)
        granted = await self._grant(
            auth_server,
            access,
            {"start": ["redirect"],
             "finish": {"method": "redirect", "uri": self.finish_uri, "nonce": nonce}},
        )  # fmt: skip
        consent = _text(granted, "interact", "redirect")
        print_ = self.console.print
        print_(f"  consent                {consent}")
        consent_page = None
        if self.in_browser:
            print_("  open it in a browser and accept: waiting for the browser to come back …")
            seconds = float(self.a.settings.interaction_expiry_seconds)
        else:
            print_("  (following it as a browser would: A's consent page, Accept)")
            consent_page = await self._accept_as_browser(consent)
            seconds = _REQUEST_SECONDS
        try:
            async with asyncio.timeout(seconds):
                returned = await asyncio.shield(self.finish.returned)
        except TimeoutError:
            raise DemoError(f"no browser came back from consent within {seconds:g} s") from None
        if "result" in returned:
            raise DemoError(f"consent was not given: {returned['result']}")
        ref = _text(returned, "interact_ref")
        # RFC 9635 §4.2.3: the hash binds the client's nonce, the server's, the reference and
        # the grant endpoint the app asked.
        expected = interaction_hash(
            nonce, _text(granted, "interact", "finish"), ref, auth_server.rstrip("/") + "/"
        )
        if returned.get("hash") != expected:
            raise DemoError("the finish redirect's hash is not the interaction's")
        cont = granted.get("continue")
        continued = await self._call(
            "POST", _text(cont, "uri"), "continuing the grant", body={"interact_ref": ref},
            token=_text(cont, "access_token", "value"),
        )  # fmt: skip
        grant_id = _text(cont, "uri").rstrip("/").rsplit("/", 1)[1]
        grant = (await self.a.gql(_GRANT, {"id": grant_id}))["grant"]
        print_(f"  grant                  {grant_id}  {grant['state']}")
        self.record["grant"] = {
            "id": grant_id,
            "state": grant["state"],
            "access": grant["access"],
            "interaction": urlsplit(consent).path.rstrip("/").split("/")[-2],
            "consent_url": consent,
            "consent_page": consent_page,
            "consented_in": "browser" if self.in_browser else "demo",
        }
        return _text(continued, "access_token", "value")

    # -- the browser --------------------------------------------------------------------------

    async def _visit(self, url: str, form: bytes | None = None) -> tuple[str, FetchedReply]:
        """What a browser ends on from ``url`` (a form POSTed there): redirects followed, the
        browser's cookies kept; (its URL, its answer)."""
        method = "GET" if form is None else "POST"
        for _ in range(_MAX_REDIRECTS):
            headers = {} if form is None else {"Content-Type": "application/x-www-form-urlencoded"}
            try:
                reply = await exchange(
                    self.browser, method, url, headers=headers, content=form,
                    max_bytes=_MAX_PAGE, max_seconds=_REQUEST_SECONDS,
                )  # fmt: skip
            except ReceiverFetchError as exc:
                raise DemoError(f"the browser at {url}: {exc}") from None
            if reply.status_code not in (301, 302, 303, 307, 308):
                return url, reply
            if not reply.location:
                raise DemoError(f"the browser at {url}: a redirect to nowhere")
            url = urljoin(url, reply.location)
            if reply.status_code in (301, 302, 303):
                method, form = "GET", None
        raise DemoError(f"the browser: more than {_MAX_REDIRECTS} redirects")

    async def _accept_as_browser(self, consent: str) -> str:
        """Start the interaction at ``consent``, accept on the page it leads to, and follow the
        finish redirect back to the app; the consent page's URL."""
        page_url, page = await self._visit(consent)
        if page.status_code != 200 or b"value='accept'" not in page.body:
            raise DemoError(f"no consent page at {page_url}: HTTP {page.status_code}")
        back, answer = await self._visit(page_url, b"choice=accept")
        if answer.status_code != 200 or not back.startswith(self.finish_uri):
            raise DemoError(f"accepting led to {back} (HTTP {answer.status_code}), not the app")
        return page_url

    async def read_back(self) -> dict[str, Any]:
        """The record of the flow, with both payments as the app reads them now."""
        outgoing = await self._call(
            "GET", self.record["outgoing_payment"], "reading the outgoing payment",
            token=self.tokens["outgoing"],
        )  # fmt: skip
        incoming = await self._call(
            "GET", self.record["incoming_payment"], "reading the incoming payment",
            token=self.tokens["incoming"],
        )  # fmt: skip
        self.record["read_back"] = {
            "outgoing": {k: outgoing.get(k) for k in ("sentAmount", "debitAmount", "failed")},
            "incoming": {k: incoming.get(k) for k in ("receivedAmount", "completed")},
        }
        return self.record
