"""HTTP Message Signatures (RFC 9421) with Ed25519, and Content-Digest (RFC 9530), as Open
Payments uses them to authenticate a client to an authorization or resource server.

Sans-IO: functions take the request's parts and return headers or a verdict; the caller supplies
the clock (``now``/``created``, Unix seconds) and the keys (a JWKS it fetched or was sent).

What an Open Payments client sends (``@interledger/http-signature-utils`` ``createHeaders``)::

    Signature-Input: sig1=("@method" "@target-uri" "authorization" "content-digest"
                     "content-length" "content-type");keyid="<kid>";created=<unix seconds>
    Signature: sig1=:<64-byte Ed25519 signature, base64>:
    Content-Digest: sha-512=:<SHA-512 of the body, base64>:

``authorization`` is covered when the request has that header, the three content components
when it has a body. There is no ``alg`` parameter; the key's JWK says ``alg: "EdDSA"``.

:func:`sign_request` produces exactly that (label ``sig1``, ``keyid`` then ``created``) and adds
``Content-Digest``, ``Content-Length`` and ``Content-Type`` (``application/json`` unless given)
for a body. :func:`sign_components` signs any covered components and parameters, for the RFC's
own test vectors.

:func:`verify_request` accepts a request only if all of the following hold, and otherwise raises
:class:`SignatureRejected` (never anything else) with a short reason:

- ``Signature-Input`` and ``Signature`` parse as RFC 8941 dictionaries (bounded sizes), both hold
  the label (``sig1`` by default), the input is an inner list of distinct lowercase component
  names without component parameters, and the signature is a 64-byte byte sequence;
- the covered components include ``required`` (default ``@method`` and ``@target-uri``), plus
  ``authorization`` when the request has that header and ``content-digest``, ``content-length``
  and ``content-type`` when it has a non-empty body (both rules can be switched off);
- ``created`` is present and within ``max_skew`` seconds of ``now`` either way, ``expires``
  (if present) is not past, ``alg`` (if present) is ``"ed25519"``, ``keyid`` is present and names
  a key in the JWKS, which is an OKP Ed25519 JWK with ``alg: "EdDSA"``;
- the Ed25519 signature verifies over the signature base rebuilt per RFC 9421 §2.5 from the
  request as the caller gives it: ``target_uri`` must be the absolute URI the client addressed
  (scheme, host, port, path and query as sent), which behind a proxy is the public URL, not the
  socket's;
- when ``content-digest`` is covered, its ``sha-512`` member (required) and ``sha-256`` member
  (if present) match the body, and ``Content-Length`` equals the body's length.

Bodies: the JS signer digests ``JSON.stringify(JSON.parse(body))`` and Rafiki digests the JSON
it re-serializes, while we digest the bytes. They agree only for compact JSON (no insignificant
whitespace, numbers and strings as ``JSON.stringify`` writes them), which is what the Open Payments
client sends; a Kiungo client must send the same (``json.dumps(..., separators=(",", ":"),
ensure_ascii=False)`` with integer numbers).

The derived components understood are ``@method``, ``@target-uri``, ``@authority``, ``@scheme``,
``@request-target``, ``@path`` and ``@query``; any field may be covered by its lowercase name.
Header values are read as RFC 9421 §2.1 says: each field line trimmed, several lines joined
with ``", "``. A value or URI holding a character outside visible ASCII, space and tab is
refused, so no value can forge a line of the signature base.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kiungo.openpayments.jwk import InvalidJwk, jwk_to_public_key
from kiungo.openpayments.structured_fields import (
    MAX_FIELD_LENGTH,
    BareItem,
    InnerList,
    Item,
    StructuredFieldError,
    parse_dictionary,
    serialize_bare_item,
    serialize_inner_list,
)

__all__ = [
    "CONTENT_COMPONENTS",
    "DEFAULT_LABEL",
    "DEFAULT_MAX_SKEW_SECONDS",
    "OPEN_PAYMENTS_REQUIRED",
    "Headers",
    "SignatureRejected",
    "VerifiedSignature",
    "content_digest",
    "sign_components",
    "sign_request",
    "signature_base",
    "verify_content_digest",
    "verify_request",
]

DEFAULT_LABEL = "sig1"
OPEN_PAYMENTS_REQUIRED = ("@method", "@target-uri")
CONTENT_COMPONENTS = ("content-digest", "content-length", "content-type")
DEFAULT_MAX_SKEW_SECONDS = 60
MAX_URI_LENGTH = 8192
MAX_HEADER_VALUE_LENGTH = 8192

Headers = Mapping[str, str] | Iterable[tuple[str, str]]

_DERIVED = frozenset(
    {"@method", "@target-uri", "@authority", "@scheme", "@request-target", "@path", "@query"}
)
_FIELD_NAME = re.compile(r"[a-z0-9!#$%&'*+\-.^_`|~]+")
_METHOD = re.compile(r"[A-Za-z0-9!#$%&'*+\-.^_`|~]+")
# Visible ASCII, space and tab: what may stand on one line of a signature base.
_LINE_SAFE = re.compile(r"[\t\x20-\x7e]*")
_DEFAULT_PORTS = {"http": 80, "https": 443}


class SignatureRejected(Exception):
    """The request's signature does not authenticate it; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class VerifiedSignature:
    """What a verified signature established: who signed (``keyid``), when, and what it covers."""

    keyid: str
    created: int
    covered: tuple[str, ...]
    jwk: Mapping[str, object]


def _field_lines(headers: Headers) -> dict[str, list[str]]:
    items = headers.items() if isinstance(headers, Mapping) else headers
    lines: dict[str, list[str]] = {}
    for name, value in items:
        lines.setdefault(name.lower(), []).append(value)
    return lines


def _pairs(lines: Mapping[str, list[str]]) -> list[tuple[str, str]]:
    return [(name, value) for name, values in lines.items() for value in values]


def _field_value(lines: Mapping[str, list[str]], name: str) -> str | None:
    values = lines.get(name)
    if values is None:
        return None
    value = ", ".join(value.strip(" \t") for value in values)
    if len(value) > MAX_HEADER_VALUE_LENGTH or _LINE_SAFE.fullmatch(value) is None:
        raise SignatureRejected(f"header {name!r} holds characters a signature cannot cover")
    return value


def content_digest(body: bytes) -> str:
    """The ``Content-Digest`` field value for ``body``: ``sha-512=:<base64>:`` (RFC 9530)."""
    return "sha-512=" + serialize_bare_item(hashlib.sha512(body).digest())


def verify_content_digest(field: str, body: bytes) -> None:
    """Check a ``Content-Digest`` value against ``body``: its ``sha-512`` member must be present,
    it and any ``sha-256`` member must match; other algorithms are ignored (RFC 9530 §2)."""
    try:
        members = parse_dictionary(field)
    except StructuredFieldError as exc:
        raise SignatureRejected(f"Content-Digest is malformed: {exc}") from exc
    if "sha-512" not in members:
        raise SignatureRejected("Content-Digest has no sha-512 digest")
    for algorithm, digest in (("sha-512", hashlib.sha512), ("sha-256", hashlib.sha256)):
        member = members.get(algorithm)
        if member is None:
            continue
        if not isinstance(member, Item) or not isinstance(member.value, bytes):
            raise SignatureRejected(f"Content-Digest {algorithm} is not a byte sequence")
        if not hmac.compare_digest(member.value, digest(body).digest()):
            raise SignatureRejected("Content-Digest does not match the body")


def _derived_value(name: str, method: str, target_uri: str, parts: SplitResult) -> str:
    if name == "@method":
        return method
    if name == "@target-uri":
        return target_uri
    if name == "@scheme":
        return parts.scheme.lower()
    if name == "@authority":
        host = (parts.hostname or "").lower()
        if ":" in host:
            host = f"[{host}]"
        port = parts.port
        if port is not None and port != _DEFAULT_PORTS.get(parts.scheme.lower()):
            host = f"{host}:{port}"
        return host
    path = parts.path or "/"
    if name == "@path":
        return path
    query = f"?{parts.query}"
    if name == "@query":
        return query
    # @request-target: the origin form of the request line.
    return path + query if parts.query else path


def signature_base(
    *,
    method: str,
    target_uri: str,
    headers: Headers,
    signature_input: InnerList,
) -> bytes:
    """The signature base (RFC 9421 §2.5) for one signature's inner list of components and
    parameters. :class:`SignatureRejected` if a component is unsupported or absent."""
    if _METHOD.fullmatch(method) is None:
        raise SignatureRejected("method is not a token")
    if len(target_uri) > MAX_URI_LENGTH or _LINE_SAFE.fullmatch(target_uri) is None:
        raise SignatureRejected("target URI holds characters a signature cannot cover")
    try:
        parts = urlsplit(target_uri)
        # Reading the port validates it; @authority needs it.
        parts.port  # noqa: B018
    except ValueError as exc:
        raise SignatureRejected("target URI is malformed") from exc
    if not parts.scheme or not parts.hostname:
        raise SignatureRejected("target URI is not absolute")
    lines = _field_lines(headers)
    base: list[str] = []
    seen: set[str] = set()
    for item in signature_input.items:
        name = item.value
        if not isinstance(name, str):
            raise SignatureRejected("a covered component is not a string")
        if item.params:
            raise SignatureRejected(f"component parameters are not supported ({name!r})")
        if name in seen:
            raise SignatureRejected(f"component {name!r} covered twice")
        seen.add(name)
        if name.startswith("@"):
            if name not in _DERIVED:
                raise SignatureRejected(f"derived component {name!r} is not supported")
            value = _derived_value(name, method, target_uri, parts)
        else:
            if _FIELD_NAME.fullmatch(name) is None:
                raise SignatureRejected(f"component {name!r} is not a lowercase field name")
            field = _field_value(lines, name)
            if field is None:
                raise SignatureRejected(f"covered header {name!r} is missing")
            value = field
        base.append(f'"{name}": {value}')
    try:
        params = serialize_inner_list(signature_input)
    except StructuredFieldError as exc:
        raise SignatureRejected(f"signature parameters cannot be serialized: {exc}") from exc
    base.append(f'"@signature-params": {params}')
    return "\n".join(base).encode("ascii")


def sign_components(
    *,
    method: str,
    target_uri: str,
    headers: Headers,
    covered: Sequence[str],
    params: Sequence[tuple[str, BareItem]],
    private_key: Ed25519PrivateKey,
    label: str = DEFAULT_LABEL,
) -> dict[str, str]:
    """``Signature-Input`` and ``Signature`` for ``covered`` components with ``params`` in this
    order. Ed25519 is deterministic, so equal inputs give equal headers."""
    signature_input = InnerList(tuple(Item(name, ()) for name in covered), tuple(params))
    try:
        base = signature_base(
            method=method, target_uri=target_uri, headers=headers, signature_input=signature_input
        )
    except SignatureRejected as exc:
        raise ValueError(f"cannot sign this request: {exc.reason}") from exc
    signature = private_key.sign(base)
    return {
        "Signature-Input": f"{label}={serialize_inner_list(signature_input)}",
        "Signature": f"{label}={serialize_bare_item(signature)}",
    }


def sign_request(
    *,
    method: str,
    target_uri: str,
    headers: Headers,
    body: bytes | None,
    private_key: Ed25519PrivateKey,
    key_id: str,
    created: int,
) -> dict[str, str]:
    """The headers an Open Payments client adds to a request: for a non-empty ``body``,
    ``Content-Digest``, ``Content-Length`` and ``Content-Type`` (kept if ``headers`` has one,
    else ``application/json``); then ``Signature-Input`` and ``Signature`` (label ``sig1``)."""
    lines = _field_lines(headers)
    added: dict[str, str] = {}
    covered = list(OPEN_PAYMENTS_REQUIRED)
    if "authorization" in lines:
        covered.append("authorization")
    if body:
        # The body's digest and length replace any the caller passed, as createHeaders does.
        lines.pop("content-digest", None)
        lines.pop("content-length", None)
        added["Content-Digest"] = content_digest(body)
        added["Content-Length"] = str(len(body))
        if "content-type" not in lines:
            added["Content-Type"] = "application/json"
        covered.extend(CONTENT_COMPONENTS)
    all_headers = [*_pairs(lines), *added.items()]
    signature = sign_components(
        method=method,
        target_uri=target_uri,
        headers=all_headers,
        covered=covered,
        params=(("keyid", key_id), ("created", created)),
        private_key=private_key,
    )
    return {**added, **signature}


def _find_jwk(
    jwks: Mapping[str, object] | Sequence[Mapping[str, object]], kid: str
) -> Mapping[str, object]:
    keys: object = jwks.get("keys") if isinstance(jwks, Mapping) else jwks
    if not isinstance(keys, Sequence) or isinstance(keys, str | bytes):
        raise SignatureRejected("the key set is not a JWKS")
    for jwk in keys:
        if isinstance(jwk, Mapping) and jwk.get("kid") == kid:
            return jwk
    raise SignatureRejected("unknown keyid")


def _parse_signature_fields(lines: Mapping[str, list[str]], label: str) -> tuple[InnerList, bytes]:
    raw_input = lines.get("signature-input")
    raw_signature = lines.get("signature")
    if raw_input is None or raw_signature is None:
        raise SignatureRejected("Signature-Input and Signature headers are required")
    joined_input = ", ".join(raw_input)
    joined_signature = ", ".join(raw_signature)
    if len(joined_input) > MAX_FIELD_LENGTH or len(joined_signature) > MAX_FIELD_LENGTH:
        raise SignatureRejected("signature headers are too large")
    try:
        inputs = parse_dictionary(joined_input)
        signatures = parse_dictionary(joined_signature)
    except StructuredFieldError as exc:
        raise SignatureRejected(f"malformed signature header: {exc}") from exc
    signature_input = inputs.get(label)
    signature = signatures.get(label)
    if signature_input is None or signature is None:
        raise SignatureRejected(f"no signature labelled {label!r}")
    if not isinstance(signature_input, InnerList):
        raise SignatureRejected("Signature-Input member is not an inner list")
    if not all(isinstance(item.value, str) for item in signature_input.items):
        raise SignatureRejected("a covered component is not a string")
    if not isinstance(signature, Item) or not isinstance(signature.value, bytes):
        raise SignatureRejected("Signature member is not a byte sequence")
    if len(signature.value) != 64:
        raise SignatureRejected("an Ed25519 signature is 64 bytes")
    return signature_input, signature.value


def verify_request(
    *,
    method: str,
    target_uri: str,
    headers: Headers,
    body: bytes | None,
    jwks: Mapping[str, object] | Sequence[Mapping[str, object]],
    now: int,
    max_skew: int = DEFAULT_MAX_SKEW_SECONDS,
    required: Collection[str] = OPEN_PAYMENTS_REQUIRED,
    require_authorization: bool = True,
    require_content: bool = True,
    label: str = DEFAULT_LABEL,
) -> VerifiedSignature:
    """Verify the request's ``label`` signature with the key its ``keyid`` names in ``jwks``
    (a ``{"keys": [...]}`` document or a list of JWKs). See the module docstring for the rules."""
    lines = _field_lines(headers)
    signature_input, signature = _parse_signature_fields(lines, label)

    covered = tuple(item.value for item in signature_input.items if isinstance(item.value, str))
    needed = set(required)
    if require_authorization and "authorization" in lines:
        needed.add("authorization")
    if require_content and body:
        needed.update(CONTENT_COMPONENTS)
    missing = sorted(needed.difference(covered))
    if missing:
        raise SignatureRejected(f"signature does not cover {', '.join(missing)}")

    params = dict(signature_input.params)
    created = params.get("created")
    if not isinstance(created, int) or isinstance(created, bool):
        raise SignatureRejected("created must be an integer")
    if abs(now - created) > max_skew:
        raise SignatureRejected("created is outside the allowed clock skew")
    expires = params.get("expires")
    if expires is not None and (
        not isinstance(expires, int) or isinstance(expires, bool) or expires < now
    ):
        raise SignatureRejected("signature has expired")
    alg = params.get("alg")
    if alg is not None and alg != "ed25519":
        raise SignatureRejected('alg must be "ed25519"')
    keyid = params.get("keyid")
    if not isinstance(keyid, str):
        raise SignatureRejected("keyid must be a string")

    jwk = _find_jwk(jwks, keyid)
    try:
        public_key = jwk_to_public_key(jwk)
    except InvalidJwk as exc:
        raise SignatureRejected(f"the key is unusable: {exc}") from exc

    base = signature_base(
        method=method,
        target_uri=target_uri,
        headers=_pairs(lines),
        signature_input=signature_input,
    )
    try:
        public_key.verify(signature, base)
    except InvalidSignature as exc:
        raise SignatureRejected("signature does not verify") from exc

    # The signature covers the digest and length; these checks bind them to the body we got.
    if "content-digest" in covered:
        verify_content_digest(_field_value(lines, "content-digest") or "", body or b"")
    if "content-length" in covered and _field_value(lines, "content-length") != str(
        len(body or b"")
    ):
        raise SignatureRejected("Content-Length does not match the body")
    return VerifiedSignature(keyid=keyid, created=created, covered=covered, jwk=jwk)
