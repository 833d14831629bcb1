"""Interactive grants on the authorization server over HTTP, against Postgres: an
``outgoing-payment`` grant with a redirect interaction, the browser sent to the identity
provider, the identity provider reading and accepting (or rejecting) the grant through the
interaction API, the finish redirect with the GNAP interaction hash, and continuation for the
access token; refusals that change nothing; the real Open Payments client requesting and
continuing."""

from __future__ import annotations

import base64
import hashlib
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from tests.interop.node import node_script
from tests.loopback import serve
from tests.openpayments.gnap_harness import (  # noqa: F401 (fixture auth)
    CLIENT,
    IDP_SECRET,
    Auth,
    auth_server,
)

from kiungo.auth.app import auth_app
from kiungo.openpayments.client_signatures import ClientKeys
from kiungo.openpayments.grants import introspect
from kiungo.openpayments.jwk import private_key_to_pem
from kiungo.runtime.receiver_fetch import receiver_client

FINISH = "https://client.test/finished?session=7"
LIMITS = {
    "debitAmount": {"value": "500", "assetCode": "USD", "assetScale": 2},
    "interval": "R/2026-01-01T00:00:00Z/P1M",
}
OUTGOING = [
    {
        "type": "outgoing-payment",
        "actions": ["create", "read", "list"],
        "identifier": CLIENT,
        "limits": LIMITS,
    }
]


def interact(nonce: str) -> dict[str, Any]:
    return {"start": ["redirect"], "finish": {"method": "redirect", "uri": FINISH, "nonce": nonce}}


def expected_hash(client_nonce: str, server_nonce: str, ref: str, grant_url: str) -> str:
    data = f"{client_nonce}\n{server_nonce}\n{ref}\n{grant_url}".encode()
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


async def request_grant(auth: Auth, nonce: str, access: Any = None) -> httpx.Response:
    body = {
        "client": CLIENT,
        "access_token": {"access": OUTGOING if access is None else access},
        "interact": interact(nonce),
    }
    return await auth.send("POST", auth.url, body)


async def consent(
    auth: Auth, redirect: str, choice: str = "accept"
) -> tuple[httpx.Response, httpx.Cookies]:
    """What a browser and the identity provider do: start the interaction, the IdP reads the
    grant and answers, the browser returns to the finish URL (the client keeps the session
    cookie, as a browser does). The finish redirect is answered."""
    started = await auth.http.get(redirect, follow_redirects=False)
    assert started.status_code == 302, started.text
    idp = urlsplit(started.headers["location"])
    assert (idp.scheme, idp.netloc, idp.path) == ("https", "idp.test", "/consent")
    query = {k: v[0] for k, v in parse_qs(idp.query).items()}
    assert query["tenant"] == "1"
    interact_id, nonce = query["interactId"], query["nonce"]
    cookies = started.cookies
    headers = {"x-idp-secret": IDP_SECRET}
    details = await auth.http.get(f"{auth.url}grant/{interact_id}/{nonce}", headers=headers)
    assert details.status_code == 200, details.text
    assert details.json() == {"access": OUTGOING, "state": "PENDING"}
    chosen = await auth.http.post(
        f"{auth.url}grant/{interact_id}/{nonce}/{choice}", headers=headers
    )
    assert chosen.status_code == 202, chosen.text
    finished = await auth.http.get(
        f"{auth.url}interact/{interact_id}/{nonce}/finish", follow_redirects=False
    )
    return finished, cookies


async def test_consent_through_the_identity_provider_then_continuation_gives_the_token(
    auth: Auth,
) -> None:
    client_nonce = secrets.token_hex(8)
    response = await request_grant(auth, client_nonce)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"interact", "continue"}
    server_nonce = body["interact"]["finish"]
    assert body["interact"]["redirect"].startswith(auth.url + "interact/")
    assert body["continue"]["uri"].startswith(auth.url + "continue/")
    assert body["continue"]["wait"] == 5
    cont = body["continue"]
    continue_token = cont["access_token"]["value"]

    early = await auth.send("POST", cont["uri"], {"interact_ref": "x"}, token=continue_token)
    assert early.status_code == 401 and early.json()["error"]["code"] == "request_denied"

    finished, _ = await consent(auth, body["interact"]["redirect"])
    assert finished.status_code == 302, finished.text
    back = urlsplit(finished.headers["location"])
    assert f"{back.scheme}://{back.netloc}{back.path}" == "https://client.test/finished"
    params = {k: v[0] for k, v in parse_qs(back.query).items()}
    assert params["session"] == "7"
    ref = params["interact_ref"]
    assert params["hash"] == expected_hash(client_nonce, server_nonce, ref, auth.url)

    wrong = await auth.send("POST", cont["uri"], {"interact_ref": ref + "x"}, token=continue_token)
    assert wrong.status_code == 401
    continued = await auth.send("POST", cont["uri"], {"interact_ref": ref}, token=continue_token)
    assert continued.status_code == 200, continued.text
    token = continued.json()["access_token"]
    assert token["access"] == OUTGOING
    assert continued.json()["continue"]["uri"] == cont["uri"]
    info = await introspect(auth.pool, token["value"], ("outgoing-payment", "create", CLIENT))
    assert info is not None and info.access == OUTGOING
    # The reference is used once.
    again = await auth.send("POST", cont["uri"], {"interact_ref": ref}, token=continue_token)
    assert again.status_code == 401
    # The finish cannot be replayed.
    state = await auth.pool.fetchval("SELECT state FROM grants")
    assert state == "APPROVED"


async def test_a_rejected_grant_ends_and_cannot_be_continued(auth: Auth) -> None:
    response = (await request_grant(auth, "n1")).json()
    finished, _ = await consent(auth, response["interact"]["redirect"], "reject")
    assert finished.status_code == 302
    query = parse_qs(urlsplit(finished.headers["location"]).query)
    assert query["result"] == ["grant_rejected"] and "hash" not in query
    row = await auth.pool.fetchrow("SELECT state, finalization_reason FROM grants")
    assert tuple(row) == ("FINALIZED", "REJECTED")
    cont = response["continue"]
    refused = await auth.send(
        "POST", cont["uri"], {"interact_ref": "x"}, token=cont["access_token"]["value"]
    )
    assert refused.status_code == 401
    assert await auth.pool.fetchval("SELECT count(*) FROM grant_access_tokens") == 0


async def test_finishing_before_the_answer_is_invalid_and_the_grant_can_still_be_cancelled(
    auth: Auth,
) -> None:
    response = (await request_grant(auth, "n2")).json()
    started = await auth.http.get(response["interact"]["redirect"], follow_redirects=False)
    query = {k: v[0] for k, v in parse_qs(urlsplit(started.headers["location"]).query).items()}
    finish = f"{auth.url}interact/{query['interactId']}/{query['nonce']}/finish"
    async with httpx.AsyncClient() as other_browser:
        stranger = await other_browser.get(finish, follow_redirects=False)
    assert stranger.status_code == 401, stranger.text
    early = await auth.http.get(finish, follow_redirects=False)
    assert early.status_code == 302
    assert parse_qs(urlsplit(early.headers["location"]).query)["result"] == ["grant_invalid"]
    assert await auth.pool.fetchval("SELECT state FROM grants") == "PENDING"
    cont = response["continue"]
    cancelled = await auth.send("DELETE", cont["uri"], token=cont["access_token"]["value"])
    assert cancelled.status_code == 204
    row = await auth.pool.fetchrow("SELECT state, finalization_reason FROM grants")
    assert tuple(row) == ("FINALIZED", "REVOKED")
    # A cancelled grant's interaction is gone for the identity provider.
    gone = await auth.http.post(
        f"{auth.url}grant/{query['interactId']}/{query['nonce']}/accept",
        headers={"x-idp-secret": IDP_SECRET},
    )
    assert gone.status_code == 401 and gone.json()["error"]["code"] == "user_denied"


async def test_bad_interactive_requests_and_interaction_calls_are_refused_and_change_nothing(
    auth: Auth,
) -> None:
    base = {"client": CLIENT, "access_token": {"access": OUTGOING}}

    def with_interact(value: Any) -> dict[str, Any]:
        return {**base, "interact": value}

    def with_limits(limits: Any) -> list[dict[str, Any]]:
        return [{**OUTGOING[0], "limits": limits}]

    bodies: list[tuple[str, Any]] = [
        ("no interact", base),
        ("no redirect start", with_interact({"start": [], "finish": interact("n")["finish"]})),
        ("no finish", with_interact({"start": ["redirect"]})),
        (
            "push finish",
            with_interact(
                {"start": ["redirect"], "finish": {**interact("n")["finish"], "method": "push"}}
            ),
        ),
        (
            "finish not a URL",
            with_interact(
                {
                    "start": ["redirect"],
                    "finish": {**interact("n")["finish"], "uri": "javascript:x"},
                }
            ),
        ),
        ("interact not an object", with_interact(["redirect"])),
        (
            "no identifier",
            {
                **with_interact(interact("n")),
                "access_token": {"access": [{"type": "outgoing-payment", "actions": ["create"]}]},
            },
        ),
        (
            "unknown action",
            {
                **with_interact(interact("n")),
                "access_token": {"access": [{**OUTGOING[0], "actions": ["complete"]}]},
            },
        ),
    ]
    for limits in (
        {"debitAmount": {"value": "-1", "assetCode": "USD", "assetScale": 2}},
        {"debitAmount": {"value": "1.5", "assetCode": "USD", "assetScale": 2}},
        {"debitAmount": {"value": "18446744073709551616", "assetCode": "USD", "assetScale": 2}},
        {"debitAmount": {"value": "1", "assetCode": "USD", "assetScale": 256}},
        {
            "debitAmount": {"value": "1", "assetCode": "USD", "assetScale": 2},
            "receiveAmount": {"value": "1", "assetCode": "USD", "assetScale": 2},
        },
        {"interval": "every month"},
        {"interval": "R/P1M/2026-01-01T00:00:00Z"},
        {"interval": "R/2026-01-01T00:00:00Z/P0D"},
        {"coffee": 1},
        "lots",
    ):
        bodies.append(
            (
                f"limits {limits}",
                {**with_interact(interact("n")), "access_token": {"access": with_limits(limits)}},
            )
        )
    before = await auth.rows()
    for name, body in bodies:
        response = await auth.send("POST", auth.url, body)
        assert response.status_code == 400, (name, response.text)
        assert response.json()["error"]["code"] == "invalid_request", name
    assert await auth.rows() == before == [[], []]

    granted = (await request_grant(auth, "n3")).json()
    redirect = urlsplit(granted["interact"]["redirect"]).path
    _, _, interact_id, nonce = redirect.split("/")
    headers = {"x-idp-secret": IDP_SECRET}
    before = await auth.rows()
    calls = [
        ("no secret", auth.http.get(f"{auth.url}grant/{interact_id}/{nonce}"), 401),
        (
            "wrong secret",
            auth.http.post(
                f"{auth.url}grant/{interact_id}/{nonce}/accept", headers={"x-idp-secret": "x"}
            ),
            401,
        ),
        ("wrong nonce", auth.http.get(f"{auth.url}grant/{interact_id}/x", headers=headers), 404),
        ("not a uuid", auth.http.get(f"{auth.url}grant/nope/{nonce}", headers=headers), 404),
        (
            "bad choice",
            auth.http.post(f"{auth.url}grant/{interact_id}/{nonce}/maybe", headers=headers),
            400,
        ),
        ("start with wrong nonce", auth.http.get(f"{auth.url}interact/{interact_id}/x"), 401),
        (
            "finish without session",
            auth.http.get(f"{auth.url}interact/{interact_id}/{nonce}/finish"),
            401,
        ),
        (
            "finish with a forged session",
            auth.http.get(
                f"{auth.url}interact/{interact_id}/{nonce}/finish",
                headers={"Cookie": "kiungo_interaction=x"},
            ),
            401,
        ),
    ]
    for name, call, status in calls:
        response = await call
        assert response.status_code == status, (name, response.text)
        assert "error" in response.json(), name
    assert await auth.rows() == before
    # Deciding twice: the second answer is refused, the first stands.
    assert (
        await auth.http.post(f"{auth.url}grant/{interact_id}/{nonce}/accept", headers=headers)
    ).status_code == 202
    twice = await auth.http.post(f"{auth.url}grant/{interact_id}/{nonce}/reject", headers=headers)
    assert twice.status_code == 400 and twice.json()["error"]["code"] == "invalid_interaction"
    assert await auth.pool.fetchval("SELECT interact_state FROM grants") == "APPROVED"


async def test_an_expired_interaction_cannot_be_accepted(auth: Auth) -> None:
    granted = (await request_grant(auth, "n4")).json()
    _, _, interact_id, nonce = urlsplit(granted["interact"]["redirect"]).path.split("/")
    await auth.pool.execute("UPDATE grants SET interact_expires_at = now() - interval '1 second'")
    headers = {"x-idp-secret": IDP_SECRET}
    late = await auth.http.post(f"{auth.url}grant/{interact_id}/{nonce}/accept", headers=headers)
    assert late.status_code == 400
    assert (
        await auth.http.get(granted["interact"]["redirect"], follow_redirects=False)
    ).status_code == 401
    assert await auth.pool.fetchval("SELECT interact_state FROM grants") == "PENDING"


@pytest.mark.interop
async def test_the_open_payments_client_requests_and_continues_an_interactive_grant(
    auth: Auth, tmp_path: Path
) -> None:
    pem = tmp_path / "alice.pem"
    pem.write_bytes(private_key_to_pem(auth.key))
    async with node_script("open_payments_grants.js", CLIENT, str(pem), auth.kid) as js:
        granted = await js.command(
            {"op": "grant", "url": auth.url, "access": OUTGOING, "interact": interact("js-nonce")}
        )
        assert granted["ok"], granted
        body = granted["body"]
        finished, _ = await consent(auth, body["interact"]["redirect"])
        params = parse_qs(urlsplit(finished.headers["location"]).query)
        ref = params["interact_ref"][0]
        assert params["hash"][0] == expected_hash(
            "js-nonce", body["interact"]["finish"], ref, auth.url
        )
        cont = body["continue"]
        continued = await js.command(
            {
                "op": "continue",
                "url": cont["uri"],
                "accessToken": cont["access_token"]["value"],
                "interactRef": ref,
            }
        )
        assert continued["ok"], continued
        token = continued["body"]["access_token"]
        assert token["access"] == OUTGOING
        assert await introspect(auth.pool, token["value"], ("outgoing-payment", "create", CLIENT))


async def test_the_development_consent_page_asks_in_the_browser_that_started(auth: Auth) -> None:
    """``kiungo up``'s stand-in identity provider: the interaction start sends the browser to
    the consent page, which shows the access asked for; the same browser accepts and is sent
    through the finish to the client with the hash. Another browser is turned away."""
    holder: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await holder["app"](scope, receive, send)

    async with (
        serve(app) as url,
        receiver_client(refuse_private=False) as keys_http,
        httpx.AsyncClient(timeout=10) as browser,
        httpx.AsyncClient(timeout=10) as stranger,
    ):
        holder["app"] = auth_app(
            auth.pool, url, client_keys=ClientKeys(auth.pool, keys_http), consent_page=True
        )
        grant_url = url + "/"
        body = {
            "client": CLIENT,
            "access_token": {"access": OUTGOING},
            "interact": interact("dev-nonce"),
        }
        granted = (await auth.send("POST", grant_url, body)).json()
        page = await browser.get(granted["interact"]["redirect"], follow_redirects=True)
        assert page.status_code == 200, page.text
        assert "Accept" in page.text and CLIENT in page.text and "debitAmount" in page.text
        form_url = str(page.url)
        assert form_url.endswith("/consent")
        assert (await stranger.get(form_url)).status_code == 401
        refused = await stranger.post(form_url, data={"choice": "accept"})
        assert refused.status_code == 401
        assert await auth.pool.fetchval("SELECT interact_state FROM grants") == "PENDING"
        bad = await browser.post(form_url, data={"choice": "maybe"})
        assert bad.status_code == 400
        accepted = await browser.post(form_url, data={"choice": "accept"})
        assert accepted.status_code == 303
        finished = await browser.get(accepted.headers["location"])
        assert finished.status_code == 302, finished.text
        params = {
            k: v[0] for k, v in parse_qs(urlsplit(finished.headers["location"]).query).items()
        }
        assert params["hash"] == expected_hash(
            "dev-nonce", granted["interact"]["finish"], params["interact_ref"], grant_url
        )
        cont = granted["continue"]
        continued = await auth.send(
            "POST",
            cont["uri"],
            {"interact_ref": params["interact_ref"]},
            token=cont["access_token"]["value"],
        )
        assert continued.status_code == 200, continued.text
