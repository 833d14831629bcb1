"""RFC 9421 signatures with Ed25519 and RFC 9530 Content-Digest (kiungo.openpayments):
the RFCs' own vectors, what a verifier refuses, and that it refuses nothing with anything but
SignatureRejected."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from kiungo.openpayments.http_signatures import (
    SignatureRejected,
    content_digest,
    sign_components,
    sign_request,
    signature_base,
    verify_content_digest,
    verify_request,
)
from kiungo.openpayments.jwk import (
    InvalidJwk,
    InvalidPrivateKey,
    jwk_to_public_key,
    load_base64_private_key,
    load_private_key_pem,
    private_key_to_pem,
    public_key_to_jwk,
)
from kiungo.openpayments.structured_fields import (
    MAX_FIELD_LENGTH,
    InnerList,
    Item,
    StructuredFieldError,
    Token,
    parse_dictionary,
    serialize_inner_list,
)

# RFC 9421 Appendix B.1.4: test-key-ed25519, as a JWK (x public, d private).
RFC_KEY_X = "JrQLj5P_89iXES9-vFgrIy29clF9CC_oPPsw3c5D0bs"
RFC_KEY_D = "n4Ni-HpISpVObnQMW0wOhCKROaIKqKtW_2ZYb2p9KcU"
# RFC 9421 Appendix B.2: the test request.
RFC_URI = "https://example.com/foo?param=Value&Pet=dog"
RFC_BODY = b'{"hello": "world"}'
RFC_HEADERS = {
    "Host": "example.com",
    "Date": "Tue, 20 Apr 2021 02:07:55 GMT",
    "Content-Type": "application/json",
    "Content-Digest": "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+Ab"
    "wAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:",
    "Content-Length": "18",
}
# RFC 9421 Appendix B.2.6.
RFC_B26_INPUT = (
    '("date" "@method" "@path" "@authority" "content-type" "content-length")'
    ';created=1618884473;keyid="test-key-ed25519"'
)
RFC_B26_BASE = (
    '"date": Tue, 20 Apr 2021 02:07:55 GMT\n'
    '"@method": POST\n'
    '"@path": /foo\n'
    '"@authority": example.com\n'
    '"content-type": application/json\n'
    '"content-length": 18\n'
    f'"@signature-params": {RFC_B26_INPUT}'
).encode()
RFC_B26_SIGNATURE = (
    "wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw=="
)

NOW = 1_796_000_000
URI = "https://auth.kiungo.example/grant/continue?x=1"
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
KID = "kiungo-test-key"
JWKS = {"keys": [public_key_to_jwk(KEY.public_key(), KID)]}
BODY = json.dumps({"walletAddress": "https://kiungo.example/alice"}, separators=(",", ":")).encode()


def rfc_private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(base64.urlsafe_b64decode(RFC_KEY_D + "="))


def signed(
    *,
    method: str = "POST",
    uri: str = URI,
    headers: dict[str, str] | None = None,
    body: bytes | None = BODY,
    key: Ed25519PrivateKey = KEY,
    kid: str = KID,
    created: int = NOW,
) -> dict[str, str]:
    base = {"Authorization": "GNAP token-1"} if headers is None else headers
    return {
        **base,
        **sign_request(
            method=method,
            target_uri=uri,
            headers=base,
            body=body,
            private_key=key,
            key_id=kid,
            created=created,
        ),
    }


def verify(headers: Any, **changes: Any) -> Any:
    arguments: dict[str, Any] = {
        "method": "POST",
        "target_uri": URI,
        "headers": headers,
        "body": BODY,
        "jwks": JWKS,
        "now": NOW,
    }
    arguments.update(changes)
    return verify_request(**arguments)


def test_rfc9421_b_1_4_private_key_gives_the_published_public_key() -> None:
    jwk = public_key_to_jwk(rfc_private_key().public_key(), "test-key-ed25519")
    assert jwk["x"] == RFC_KEY_X


def test_rfc9421_b_2_6_signature_base_and_signature_byte_for_byte() -> None:
    covered = ("date", "@method", "@path", "@authority", "content-type", "content-length")
    params = (("created", 1618884473), ("keyid", "test-key-ed25519"))
    inner = InnerList(tuple(Item(name, ()) for name in covered), params)
    base = signature_base(
        method="POST", target_uri=RFC_URI, headers=RFC_HEADERS, signature_input=inner
    )
    assert base == RFC_B26_BASE
    headers = sign_components(
        method="POST",
        target_uri=RFC_URI,
        headers=RFC_HEADERS,
        covered=covered,
        params=params,
        private_key=rfc_private_key(),
        label="sig-b26",
    )
    assert headers == {
        "Signature-Input": f"sig-b26={RFC_B26_INPUT}",
        "Signature": f"sig-b26=:{RFC_B26_SIGNATURE}:",
    }


def test_rfc9421_b_2_6_published_signature_verifies() -> None:
    headers = {
        **RFC_HEADERS,
        "Signature-Input": f"sig-b26={RFC_B26_INPUT}",
        "Signature": f"sig-b26=:{RFC_B26_SIGNATURE}:",
    }
    jwks = {
        "keys": [
            {
                "kty": "OKP",
                "crv": "Ed25519",
                "kid": "test-key-ed25519",
                "x": RFC_KEY_X,
                "alg": "EdDSA",
            }
        ]
    }
    verified = verify_request(
        method="POST",
        target_uri=RFC_URI,
        headers=headers,
        body=RFC_BODY,
        jwks=jwks,
        now=1618884473 + 5,
        required=("@method",),
        require_authorization=False,
        require_content=False,
        label="sig-b26",
    )
    assert verified.keyid == "test-key-ed25519"
    assert verified.created == 1618884473


def test_rfc9421_b_2_request_content_digest_is_sha512_of_its_body() -> None:
    assert content_digest(RFC_BODY) == RFC_HEADERS["Content-Digest"]


def test_rfc9530_examples() -> None:
    # Section 2: sha-512 of {"hello": "world"} and a line feed; Appendix B.1: its sha-256.
    hello_lf = b'{"hello": "world"}\n'
    sha512 = (
        "sha-512=:YMAam51Jz/jOATT6/zvHrLVgOYTGFy1d6GJiOHTohq4yP+pgk4vf2aCsyRZOtw8MjkM7iw7y"
        "Z/WkppmM44T3qg==:"
    )
    assert content_digest(hello_lf) == sha512
    verify_content_digest(
        f"sha-256=:RK/0qy18MlBSVnWgjwz6lZEWjP/lF5HF9bvEF8FabDg=:, {sha512}", hello_lf
    )
    with pytest.raises(SignatureRejected, match="does not match"):
        verify_content_digest(
            f"sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:, {sha512}", hello_lf
        )


def test_open_payments_shape_is_what_the_client_sends() -> None:
    headers = signed()
    assert headers["Signature-Input"] == (
        'sig1=("@method" "@target-uri" "authorization" "content-digest" "content-length"'
        f' "content-type");keyid="{KID}";created={NOW}'
    )
    assert headers["Content-Type"] == "application/json"
    assert headers["Content-Length"] == str(len(BODY))
    assert headers["Content-Digest"] == content_digest(BODY)
    bare = signed(method="GET", headers={}, body=None)
    assert bare["Signature-Input"] == f'sig1=("@method" "@target-uri");keyid="{KID}";created={NOW}'
    assert set(bare) == {"Signature-Input", "Signature"}


def test_signed_request_verifies_and_says_who_signed() -> None:
    verified = verify(signed())
    assert verified.keyid == KID
    assert verified.created == NOW
    assert verified.jwk["kid"] == KID
    assert verified.covered[:2] == ("@method", "@target-uri")


def test_header_names_are_case_insensitive_and_field_lines_combine() -> None:
    headers = [(name.lower(), value) for name, value in signed().items()]
    verify(headers)
    split = signed(headers={"Authorization": "GNAP a", "X-Extra": "one"})
    # A client that sent "authorization" on two lines signed "a, b" (RFC 9421 §2.1).
    two_lines = [*split.items()]
    verify(two_lines)


def test_created_within_skew_either_way_is_accepted() -> None:
    verify(signed(created=NOW - 60))
    verify(signed(created=NOW + 60))


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"body": BODY + b" "}, "Content-Digest does not match"),
        ({"body": b'{"walletAddress":"https://kiungo.example/mallory"}'}, "does not match"),
        ({"method": "PUT"}, "does not verify"),
        ({"target_uri": URI + "&y=2"}, "does not verify"),
        ({"target_uri": "https://other.example/grant/continue?x=1"}, "does not verify"),
        ({"now": NOW + 61}, "clock skew"),
        ({"now": NOW - 61}, "clock skew"),
        ({"jwks": {"keys": []}}, "unknown keyid"),
        (
            {"jwks": {"keys": [public_key_to_jwk(Ed25519PrivateKey.generate().public_key(), KID)]}},
            "does not verify",
        ),
        ({"jwks": {"keys": [{**JWKS["keys"][0], "alg": "ES256"}]}}, "unusable"),
        ({"jwks": {"keys": [{**JWKS["keys"][0], "crv": "X25519"}]}}, "unusable"),
        ({"jwks": {"keys": [{**JWKS["keys"][0], "x": "AAAA"}]}}, "unusable"),
        ({"jwks": {"nokeys": 1}}, "not a JWKS"),
        ({"jwks": "keys"}, "not a JWKS"),
        ({"required": ("@method", "@target-uri", "@authority")}, "does not cover @authority"),
        ({"label": "sig2"}, "no signature labelled"),
    ],
)
def test_refusals_of_a_changed_request(change: dict[str, Any], reason: str) -> None:
    with pytest.raises(SignatureRejected, match=reason):
        verify(signed(), **change)


def test_tampered_authorization_is_refused() -> None:
    headers = signed()
    headers["Authorization"] = "GNAP token-2"
    with pytest.raises(SignatureRejected, match="does not verify"):
        verify(headers)


def test_authorization_added_after_signing_is_refused() -> None:
    headers = signed(headers={})
    headers["Authorization"] = "GNAP token-1"
    with pytest.raises(SignatureRejected, match="does not cover authorization"):
        verify(headers)


def test_body_not_covered_is_refused() -> None:
    headers = signed(body=None)
    with pytest.raises(SignatureRejected, match="does not cover content-digest"):
        verify(headers)


def test_content_length_must_be_the_bodys() -> None:
    covered = (
        "@method",
        "@target-uri",
        "authorization",
        "content-digest",
        "content-length",
        "content-type",
    )
    base = {
        "Authorization": "GNAP t",
        "Content-Type": "application/json",
        "Content-Digest": content_digest(BODY),
        "Content-Length": str(len(BODY) + 1),
    }
    headers = {
        **base,
        **sign_components(
            method="POST",
            target_uri=URI,
            headers=base,
            covered=covered,
            params=(("keyid", KID), ("created", NOW)),
            private_key=KEY,
        ),
    }
    with pytest.raises(SignatureRejected, match="Content-Length does not match"):
        verify(headers)


def test_missing_required_component_is_refused() -> None:
    base = {"Authorization": "GNAP t"}
    headers = {
        **base,
        **sign_components(
            method="GET",
            target_uri=URI,
            headers=base,
            covered=("@method", "authorization"),
            params=(("keyid", KID), ("created", NOW)),
            private_key=KEY,
        ),
    }
    with pytest.raises(SignatureRejected, match="does not cover @target-uri"):
        verify(headers, method="GET", body=None)


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ((("keyid", KID),), "created must be an integer"),
        ((("keyid", KID), ("created", "1796000000")), "created must be an integer"),
        ((("keyid", KID), ("created", True)), "created must be an integer"),
        ((("created", NOW),), "keyid must be a string"),
        ((("keyid", Token("kiungo")), ("created", NOW)), "keyid must be a string"),
        ((("keyid", KID), ("created", NOW), ("alg", "rsa-pss-sha512")), "alg"),
        ((("keyid", KID), ("created", NOW), ("expires", NOW - 1)), "expired"),
    ],
)
def test_bad_signature_parameters_are_refused(params: Any, reason: str) -> None:
    headers = sign_components(
        method="GET",
        target_uri=URI,
        headers={},
        covered=("@method", "@target-uri"),
        params=params,
        private_key=KEY,
    )
    with pytest.raises(SignatureRejected, match=reason):
        verify(headers, method="GET", body=None)


def test_alg_ed25519_and_future_expires_are_accepted() -> None:
    headers = sign_components(
        method="GET",
        target_uri=URI,
        headers={},
        covered=("@method", "@target-uri"),
        params=(("created", NOW), ("keyid", KID), ("alg", "ed25519"), ("expires", NOW + 300)),
        private_key=KEY,
    )
    verify(headers, method="GET", body=None)


GOOD_INPUT = f'sig1=("@method" "@target-uri");keyid="{KID}";created={NOW}'
GOOD_SIGNATURE = "sig1=:" + base64.b64encode(bytes(64)).decode() + ":"


@pytest.mark.parametrize(
    ("signature_input", "signature", "reason"),
    [
        (None, GOOD_SIGNATURE, "headers are required"),
        (GOOD_INPUT, None, "headers are required"),
        ('sig1=("@method" "@target-uri";keyid="k"', GOOD_SIGNATURE, "malformed"),
        ('sig1=("@method""@target-uri");keyid="k"', GOOD_SIGNATURE, "malformed"),
        ('sig1=("@method" "@target-uri");keyid="k', GOOD_SIGNATURE, "malformed"),
        ('sig1=("@method" "@target-uri");keyid="k\\n"', GOOD_SIGNATURE, "malformed"),
        ('sig1=(method "@target-uri")', GOOD_SIGNATURE, "not a string"),
        ('SIG1=("@method")', GOOD_SIGNATURE, "malformed"),
        (f"{GOOD_INPUT}, {GOOD_INPUT}", GOOD_SIGNATURE, "repeated"),
        (f'{GOOD_INPUT};keyid="x"', GOOD_SIGNATURE, "repeated"),
        (f"{GOOD_INPUT},", GOOD_SIGNATURE, "malformed"),
        (f"{GOOD_INPUT};created=1.5", GOOD_SIGNATURE, "malformed"),
        ('sig1=("@method" "@target-uri");created=1234567890123456', GOOD_SIGNATURE, "malformed"),
        ('sig1="@method"', GOOD_SIGNATURE, "not an inner list"),
        (GOOD_INPUT, "sig1=:AAAA:", "64 bytes"),
        (GOOD_INPUT, "sig1=:not base64!:", "malformed"),
        (GOOD_INPUT, 'sig1="abc"', "not a byte sequence"),
        (GOOD_INPUT, "sig2=" + GOOD_SIGNATURE[5:], "no signature labelled"),
        (
            f'sig1=("@method" "@target-uri" "@method");keyid="{KID}";created={NOW}',
            GOOD_SIGNATURE,
            "covered twice",
        ),
        (
            f'sig1=("@method" "@target-uri" "@status");keyid="{KID}";created={NOW}',
            GOOD_SIGNATURE,
            "not supported",
        ),
        (
            f'sig1=("@method" "@target-uri" "Date");keyid="{KID}";created={NOW}',
            GOOD_SIGNATURE,
            "not a lowercase field name",
        ),
        (
            f'sig1=("@method" "@target-uri" "date");keyid="{KID}";created={NOW}',
            GOOD_SIGNATURE,
            "missing",
        ),
        (
            f'sig1=("@method" "@target-uri" "date";sf);keyid="{KID}";created={NOW}',
            GOOD_SIGNATURE,
            "parameters are not supported",
        ),
        (
            f'sig1=("@method" "@target-uri");keyid="{KID}";created={NOW}, ' + "a=1, " * 20,
            GOOD_SIGNATURE,
            "malformed",
        ),
        ("sig1=(" + '"x" ' * 40 + ")", GOOD_SIGNATURE, "malformed"),
        (GOOD_INPUT + " " * MAX_FIELD_LENGTH, GOOD_SIGNATURE, "too large"),
        (GOOD_INPUT, GOOD_SIGNATURE + ", x=" + "a" * MAX_FIELD_LENGTH, "too large"),
        ('sig1=("@method" "@target-uri");keyid="é"', GOOD_SIGNATURE, "malformed"),
    ],
)
def test_malformed_signature_headers_are_refused(
    signature_input: str | None, signature: str | None, reason: str
) -> None:
    headers = {}
    if signature_input is not None:
        headers["Signature-Input"] = signature_input
    if signature is not None:
        headers["Signature"] = signature
    with pytest.raises(SignatureRejected, match=reason):
        verify(headers, method="GET", body=None, require_authorization=False)


def test_a_header_value_that_could_forge_a_base_line_is_refused() -> None:
    headers = signed()
    headers["Authorization"] = 'GNAP t\n"@method": GET'
    with pytest.raises(SignatureRejected, match="cannot cover"):
        verify(headers)


def test_signing_refuses_what_it_cannot_cover() -> None:
    with pytest.raises(ValueError, match="cannot sign"):
        signed(headers={"Authorization": "GNAP \x00"})
    with pytest.raises(ValueError, match="cannot sign"):
        signed(uri="/relative")


def test_structured_fields_round_trip_what_signers_send() -> None:
    text = 'sig1=("@method" "a\\"b" "c\\\\d");keyid="k";created=-5;flag;t=tok/en;b=:AAE=:;f=?0'
    member = parse_dictionary(text)["sig1"]
    assert isinstance(member, InnerList)
    assert [item.value for item in member.items] == ["@method", 'a"b', "c\\d"]
    assert dict(member.params) == {
        "keyid": "k",
        "created": -5,
        "flag": True,
        "t": Token("tok/en"),
        "b": b"\x00\x01",
        "f": False,
    }
    assert "sig1=" + serialize_inner_list(member) == text
    assert parse_dictionary("") == {}
    assert parse_dictionary("a, b;x=1") == {"a": Item(True, ()), "b": Item(True, (("x", 1),))}
    with pytest.raises(StructuredFieldError):
        parse_dictionary("a=?2")


def test_jwk_round_trip_and_refusals() -> None:
    jwk = public_key_to_jwk(KEY.public_key(), KID)
    assert jwk == {
        "kid": KID,
        "kty": "OKP",
        "crv": "Ed25519",
        "x": jwk["x"],
        "alg": "EdDSA",
        "use": "sig",
    }
    assert jwk_to_public_key(jwk) == KEY.public_key()
    without_use = {key: value for key, value in jwk.items() if key != "use"}
    assert jwk_to_public_key(without_use) == KEY.public_key()
    for bad in (
        {**jwk, "kid": ""},
        {**jwk, "kid": 7},
        {**jwk, "use": "enc"},
        {**jwk, "d": jwk["x"]},
        {**jwk, "x": jwk["x"] + "="},
        {**jwk, "x": jwk["x"][:-1] + "!"},
        {**jwk, "x": None},
        {**jwk, "kty": "EC"},
    ):
        with pytest.raises(InvalidJwk):
            jwk_to_public_key(bad)
    with pytest.raises(InvalidJwk):
        public_key_to_jwk(KEY.public_key(), " ")


def test_private_key_pem_as_rafiki_writes_it_loads() -> None:
    pem = private_key_to_pem(KEY)
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----\n")
    assert load_private_key_pem(pem).public_key() == KEY.public_key()
    assert load_base64_private_key(base64.b64encode(pem).decode()).public_key() == (
        KEY.public_key()
    )
    for bad in (b"", b"not a key", pem.replace(b"PRIVATE", b"PUBLIC"), pem[:-40]):
        with pytest.raises(InvalidPrivateKey):
            load_private_key_pem(bad)
    with pytest.raises(InvalidPrivateKey):
        load_base64_private_key("***")


def test_a_non_ed25519_pem_key_is_refused() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(InvalidPrivateKey, match="not Ed25519"):
        load_private_key_pem(pem)


header_text = st.one_of(
    st.text(max_size=300),
    st.text(alphabet='sig1=(")@;:,?*- \t-abcdefkyidcreat0123456789+/=\\', max_size=300),
    st.binary(max_size=300).map(lambda raw: raw.decode("latin-1")),
)


@settings(max_examples=400, deadline=None)
@given(
    signature_input=header_text,
    signature=header_text,
    other=st.lists(st.tuples(st.text(max_size=20), header_text), max_size=4),
    method=st.text(max_size=10),
    uri=st.text(max_size=60),
    body=st.one_of(st.none(), st.binary(max_size=60)),
)
def test_arbitrary_headers_never_raise_anything_but_signature_rejected(
    signature_input: str,
    signature: str,
    other: list[tuple[str, str]],
    method: str,
    uri: str,
    body: bytes | None,
) -> None:
    headers = [("Signature-Input", signature_input), ("Signature", signature), *other]
    with pytest.raises(SignatureRejected):
        verify_request(
            method=method, target_uri=uri, headers=headers, body=body, jwks=JWKS, now=NOW
        )


@settings(max_examples=200, deadline=None)
@given(
    mutation_at=st.integers(min_value=0, max_value=10_000),
    replacement=st.characters(),
    header=st.sampled_from(["Signature-Input", "Signature", "Authorization", "Content-Digest"]),
)
def test_mutating_a_signed_request_never_raises_anything_but_signature_rejected(
    mutation_at: int, replacement: str, header: str
) -> None:
    headers = signed()
    value = headers[header]
    at = mutation_at % len(value)
    mutated = value[:at] + replacement + value[at + 1 :]
    assume(mutated != value)
    headers[header] = mutated
    try:
        verify(headers)
    except SignatureRejected:
        return
    # What still verifies must mean the same: RFC 8941 ignores some whitespace and base64's
    # unused low bits, and a field value is trimmed.
    if header == "Authorization":
        assert mutated.strip(" \t") == value
    else:
        assert parse_dictionary(mutated) == parse_dictionary(value)


uris = st.one_of(
    st.text(max_size=60),
    st.from_regex(r"[a-z]{0,6}://[\[\]@:0-9a-z.%-]{0,24}(/[a-z?=&%/]{0,10})?", fullmatch=True),
)


@settings(max_examples=300, deadline=None)
@given(
    method=st.one_of(st.text(max_size=10), st.sampled_from(["POST", "post", "GET"])),
    uri=uris,
    body=st.one_of(st.none(), st.just(BODY), st.binary(max_size=40)),
)
def test_a_valid_signature_on_any_method_uri_or_body_raises_only_signature_rejected(
    method: str, uri: str, body: bytes | None
) -> None:
    headers = signed()
    try:
        verify(headers, method=method, target_uri=uri, body=body)
    except SignatureRejected:
        return
    assert (method, uri, body) == ("POST", URI, BODY)
