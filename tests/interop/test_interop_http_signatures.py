"""Open Payments request signatures against the real JavaScript: what
@interledger/http-signature-utils' createHeaders (the Open Payments client's signer) makes,
kiungo.openpayments verifies; what we make, its validateSignatureHeaders and validateSignature
(Rafiki's auth server's checks) accept; and each side refuses a tampered request."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from tests.interop.node import NodeProcess, node_script

from kiungo.openpayments.http_signatures import SignatureRejected, sign_request, verify_request
from kiungo.openpayments.jwk import private_key_to_pem, public_key_to_jwk

KEY = Ed25519PrivateKey.generate()
KID = "https://kiungo.example/alice#key-1"
JWK = public_key_to_jwk(KEY.public_key(), KID)
URL = "https://auth.kiungo.example/grant?x=1"
BODY = json.dumps(
    {
        "access_token": {"access": [{"type": "incoming-payment", "actions": ["create", "read"]}]},
        "client": "https://kiungo.example/alice",
    },
    separators=(",", ":"),
)


async def js_sign(
    node: NodeProcess, method: str, headers: dict[str, str], body: str | None
) -> dict[str, str]:
    answer = await node.command(
        {
            "op": "sign",
            "method": method,
            "url": URL,
            "headers": headers,
            "body": body,
            "private_key_pem": private_key_to_pem(KEY).decode(),
            "key_id": KID,
        }
    )
    assert answer["ok"], answer
    signed: dict[str, str] = answer["headers"]
    return {**headers, **signed}


async def js_verify(
    node: NodeProcess, method: str, headers: dict[str, str], body: str | None
) -> dict[str, Any]:
    answer = await node.command(
        {
            "op": "verify",
            "method": method,
            "url": URL,
            "headers": {name.lower(): value for name, value in headers.items()},
            "body": body,
            "jwk": JWK,
        }
    )
    assert answer["ok"], answer
    return answer


def our_sign(method: str, headers: dict[str, str], body: str | None) -> dict[str, str]:
    return {
        **headers,
        **sign_request(
            method=method,
            target_uri=URL,
            headers=headers,
            body=None if body is None else body.encode(),
            private_key=KEY,
            key_id=KID,
            created=int(time.time()),
        ),
    }


def our_verify(method: str, headers: dict[str, str], body: str | None) -> None:
    verify_request(
        method=method,
        target_uri=URL,
        headers=headers,
        body=None if body is None else body.encode(),
        jwks={"keys": [JWK]},
        now=int(time.time()),
    )


CASES = [
    ("POST", {"Authorization": "GNAP 4398c2b0f", "Accept": "application/json"}, BODY),
    ("POST", {}, BODY),
    ("GET", {"Authorization": "GNAP 4398c2b0f"}, None),
    ("DELETE", {}, None),
]


@pytest.mark.parametrize(("method", "headers", "body"), CASES)
async def test_we_verify_what_the_open_payments_client_signs(
    method: str, headers: dict[str, str], body: str | None
) -> None:
    async with node_script("http_signatures.js") as node:
        signed = await js_sign(node, method, headers, body)
    our_verify(method, signed, body)


@pytest.mark.parametrize(("method", "headers", "body"), CASES)
async def test_rafikis_checks_accept_what_we_sign(
    method: str, headers: dict[str, str], body: str | None
) -> None:
    signed = our_sign(method, headers, body)
    async with node_script("http_signatures.js") as node:
        answer = await js_verify(node, method, signed, body)
    assert answer["headers_valid"] is True
    assert answer["signature_valid"] is True


async def test_both_sides_make_the_same_content_headers() -> None:
    headers = {"Authorization": "GNAP t"}
    ours = our_sign("POST", headers, BODY)
    async with node_script("http_signatures.js") as node:
        theirs = await js_sign(node, "POST", headers, BODY)
    for name in ("Content-Digest", "Content-Length", "Content-Type"):
        assert ours[name] == theirs[name]
    # Signatures differ only by created; the covered components and their order are the same.
    assert (
        ours["Signature-Input"].split(";created=")[0]
        == (theirs["Signature-Input"].split(";created=")[0])
    )


async def test_generate_jwk_gives_our_jwk_without_use() -> None:
    async with node_script("http_signatures.js") as node:
        answer = await node.command(
            {
                "op": "jwk",
                "private_key_pem": private_key_to_pem(KEY).decode(),
                "key_id": KID,
            }
        )
    assert answer["ok"], answer
    assert answer["jwk"] == {key: value for key, value in JWK.items() if key != "use"}


async def test_each_side_refuses_the_others_tampered_request() -> None:
    tampered_body = BODY.replace("read", "list")
    async with node_script("http_signatures.js") as node:
        theirs = await js_sign(node, "POST", {"Authorization": "GNAP t"}, BODY)
        with pytest.raises(SignatureRejected, match="Content-Digest"):
            our_verify("POST", theirs, tampered_body)
        with pytest.raises(SignatureRejected, match="does not verify"):
            our_verify("POST", {**theirs, "Authorization": "GNAP u"}, BODY)

        ours = our_sign("POST", {"Authorization": "GNAP t"}, BODY)
        answer = await js_verify(node, "POST", ours, tampered_body)
        assert answer["headers_valid"] is False
        assert answer["signature_valid"] is False
        answer = await js_verify(node, "POST", {**ours, "Authorization": "GNAP u"}, BODY)
        assert answer["signature_valid"] is False
