"""Our canonical JSON and HMAC signatures against json-canonicalize, the package Rafiki and its
clients sign admin API requests and webhooks with: byte for byte, over worked examples and over
hypothesis-generated JSON (tests/js/canonicalize.js)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.interop.node import JS_DIR, require_node

from kiungo.signatures import (
    SignatureError,
    canonical_json,
    parse_signature,
    sign,
    signature_header,
    verify,
)

# Each: secret, timestamp (ms), a body as a JSON text, its canonical form and the header
# value, both as json-canonicalize@1.2.0 and node's crypto computed them (canonicalize.js).
WORKED_EXAMPLES = [
    (
        "rafiki-admin-secret",
        1_700_000_000_000,
        '{"query":"mutation CreateAsset($input: CreateAssetInput!) { createAsset(input: $input) '
        '{ asset { id } } }","variables":{"input":{"scale":2,"code":"USD",'
        '"withdrawalThreshold":"100"}},"operationName":"CreateAsset"}',
        '{"operationName":"CreateAsset","query":"mutation CreateAsset($input: CreateAssetInput!) '
        '{ createAsset(input: $input) { asset { id } } }","variables":{"input":{"code":"USD",'
        '"scale":2,"withdrawalThreshold":"100"}}}',
        "t=1700000000000, v1=77c2bd524c9fa3be28ccff037dfc9497d98b35dbcbaaddec9787049c42093e54",
    ),
    (
        "webhook-secret",
        1_712_345_678_901,
        '{"id":"5c1d5e39-8d3b-4f8c-9a56-2c1f3c2b9a10","type":"incoming_payment.completed",'
        '"data":{"id":"x","receivedAmount":{"value":"1000","assetCode":"USD","assetScale":2},'
        '"metadata":{"\\u00e9":1,"z":[0.5,1e21,-0]}}}',
        '{"data":{"id":"x","metadata":{"z":[0.5,1e+21,0],"é":1},"receivedAmount":'
        '{"assetCode":"USD","assetScale":2,"value":"1000"}},'
        '"id":"5c1d5e39-8d3b-4f8c-9a56-2c1f3c2b9a10","type":"incoming_payment.completed"}',
        "t=1712345678901, v1=450168da2260b0863f4526ebe6e8eeb235c64c10df4a598579b1aba79c6319b0",
    ),
]

# JSON texts and what json-canonicalize makes of them (computed by canonicalize.js).
KNOWN = [
    (
        "[1e21,1e-7,0.1,5e-324,1.7976931348623157e308,-0.0,123456789012345680000,"
        "12345678901234567891,1e20,1e-6,0.000001234,100,1.5,-0.5,9007199254740993,1e400,-1e400,"
        "4.35,0.30000000000000004,1E+2,2e-7,123e-20,1e23,9.999999999999999e22]",
        "[1e+21,1e-7,0.1,5e-324,1.7976931348623157e+308,0,123456789012345680000,"
        "12345678901234567000,100000000000000000000,0.000001,0.000001234,100,1.5,-0.5,"
        "9007199254740992,null,null,4.35,0.30000000000000004,100,2e-7,1.23e-18,1e+23,1e+23]",
    ),
    # Keys in UTF-16 code unit order: a lone surrogate and an astral character (a surrogate
    # pair) sort before U+FFFF, though U+1F600 is the larger code point.
    (
        '{"\\ud800":1,"\\udc00x":2,"\\uffff":3,"\\ud83d\\ude00":4,"a":5,"":6,"\\u00e9":7}',
        '{"":6,"a":5,"é":7,"\\ud800":1,"😀":4,"\\udc00x":2,"\uffff":3}',
    ),
    # An object with a non-null toJSON member goes to JSON.stringify whole: JavaScript's key order
    # (array indices ascending, then as written), at every level below it too.
    (
        '{"b":1,"toJSON":"x","10":1,"2":2,"a":{"z":1,"y":2},"01":3}',
        '{"2":2,"10":1,"b":1,"toJSON":"x","a":{"z":1,"y":2},"01":3}',
    ),
    ('{"toJSON":null,"b":1,"a":2}', '{"a":2,"b":1,"toJSON":null}'),
    # A repeated key: the last value, in the first place.
    ('{"a":1,"a":2,"b":{"toJSON":0,"y":1,"x":1}}', '{"a":2,"b":{"toJSON":0,"y":1,"x":1}}'),
    (
        '"\\u0000\\u0001\\u001f\\b\\t\\n\\f\\r\\"\\\\/\\u007f\\u2028\\u2029\\ud800"',
        '"\\u0000\\u0001\\u001f\\b\\t\\n\\f\\r\\"\\\\/\x7f\u2028\u2029\\ud800"',
    ),
]


@pytest.mark.parametrize("text, canonical", KNOWN)
def test_known_canonical_forms(text: str, canonical: str) -> None:
    assert canonical_json(json.loads(text)) == canonical
    canonical_json(json.loads(text)).encode()  # always UTF-8: lone surrogates are escaped


@pytest.mark.parametrize("secret, t, text, canonical, header", WORKED_EXAMPLES)
def test_worked_examples(secret: str, t: int, text: str, canonical: str, header: str) -> None:
    body = json.loads(text)
    assert canonical_json(body) == canonical
    assert signature_header(secret, body, timestamp_ms=t) == header
    assert header == f"t={t}, v1={sign(secret, t, body)}"
    # What a receiver checks: the header as sent, with or without a nonce after it.
    for sent in (header, f"{header}, n=0a1b2c", header.replace(", ", ",")):
        parsed = verify(secret, sent, body, ttl_seconds=30, now_ms=t + 29_000)
        assert (parsed.timestamp_ms, parsed.digest) == (t, header.split("v1=")[1])
    assert parse_signature(f"{header}, n=abc").nonce == "abc"
    with pytest.raises(SignatureError, match="stale"):
        verify(secret, header, body, ttl_seconds=30, now_ms=t + 31_000)
    with pytest.raises(SignatureError, match="does not match"):
        verify(secret + "x", header, body, ttl_seconds=30, now_ms=t)


# -- against the JavaScript package --------------------------------------------------------------


@pytest.fixture(scope="module")
def canonicalizer() -> Iterator[subprocess.Popen[bytes]]:
    node = require_node()
    process = subprocess.Popen(
        [node, str(JS_DIR / "canonicalize.js")],
        cwd=JS_DIR,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        yield process
    finally:
        assert process.stdin is not None
        process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def js_canonical(process: subprocess.Popen[bytes], text: str) -> bytes:
    """json-canonicalize's canonical form of the JSON ``text``, as UTF-8."""
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(text.encode() + b"\n")
    process.stdin.flush()
    line = process.stdout.readline()
    assert line.endswith(b"\n"), "canonicalize.js ended"
    return line[:-1]


@pytest.mark.interop
@pytest.mark.parametrize("text, canonical", KNOWN)
def test_known_canonical_forms_are_the_packages(
    canonicalizer: subprocess.Popen[bytes], text: str, canonical: str
) -> None:
    assert js_canonical(canonicalizer, text) == canonical.encode()


@pytest.mark.interop
@pytest.mark.parametrize("secret, t, text, canonical, header", WORKED_EXAMPLES)
def test_worked_examples_are_the_packages(
    secret: str, t: int, text: str, canonical: str, header: str
) -> None:
    node = require_node()
    script = str(JS_DIR / "canonicalize.js")

    def run(*args: str) -> str:
        done = subprocess.run(
            [node, script, *args], cwd=JS_DIR, input=text + "\n", capture_output=True,
            text=True, timeout=30, check=True,
        )  # fmt: skip
        return done.stdout.removesuffix("\n")

    assert run() == canonical
    assert run("--hmac", secret, "--timestamp", str(t)) == header


# Characters that are easy to get wrong: controls, JSON's escapes, U+2028/9, the edges of the
# surrogate range, private use and U+FFFF (after surrogates in UTF-16, before astral characters
# in code points), astral characters, and lone surrogates.
tricky = st.sampled_from(
    [
        *'\x00\x01\x08\t\n\x0b\x0c\r\x1f "\\/\x7f\x80\u2028\u2029\ud7ff\ue000\uffef\uffff',
        *("\U00010000", "\U0001f600", "\U0010ffff", "\ud800", "\udbff", "\udc00", "\udfff", "é"),
    ]
)
characters = tricky | st.characters() | st.characters(categories=["Cs"])
strings = st.text(alphabet=characters, max_size=12)
keys = strings | st.sampled_from(
    ["toJSON", "__proto__", "0", "1", "2", "10", "01", "4294967294", "4294967295", "-1", "a", "b"]
)
numbers = (
    st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.integers(min_value=10**300, max_value=10**310)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(
        [1e21, 1e-7, 0.1, 5e-324, 1.7976931348623157e308, -0.0, 123456789012345680000, 2**53 + 1]
    )
)
json_values = st.recursive(
    st.none() | st.booleans() | numbers | strings,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(keys, inner, max_size=6),
    max_leaves=25,
)
# Number literals as a person (not Python) writes them: exponents, leading and trailing digits.
number_literals = st.from_regex(
    r"-?(0|[1-9][0-9]{0,25})(\.[0-9]{1,25})?([eE][+-]?[0-9]{1,3})?", fullmatch=True
)


@pytest.mark.interop
@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=json_values)
def test_canonical_json_is_json_canonicalizes(
    canonicalizer: subprocess.Popen[bytes], value: Any
) -> None:
    # What each side canonicalizes is what its JSON parser made of the same text.
    text = json.dumps(value)  # ASCII: lone surrogates travel as \ud800 escapes
    assert canonical_json(json.loads(text)).encode() == js_canonical(canonicalizer, text), text


@pytest.mark.interop
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(literals=st.lists(number_literals, min_size=1, max_size=20))
def test_numbers_are_written_as_javascript_writes_them(
    canonicalizer: subprocess.Popen[bytes], literals: list[str]
) -> None:
    text = "[" + ",".join(literals) + "]"
    assert canonical_json(json.loads(text)).encode() == js_canonical(canonicalizer, text), text


# Secrets as command-line arguments: no NUL (nor other controls), no leading dash.
secrets = st.text(
    alphabet=st.characters(exclude_categories=["Cs", "Cc"]), min_size=1, max_size=20
).filter(lambda s: not s.startswith("-"))


@pytest.mark.interop
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=json_values, secret=secrets, t=st.integers(0, 2**45))
def test_signatures_are_those_node_computes(value: Any, secret: str, t: int) -> None:
    node = require_node()
    text = json.dumps(value)
    done = subprocess.run(
        [node, str(JS_DIR / "canonicalize.js"), "--hmac", secret, "--timestamp", str(t)],
        cwd=JS_DIR, input=(text + "\n").encode(), capture_output=True, timeout=30, check=True,
    )  # fmt: skip
    assert done.stdout.decode().removesuffix("\n") == signature_header(
        secret, json.loads(text), timestamp_ms=t
    )
