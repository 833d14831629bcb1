"""Fuzzing the GNAP authorization server (issue 18): random methods, paths, headers and bodies,
and mutations of correctly signed requests, at every route of :mod:`kiungo.auth.app`.

For every input: no 5xx, a JSON error body on every 4xx, and afterwards the grants and tokens
exactly as before (no input is a valid signed request: random bytes carry no signature that
verifies, and a mutated signed request changes what its signature covers or the signature).
As in test_fuzz_connector, each ``@given`` runs in a worker thread with a synchronous client
so the server keeps serving on the test's loop.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.openpayments.gnap_harness import (  # noqa: F401 (fixture auth)
    CLIENT,
    IDP_SECRET,
    INCOMING,
    Auth,
    auth_server,
)

from kiungo.openpayments.http_signatures import sign_request
from kiungo.openpayments.jwk import public_key_to_jwk

EXAMPLES = int(os.environ.get("KIUNGO_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None)
TIMEOUT = 5.0

HEADER_NAMES = (
    "Authorization",
    "Signature",
    "Signature-Input",
    "Content-Digest",
    "Content-Type",
    "Content-Length",
    "Accept",
)
TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80)
# h11 (the client) sends no header value with surrounding whitespace.
HEADER_VALUE = TEXT.map(str.strip) | st.sampled_from(["GNAP", "GNAP x", "sig1=:AA==:"])


def json_values() -> st.SearchStrategy[Any]:
    scalars = st.none() | st.booleans() | st.integers() | TEXT
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
        max_leaves=12,
    )


def grant_like() -> st.SearchStrategy[Any]:
    access_item = st.fixed_dictionaries(
        {
            "type": st.sampled_from(["incoming-payment", "quote", "outgoing-payment", "x"]) | TEXT,
            "actions": st.lists(st.sampled_from(["create", "read", "list", "complete"]) | TEXT),
        },
        optional={"identifier": json_values(), "limits": json_values()},
    )
    return st.fixed_dictionaries(
        {},
        optional={
            "client": st.sampled_from([CLIENT, {"walletAddress": CLIENT}]) | json_values(),
            "access_token": st.fixed_dictionaries(
                {}, optional={"access": st.lists(access_item, max_size=3) | json_values()}
            ),
            "interact": json_values(),
        },
    )


def run_in_thread(check: Callable[[httpx.Client], None]) -> Any:
    def run() -> None:
        with httpx.Client(timeout=TIMEOUT) as client:
            check(client)

    return asyncio.to_thread(run)


def assert_refused_well(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400 and response.status_code not in (404, 405):
        assert "error" in response.json(), response.text


async def test_random_requests_at_every_route_never_5xx_and_change_nothing(auth: Auth) -> None:
    token = (await auth.grant()).json()
    manage, cont = token["access_token"]["manage"], token["continue"]["uri"]
    before = await auth.rows()
    paths = [auth.url, manage, cont, auth.url + "token/", auth.url + "continue/x"]

    @FUZZ
    @given(
        method=st.sampled_from(["POST", "DELETE", "GET", "PUT"]),
        url=st.sampled_from(paths) | TEXT.map(lambda tail: auth.url + tail.lstrip("/")),
        headers=st.dictionaries(st.sampled_from(HEADER_NAMES), HEADER_VALUE, max_size=5),
        body=st.binary(max_size=300)
        | grant_like().map(lambda v: json.dumps(v).encode())
        | st.sampled_from([100, 5_000, 60_000]).map(lambda depth: b"[" * depth),
    )
    def check(
        client: httpx.Client, method: str, url: str, headers: dict[str, str], body: bytes
    ) -> None:
        headers.pop("Content-Length", None)  # httpx frames the body; lies are below
        response = client.request(method, url, headers=headers, content=body)
        assert_refused_well(response)

    await run_in_thread(check)
    assert await auth.rows() == before


async def test_mutated_signed_requests_never_5xx_and_change_nothing(auth: Auth) -> None:
    granted = (await auth.grant()).json()
    value, manage = granted["access_token"]["value"], granted["access_token"]["manage"]
    before = await auth.rows()

    @FUZZ
    @given(
        target=st.sampled_from(["grant", "rotate", "revoke"]),
        body=grant_like(),
        mutate=st.sampled_from(["body", "signature", "input", "digest", "auth", "drop"]),
        noise=st.text(
            st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=40
        ),
    )
    def check(client: httpx.Client, target: str, body: Any, mutate: str, noise: str) -> None:
        url = auth.url if target == "grant" else manage
        method = "DELETE" if target == "revoke" else "POST"
        raw = json.dumps({**body, "client": CLIENT}, separators=(",", ":")).encode()
        raw = raw if target == "grant" else b""
        headers = {} if target == "grant" else {"Authorization": f"GNAP {value}"}
        headers |= sign_request(
            method=method,
            target_uri=url,
            headers=headers,
            body=raw or None,
            private_key=auth.key,
            key_id=auth.kid,
            created=int(time.time()),
        )
        if mutate == "digest" and not raw:
            mutate = "body"  # a body-less request's signature covers no digest
        if mutate == "body":
            raw = raw + b" " if raw else b"{}"
            headers.pop("Content-Length", None)
        elif mutate == "signature":
            headers["Signature"] = "sig1=:" + noise + ":"
        elif mutate == "input":
            headers["Signature-Input"] = headers["Signature-Input"] + noise
        elif mutate == "digest":
            headers["Content-Digest"] = noise
        elif mutate == "auth":
            headers["Authorization"] = f"GNAP {value}{noise}x"
        else:
            headers.pop("Signature")
        response = client.request(method, url, headers=headers, content=raw)
        assert_refused_well(response)
        assert response.status_code >= 400, (mutate, response.text)

    await run_in_thread(check)
    assert await auth.rows() == before


async def test_signed_grant_requests_with_random_client_jwks_never_5xx(auth: Auth) -> None:
    """Clients known by a JWK: mutations of the signing key's JWK (and random values) in
    ``client.jwk``, signed with that key. Only that key may be granted; nothing else writes a
    row."""
    jwk = public_key_to_jwk(auth.key.public_key(), auth.kid)
    before = await auth.rows()
    granted = 0

    @FUZZ
    @given(
        replaced=st.dictionaries(
            st.sampled_from([*jwk, "d", "key_ops"]), json_values(), max_size=3
        ),
        dropped=st.sets(st.sampled_from(list(jwk)), max_size=2),
        client_value=st.none() | json_values(),
    )
    def check(
        client: httpx.Client, replaced: dict[str, Any], dropped: set[str], client_value: Any
    ) -> None:
        nonlocal granted
        candidate = {k: v for k, v in {**jwk, **replaced}.items() if k not in dropped}
        value = {"jwk": candidate} if client_value is None else {"jwk": client_value}
        raw = json.dumps(
            {"client": value, "access_token": {"access": INCOMING}}, separators=(",", ":")
        ).encode()
        headers = sign_request(
            method="POST",
            target_uri=auth.url,
            headers={},
            body=raw,
            private_key=auth.key,
            key_id=auth.kid,
            created=int(time.time()),
        )
        response = client.post(auth.url, content=raw, headers=headers)
        assert_refused_well(response)
        if response.status_code == 200:
            # Only the signing key itself (other members, such as key_ops, are ignored).
            sent = value["jwk"]
            assert all(sent.get(k) == jwk[k] for k in ("kid", "kty", "crv", "x", "alg"))
            assert sent.get("use", "sig") == "sig" and "d" not in sent
            granted += 1

    await run_in_thread(check)
    rows = await auth.rows()
    assert len(rows[0]) == len(before[0]) + granted


async def test_interactive_grant_requests_and_interaction_calls_never_5xx(auth: Auth) -> None:
    """Signed grant requests with random ``interact`` and ``limits``, and random calls of the
    interaction routes (with and without the identity provider's secret): never a 5xx."""
    pending = await auth.send(
        "POST",
        auth.url,
        {
            "client": CLIENT,
            "access_token": {
                "access": [
                    {"type": "outgoing-payment", "actions": ["create"], "identifier": CLIENT}
                ]
            },
            "interact": {
                "start": ["redirect"],
                "finish": {"method": "redirect", "uri": "https://c.test/f", "nonce": "n"},
            },
        },
    )
    assert pending.status_code == 200, pending.text
    redirect = pending.json()["interact"]["redirect"]
    _, _, interact_id, nonce = redirect.removeprefix(auth.url.rstrip("/")).split("/")
    interaction_paths = [
        f"interact/{interact_id}/{nonce}",
        f"interact/{interact_id}/{nonce}/finish",
        f"grant/{interact_id}/{nonce}",
        f"grant/{interact_id}/{nonce}/accept",
        f"grant/{interact_id}/{nonce}/reject",
        f"grant/{interact_id}/x/accept",
        f"grant/{uuid.uuid4()}/{nonce}",
    ]
    limits = st.fixed_dictionaries(
        {},
        optional={
            "debitAmount": json_values()
            | st.just({"value": "1", "assetCode": "USD", "assetScale": 2}),
            "receiveAmount": json_values(),
            "interval": st.sampled_from(
                ["R/2026-01-01T00:00:00Z/P1M", "R5/2026-01-01/PT1S", "R/P1D/2026-01-01", "R0/x/y"]
            )
            | TEXT,
            "receiver": json_values(),
        },
    )
    interact = st.fixed_dictionaries(
        {},
        optional={
            "start": st.lists(st.sampled_from(["redirect", "user_code"]) | TEXT, max_size=3),
            "finish": st.fixed_dictionaries(
                {},
                optional={
                    "method": st.sampled_from(["redirect", "push"]) | json_values(),
                    "uri": st.sampled_from(["https://c.test/f", "javascript:x", "c.test"])
                    | json_values(),
                    "nonce": TEXT | json_values(),
                },
            )
            | json_values(),
        },
    )

    @FUZZ
    @given(
        grant=st.fixed_dictionaries(
            {
                "access": st.lists(
                    st.fixed_dictionaries(
                        {
                            "type": st.just("outgoing-payment"),
                            "actions": st.lists(
                                st.sampled_from(["create", "read", "list", "read-all"]),
                                max_size=3,
                            ),
                            "identifier": st.just(CLIENT) | json_values(),
                        },
                        optional={"limits": limits | json_values()},
                    ),
                    min_size=1,
                    max_size=2,
                ),
                "interact": interact | json_values(),
            }
        ),
        call=st.tuples(
            st.sampled_from(["GET", "POST"]),
            st.sampled_from(interaction_paths) | TEXT.map(lambda t: "grant/" + t.lstrip("/")),
            st.sampled_from([None, IDP_SECRET, "x"]),
        ),
    )
    def check(client: httpx.Client, grant: dict[str, Any], call: tuple[str, str, Any]) -> None:
        body = json.dumps(
            {
                "client": CLIENT,
                "access_token": {"access": grant["access"]},
                "interact": grant["interact"],
            }
        ).encode()
        headers = sign_request(
            method="POST",
            target_uri=auth.url,
            headers={},
            body=body,
            private_key=auth.key,
            key_id=auth.kid,
            created=int(time.time()),
        )
        assert_refused_well(client.post(auth.url, headers=headers, content=body))
        method, path, secret = call
        extra = {} if secret is None else {"x-idp-secret": secret}
        response = client.request(method, auth.url + path, headers=extra, follow_redirects=False)
        assert response.status_code < 500, response.text

    await run_in_thread(check)
