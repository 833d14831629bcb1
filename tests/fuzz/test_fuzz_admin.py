"""Fuzzing the admin API (issue 7): hypothesis-generated GraphQL documents built from the real
schema, random strings and JSON bodies, wrong content types and signatures, all sent to a
running backend that requires signatures (the ``admin`` fixture of ``tests/backend``).

For every request: no 5xx, an answer within ``TIMEOUT`` seconds, a JSON object with ``data`` or
``errors``, and no error whose ``extensions.code`` is INTERNAL_SERVER_ERROR (what the backend
says of an exception it did not expect). After each run the ledger accounts (posted and pending
balances) and the row counts of assets, peers, wallet_addresses, incoming_payments, quotes,
outgoing_payments and ledger_transfers are exactly as before.

Why "exactly as before" holds although mutations are fuzzed too: queries are generated from the
``Query`` root with any arguments (reads change nothing), and mutations from the ``Mutation``
root with every input *poisoned*: one field per mutation (``POISON``) holds a value the
resolver must refuse whatever the other fields hold, almost always a fresh random UUID (or a
string that is no UUID) where an existing asset, peer, wallet address, payment, quote or
withdrawal must be named; ``createAsset`` gets a code that is not 1-32 letters or digits,
``triggerWalletAddressEvents`` a limit outside 1-1000, ``createReceiver`` a wallet address URL
no wallet address has. Everything else in the input is random, rightly typed or not, so the
resolvers' own checks run on random data. A mutation that succeeds anyway is a failure of its
own (its field in ``data`` must be null), and every mutation of the schema must have a poison,
so a new one cannot slip in unfuzzed or change what is compared.

Inputs that broke the backend when the fuzzer first ran (page sizes of thousands of digits,
JSON nested a thousand deep, metadata holding an infinite number) are in the random search,
and each has a regression test at the end of this file.

How hypothesis runs with pytest-asyncio here (``asyncio_mode = "auto"``, one session loop): the
tests are async and the backend (uvicorn) serves on the test's event loop. Each ``@given``
function is synchronous, posts with a synchronous ``httpx.Client`` and runs in a worker thread
through ``asyncio.to_thread``, so the loop keeps serving meanwhile (as ``tests/backend/
test_http.py`` does). Requests are signed as ``Admin.post`` signs them
(:func:`kiungo.signatures.signature_header` over the JSON body), with strictly increasing
timestamps because a signature is accepted once.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import asyncpg
import graphql
import httpx
from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
    get_named_type,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.backend import conftest as backend_fixtures
from tests.backend.harness import WALLET_BASE, Admin, create_wallet_address
from tests.ledger.schema import Balances, ledger_balances

from kiungo.backend.app import MAX_BODY_BYTES
from kiungo.backend.schema import build_schema
from kiungo.ledger.check import run_checks
from kiungo.signatures import signature_header

# The backend tests' fixtures: a database copied from one migrated per session, and `admin`, a
# running backend with its workers that requires signatures.
migrated_template = backend_fixtures.migrated_template
migrated_database = backend_fixtures.migrated_database
admin = backend_fixtures.admin

T = TypeVar("T")

# Every request must be answered within this many seconds.
TIMEOUT = 5.0
# Bounded so that all of tests/fuzz runs in well under a minute on two cores (CI, every push);
# KIUNGO_FUZZ_EXAMPLES=5000 runs a deeper search locally.
EXAMPLES = int(os.environ.get("KIUNGO_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None)

SCHEMA: GraphQLSchema = graphql.build_schema(build_schema().as_str())


def _root(t: GraphQLObjectType | None) -> GraphQLObjectType:
    assert t is not None
    return t


QUERY, MUTATION = _root(SCHEMA.query_type), _root(SCHEMA.mutation_type)
COUNTED = (
    "assets",
    "peers",
    "wallet_addresses",
    "incoming_payments",
    "quotes",
    "outgoing_payments",
    "ledger_transfers",
)


# -- what must not change ------------------------------------------------------------------------


@dataclass(frozen=True)
class State:
    balances: Balances
    counts: dict[str, int]


async def state(pool: asyncpg.Pool) -> State:
    balances = await ledger_balances(pool)
    counts = {table: int(await pool.fetchval(f"SELECT count(*) FROM {table}")) for table in COUNTED}
    return State(balances, counts)


async def assert_unchanged(pool: asyncpg.Pool, before: State) -> None:
    after = await state(pool)
    assert after.counts == before.counts
    assert after.balances == before.balances
    async with pool.acquire() as conn:
        failed = [result for result in await run_checks(conn) if not result.ok]
    assert not failed, failed


# -- the backend under test, with something in it ------------------------------------------------


@dataclass
class Known:
    """Ids and URLs of what the backend holds, for arguments to name now and then."""

    ids: list[str] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)


async def seed(admin: Admin) -> Known:
    usd = await admin.create_asset("USD", 2)
    eur = await admin.create_asset("EUR", 2)
    await admin.deposit_asset(usd, 10_000)
    wallet = await create_wallet_address(admin, usd, "/alice")
    payment = await admin.data(
        "mutation($input: CreateIncomingPaymentInput!) {"
        " createIncomingPayment(input: $input) { payment { id } } }",
        {
            "input": {
                "walletAddressId": wallet,
                "incomingAmount": {"value": "500", "assetCode": "USD", "assetScale": 2},
                "expiresAt": (datetime.now(UTC) + timedelta(days=1)).isoformat(),
            }
        },
    )
    payment_id = payment["createIncomingPayment"]["payment"]["id"]
    peer = await admin.data(
        "mutation($input: CreatePeerInput!) { createPeer(input: $input) { peer { id } } }",
        {
            "input": {
                "assetId": usd,
                "staticIlpAddress": "test.peer",
                "http": {
                    "incoming": {"authTokens": ["peer-token"]},
                    "outgoing": {"authToken": "out", "endpoint": "http://127.0.0.1:9/ilp"},
                },
                "initialLiquidity": "300",
            }
        },
    )
    peer_id = peer["createPeer"]["peer"]["id"]
    wallet_url = f"{WALLET_BASE}/alice"
    return Known(
        ids=[usd, eur, wallet, payment_id, peer_id],
        urls=[
            wallet_url,
            f"{wallet_url}/incoming-payments/{payment_id}",
            "$wallet.example/alice",
        ],
    )


# -- sending -------------------------------------------------------------------------------------


class Signer:
    """Signature headers as ``Admin.post`` makes them, each with a later timestamp than the one
    before: a signature is accepted once, and two equal bodies in one millisecond would share
    one."""

    def __init__(self, secret: str) -> None:
        self._secret = secret
        self._last = 0

    def __call__(self, body: Any) -> str:
        self._last = max(int(time.time() * 1000), self._last + 1)
        return signature_header(self._secret, body, timestamp_ms=self._last)


def run_in_thread(admin: Admin, check: Callable[[httpx.Client, Signer], None]) -> Awaitable[None]:
    """Run a ``@given`` function off the loop, which keeps serving the backend meanwhile."""
    assert admin.secret is not None

    def run() -> None:
        with httpx.Client(timeout=TIMEOUT) as client:
            check(client, Signer(admin.secret or ""))

    return asyncio.to_thread(run)


def shown(sent: object) -> str:
    text = repr(sent)
    return text if len(text) < 3000 else text[:3000] + "…"


def post(
    client: httpx.Client, url: str, content: bytes, headers: dict[str, str], sent: object
) -> dict[str, Any]:
    """POST and check what every answer must be; the answer's body."""
    try:
        response = client.post(url, content=content, headers=headers)
    except httpx.TimeoutException:
        raise AssertionError(f"no answer within {TIMEOUT} s to {shown(sent)}") from None
    assert response.status_code < 500, (shown(sent), response.text[:3000])
    try:
        body = response.json()
    except ValueError:
        raise AssertionError(f"not JSON: {response.text[:500]!r} for {shown(sent)}") from None
    assert isinstance(body, dict) and ("data" in body or "errors" in body), (shown(sent), body)
    for error in body.get("errors") or ():
        code = (error.get("extensions") or {}).get("code")
        assert code is not None, (shown(sent), error)
        assert code != "INTERNAL_SERVER_ERROR", (shown(sent), error)
    body["_status"] = response.status_code
    return body


def post_signed(client: httpx.Client, sign: Signer, url: str, body: Any) -> dict[str, Any]:
    """``body`` as JSON, rightly signed: the signature is never why it is refused."""
    headers = {"content-type": "application/json", "signature": sign(body)}
    answer = post(client, url, json.dumps(body).encode(), headers, body)
    assert answer["_status"] != 401, (shown(body), answer)
    return answer


# -- values --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Enum:
    """An enum value: a bare name in a document, a string in variables."""

    name: str


@dataclass(frozen=True)
class Raw:
    """A literal written as is in a document (a number no Python int prints, say)."""

    text: str


_NAME = re.compile(r"[_A-Za-z][_0-9A-Za-z]*")


def literal(value: Any) -> str:
    """``value`` as a GraphQL literal."""
    if isinstance(value, Enum):
        return value.name
    if isinstance(value, Raw):
        return value.text
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(literal(item) for item in value) + "]"
    assert isinstance(value, dict)
    members = (
        f"{key if _NAME.fullmatch(key) else 'k' + key.encode('utf-8', 'replace').hex()}: "
        f"{literal(item)}"
        for key, item in value.items()
    )
    return "{" + ", ".join(members) + "}"


def as_json(value: Any) -> Any:
    """``value`` as a variable's JSON."""
    if isinstance(value, Enum | Raw):
        return value.name if isinstance(value, Enum) else value.text
    if isinstance(value, list):
        return [as_json(item) for item in value]
    if isinstance(value, dict):
        return {key: as_json(item) for key, item in value.items()}
    return value


ANY_CHAR = st.characters() | st.sampled_from(["\x00", "\ud800", "\udfff", "\n", '"', "\\"])
# JSON has no NaN or infinity (a GraphQL literal 1e400 is infinite: see
# test_an_infinite_number_in_metadata_is_refused_not_an_internal_error).
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(ANY_CHAR, max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


# Hypothesis favours the ends of a range (0 most of all): "one in eight" is a value inside it.
ONE_IN_EIGHT = st.integers(0, 7).map(lambda n: n == 5)


def rarely(usual: st.SearchStrategy[T], rare: st.SearchStrategy[T]) -> st.SearchStrategy[T]:
    """``rare`` one time in eight."""
    return ONE_IN_EIGHT.flatmap(lambda is_rare: rare if is_rare else usual)


_LETTERS = "_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
RANDOM_NAMES = st.builds(
    str.__add__, st.sampled_from(_LETTERS), st.text(_LETTERS + "0123456789", max_size=10)
)


def strings(known: Known) -> st.SearchStrategy[str]:
    uuid_ = str(uuid.uuid4())
    usual = st.one_of(
        st.text(ANY_CHAR, max_size=30),
        st.sampled_from(known.ids + known.urls),
        st.uuids().map(str),
        st.sampled_from(
            [
                "",
                " ",
                "USD",
                "test.peer",
                "g.x.y",
                "2030-01-01T00:00:00Z",
                "not a date",
                "18446744073709551616",
                "-1",
                f"{WALLET_BASE}/alice/incoming-payments/{uuid_}",
                f"{WALLET_BASE}/nobody",
                f"{WALLET_BASE}/alice?x=1#y",
                # another node: refused at once (nothing listens on port 9)
                f"http://127.0.0.1:9/bob/incoming-payments/{uuid_}",
                "http://127.0.0.1:9/bob",
                "$127.0.0.1:9/bob",
                "ftp://x/y",
            ]
        ),
    )
    # one in 64 huge: around the body limit (256 kB)
    return rarely(usual, rarely(usual, st.integers(1_000, 300_000).map(lambda n: "x" * n)))


U64S = rarely(
    st.integers(0, 2**64 - 1) | st.integers(0, 2**64 - 1).map(str),
    st.sampled_from([-1, 2**64, "-1", str(2**64), "", "1.5", "0x10", "+1", " 1", "١", 1.0, True]),
)
# Numbers with more digits than Python converts (4300) by default.
HUGE_NUMBERS = st.sampled_from([Raw("9" * 5_000), Raw("-" + "1" * 4_400), Raw("1" + "0" * 400)])


class Values:
    """Strategies of values for the input types of the schema, built once per type (building
    strategies is what makes drawing slow). Values are of the type, or with ``sloppy`` one in
    eight of any JSON shape (and where ``huge``, numbers of thousands of digits written as
    is), at any level of an input object or list."""

    def __init__(self, known: Known) -> None:
        self.strings = strings(known)
        self._cache: dict[tuple[str, bool, bool], st.SearchStrategy[Any]] = {}

    def of(
        self, t: GraphQLInputType, *, sloppy: bool = True, huge: bool = True
    ) -> st.SearchStrategy[Any]:
        key = (str(t), sloppy, huge)
        if key not in self._cache:
            typed = self._typed(t, sloppy)
            wrong = json_values | HUGE_NUMBERS if huge else json_values
            self._cache[key] = rarely(typed, wrong) if sloppy else typed
        return self._cache[key]

    def _typed(self, t: GraphQLInputType, sloppy: bool) -> st.SearchStrategy[Any]:
        if isinstance(t, GraphQLNonNull):
            return self._of_type(t.of_type, sloppy)
        return self._of_type(t, sloppy) | st.none()

    def _of_type(self, t: GraphQLInputType, sloppy: bool) -> st.SearchStrategy[Any]:
        if isinstance(t, GraphQLList):
            item = self.of(t.of_type, sloppy=sloppy)
            return st.lists(item, max_size=3) | item  # a single value coerces to a list of one
        if isinstance(t, GraphQLEnumType):
            return rarely(st.sampled_from(list(t.values)), st.just("NOPE")).map(Enum)
        if isinstance(t, GraphQLInputObjectType):  # (no input type of the schema nests itself)
            fields = t.fields.items()
            required = {
                n: self.of(f.type, sloppy=sloppy)
                for n, f in fields
                if isinstance(f.type, GraphQLNonNull)
            }
            optional = {n: self.of(f.type, sloppy=sloppy) for n, f in fields if n not in required}
            return st.fixed_dictionaries(required, optional=optional)
        assert isinstance(t, GraphQLScalarType), t
        if t.name in ("String", "ID"):
            return self.strings
        if t.name == "Int":
            return rarely(
                st.integers(-(2**31), 2**31 - 1), st.sampled_from([2**31, -(2**31) - 1, 10**30])
            )
        if t.name == "Float":
            return st.floats(allow_nan=False, allow_infinity=False)
        if t.name == "Boolean":
            return st.booleans()
        if t.name == "UInt64":
            return U64S
        if t.name == "UInt8":
            return rarely(st.integers(0, 255), st.sampled_from([-1, 256, 2**40]))
        if t.name == "JSONObject":
            return st.dictionaries(st.text(ANY_CHAR, max_size=10), json_values, max_size=4)
        raise AssertionError(f"no values for scalar {t.name}")


# -- documents -----------------------------------------------------------------------------------

WRONG_TYPES = st.sampled_from(
    [
        "String",
        "String!",
        "Int",
        "[String!]!",
        "UInt64",
        "UInt8!",
        "JSONObject",
        "Boolean!",
        "ID",
        "SortOrder",
        "NoSuchType",
        "CreateAssetInput!",
        "[[Int]]",
    ]
)
EXTRAS = st.sampled_from(["", "", "", "__typename", "inline", "fragment"])
MAX_FIELDS = 40  # per document, so that examples stay small enough to run many


def _fields_of(t: GraphQLObjectType) -> st.SearchStrategy[list[str]]:
    return st.lists(st.sampled_from(sorted(t.fields)), min_size=1, max_size=4, unique=True)


FIELDS = {
    t.name: _fields_of(t)
    for t in SCHEMA.type_map.values()
    if isinstance(t, GraphQLObjectType) and not t.name.startswith("__")
}


@dataclass
class Request:
    query: str
    variables: dict[str, Any] | None
    operation_name: str | None
    mutations: list[str]  # the aliases of mutation fields, whose results must be null

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"query": self.query}
        if self.variables is not None:
            body["variables"] = self.variables
        if self.operation_name is not None:
            body["operationName"] = self.operation_name
        return body


@dataclass
class Builder:
    """One document being drawn: its variables, fragments and size so far, and how many
    mistakes it may still make (most documents make none, so that they reach the resolvers)."""

    draw: st.DrawFn
    values: Values
    mistakes: int = 0
    definitions: list[str] = field(default_factory=list)
    variables: dict[str, Any] = field(default_factory=dict)
    fragments: list[str] = field(default_factory=list)
    fields: int = 0

    def __post_init__(self) -> None:
        self.mistakes = self.draw(st.integers(0, 3))

    def rare(self) -> bool:
        return self.draw(ONE_IN_EIGHT)

    def mistake(self) -> bool:
        """Whether to make a mistake here: one time in eight while the budget lasts."""
        if self.mistakes and self.rare():
            self.mistakes -= 1
            return True
        return False

    def value(self, t: GraphQLInputType, value: Any) -> str:
        """``value`` for a position of type ``t``: a literal, or a variable (declared with the
        right type, unless by mistake; its value missing by mistake)."""
        if not self.draw(st.booleans()):
            return literal(value)
        name = f"v{len(self.definitions)}"
        declared = self.draw(WRONG_TYPES) if self.mistake() else str(t)
        self.definitions.append(f"${name}: {declared}")
        if not self.mistake():
            self.variables[name] = as_json(value)
        return f"${name}"

    def argument_value(self, name: str, t: GraphQLInputType) -> Any:
        sloppy = self.mistake()
        return self.draw(self.values.of(t, sloppy=sloppy))

    def arguments(self, args: dict[str, graphql.GraphQLArgument]) -> str:
        """The arguments of a field: required ones (unless by mistake), optional ones now and
        then, and by mistake one it does not have."""
        given = []
        for name, arg in args.items():
            required = isinstance(arg.type, GraphQLNonNull)
            if (required and not self.mistake()) or (not required and self.draw(st.booleans())):
                given.append(f"{name}: {self.value(arg.type, self.argument_value(name, arg.type))}")
        if self.mistake():
            given.append(f"{self.draw(RANDOM_NAMES)}: {literal(self.draw(json_values))}")
        return f"({', '.join(given)})" if given else ""

    def directive(self) -> str:
        if not self.rare():
            return ""
        name = self.draw(st.sampled_from(["skip", "include"]))
        if self.mistake():
            name = self.draw(st.sampled_from(["deprecated", "nope", "specifiedBy"]))
        condition = self.value(GraphQLNonNull(graphql.GraphQLBoolean), self.draw(st.booleans()))
        return f" @{name}(if: {condition})"

    def field(self, parent: GraphQLObjectType, name: str, depth: int) -> str:
        self.fields += 1
        definition = parent.fields[name]
        alias = f"{self.draw(RANDOM_NAMES)}: " if self.rare() else ""
        text = alias + name + self.arguments(definition.args) + self.directive()
        inner = get_named_type(definition.type)
        if isinstance(inner, GraphQLObjectType):
            text += " " + self.selection(inner, depth - 1)
        elif self.mistake():
            text += " { id }"  # a selection on a leaf
        return text

    def selection(self, t: GraphQLObjectType, depth: int) -> str:
        if depth <= 0 or self.fields > MAX_FIELDS:
            return "{ __typename }"
        items = [self.field(t, name, depth) for name in self.draw(FIELDS[t.name])]
        extra = self.draw(EXTRAS)
        if extra == "__typename":
            items.append("__typename")
        elif extra == "inline":  # nesting without a field
            condition = self.draw(st.sampled_from([f"on {t.name} ", ""]))
            if self.mistake():
                condition = self.draw(st.sampled_from(["on Query ", "on Nope ", "on Boolean "]))
            items.append(f"... {condition}{self.directive()}{self.selection(t, depth)}")
        elif extra == "fragment":
            name = f"F{len(self.fragments)}"
            self.fragments.append("")  # reserve the name: fragments may spread each other
            index = len(self.fragments) - 1
            self.fragments[index] = f"fragment {name} on {t.name} {self.selection(t, depth)}"
            items.append(f"...{name}")
        if self.mistake():
            items.append(
                self.draw(
                    st.one_of(
                        RANDOM_NAMES,  # no such field (mostly)
                        st.integers(0, 3).map(lambda i: f"...F{i}"),  # no such fragment, or a cycle
                        st.sampled_from(sorted(t.fields)).map(
                            lambda f: f"{f}(x: 1)"
                        ),  # conflicting
                    )
                )
            )
        return "{ " + " ".join(items) + " }"

    def document(self, kind: str, roots: list[str]) -> str:
        definitions = f"({', '.join(self.definitions)})" if self.definitions else ""
        name = self.draw(st.sampled_from(["", "Fuzz"]))
        operation = f"{kind} {name}{definitions} {{ {' '.join(roots)} }}"
        return " ".join([operation, *self.fragments])


DEPTHS = st.integers(1, 6) | st.just(12)  # past MAX_DEPTH (10) now and then
QUERY_ROOTS = st.lists(st.sampled_from(sorted(QUERY.fields)), min_size=1, max_size=3)


@st.composite
def queries(draw: st.DrawFn, values: Values) -> Request:
    """A query of the real ``Query`` fields: random arguments, selections, aliases (sometimes
    more than the limit of 30), fragments, directives and variables."""
    builder = Builder(draw, values)
    depth = draw(DEPTHS)
    roots = [builder.field(QUERY, name, depth) for name in draw(QUERY_ROOTS)]
    if builder.mistake():  # many aliases of one field
        unaliased = re.sub(r"^[_A-Za-z][_0-9A-Za-z]*: ", "", roots[0])
        roots += [f"a{i}: {unaliased}" for i in range(draw(st.integers(2, 40)))]
    text = builder.document("query", roots)
    operation = None
    if builder.mistake():
        operation = draw(st.sampled_from(["Fuzz", "Other", ""]))
    variables = builder.variables or draw(st.sampled_from([None, {}]))
    return Request(text, variables, operation, [])


def unknown_ids() -> st.SearchStrategy[str]:
    """Ids nothing has: fresh UUIDs (with 122 random bits) or no UUID at all."""
    return st.uuids().map(str) | st.sampled_from(["", "not-a-uuid", "0" * 33, "g" * 36])


def bad_codes() -> st.SearchStrategy[str]:
    """Asset codes createAsset refuses: not 1 to 32 letters or digits."""
    return st.one_of(
        st.just(""),
        st.integers(33, 200).map(lambda n: "A" * n),
        st.tuples(st.text(max_size=5), st.sampled_from(" -_.$€\x00"), st.text(max_size=5)).map(
            "".join
        ),
    )


# The input field of each mutation that makes it refuse, whatever the rest of its input holds.
POISON: dict[str, tuple[str, st.SearchStrategy[Any]]] = {
    "createAsset": ("code", bad_codes()),
    "updateAsset": ("id", unknown_ids()),
    "deleteAsset": ("id", unknown_ids()),
    "depositAssetLiquidity": ("assetId", unknown_ids()),
    "createAssetLiquidityWithdrawal": ("assetId", unknown_ids()),
    "setFee": ("assetId", unknown_ids()),
    "postLiquidityWithdrawal": ("withdrawalId", unknown_ids()),
    "voidLiquidityWithdrawal": ("withdrawalId", unknown_ids()),
    "createWalletAddress": ("assetId", unknown_ids()),
    "updateWalletAddress": ("id", unknown_ids()),
    "createWalletAddressWithdrawal": ("walletAddressId", unknown_ids()),
    "createWalletAddressKey": ("walletAddressId", unknown_ids()),
    "revokeWalletAddressKey": ("id", unknown_ids()),
    "revokeGrant": ("grantId", unknown_ids()),
    "triggerWalletAddressEvents": (
        "limit",
        st.integers(-(2**31), 0) | st.integers(1001, 2**31 - 1),
    ),
    "createIncomingPayment": ("walletAddressId", unknown_ids()),
    "updateIncomingPayment": ("id", unknown_ids()),
    "cancelIncomingPayment": ("id", unknown_ids()),
    "createIncomingPaymentWithdrawal": ("incomingPaymentId", unknown_ids()),
    "createPeer": ("assetId", unknown_ids()),
    # Refused before the peer's URL is asked (an unknown asset, or no UUID).
    "createOrUpdatePeerByUrl": ("assetId", unknown_ids()),
    "updatePeer": ("id", unknown_ids()),
    "deletePeer": ("id", unknown_ids()),
    "depositPeerLiquidity": ("peerId", unknown_ids()),
    "createPeerLiquidityWithdrawal": ("peerId", unknown_ids()),
    "createQuote": ("walletAddressId", unknown_ids()),
    "createOutgoingPayment": ("walletAddressId", unknown_ids()),
    "createOutgoingPaymentFromIncomingPayment": ("walletAddressId", unknown_ids()),
    "cancelOutgoingPayment": ("id", unknown_ids()),
    "depositOutgoingPaymentLiquidity": ("outgoingPaymentId", unknown_ids()),
    "createOutgoingPaymentWithdrawal": ("outgoingPaymentId", unknown_ids()),
    "createReceiver": (
        "walletAddressUrl",
        unknown_ids().map(lambda i: f"{WALLET_BASE}/{i}") | unknown_ids(),
    ),
    "completeReceiver": (
        "id",
        unknown_ids().map(lambda i: f"{WALLET_BASE}/alice/incoming-payments/{i}") | unknown_ids(),
    ),
}


MUTATION_ROOTS = st.lists(st.sampled_from(sorted(MUTATION.fields)), min_size=1, max_size=3)


@st.composite
def mutations(draw: st.DrawFn, values: Values) -> Request:
    """One to three mutations of the real ``Mutation`` fields, each with a poisoned input."""
    builder = Builder(draw, values)
    roots, aliases = [], []
    for i, name in enumerate(draw(MUTATION_ROOTS)):
        definition = MUTATION.fields[name]
        ((argument, spec),) = definition.args.items()
        value = builder.argument_value(argument, spec.type)
        if isinstance(value, dict):
            poisoned_field, poison = POISON[name]
            value[poisoned_field] = draw(poison)
        # else: no input object at all, which no resolver runs with
        alias = f"m{i}"
        aliases.append(alias)
        output = get_named_type(definition.type)
        assert isinstance(output, GraphQLObjectType)
        selection = builder.selection(output, draw(DEPTHS))
        roots.append(f"{alias}: {name}({argument}: {builder.value(spec.type, value)}) {selection}")
    text = builder.document("mutation", roots)
    operation = None
    if builder.mistake():  # a second operation: which one runs?
        text += " query Q { __typename }"
        operation = draw(st.sampled_from([None, "Fuzz", "Q"]))
    return Request(text, builder.variables or None, operation, aliases)


# -- the tests -----------------------------------------------------------------------------------


async def test_every_mutation_has_a_poison() -> None:
    assert set(POISON) == set(MUTATION.fields), "give every mutation a POISON entry"
    for name, (poisoned_field, _) in POISON.items():
        (argument,) = MUTATION.fields[name].args.values()
        input_type = get_named_type(argument.type)
        assert isinstance(input_type, GraphQLInputObjectType)
        assert poisoned_field in input_type.fields, (name, poisoned_field)


async def test_random_queries_of_the_schema_get_no_server_error(admin: Admin) -> None:
    known = await seed(admin)
    before = await state(admin.pool)
    url = f"{admin.url}/graphql"

    @FUZZ
    @given(request=queries(Values(known)))
    def check(client: httpx.Client, sign: Signer, request: Request) -> None:
        post_signed(client, sign, url, request.body())

    await run_in_thread(admin, check)
    await assert_unchanged(admin.pool, before)


async def test_mutations_with_a_poisoned_input_change_nothing(admin: Admin) -> None:
    known = await seed(admin)
    before = await state(admin.pool)
    url = f"{admin.url}/graphql"

    @FUZZ
    @given(request=mutations(Values(known)))
    def check(client: httpx.Client, sign: Signer, request: Request) -> None:
        answer = post_signed(client, sign, url, request.body())
        data = answer.get("data") or {}
        succeeded = [alias for alias in request.mutations if data.get(alias) is not None]
        assert not succeeded, ("a poisoned mutation succeeded", request, answer)

    await run_in_thread(admin, check)
    await assert_unchanged(admin.pool, before)


# Printable ASCII as a client may send it: no space or tab around it.
HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80).map(
    str.strip
)
CONTENT_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "APPLICATION/JSON",
    "application/graphql",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "text/plain",
    "application/jsonx",
    "",
    ";",
]


def raw_bodies() -> st.SearchStrategy[bytes]:
    """Bytes no JSON encoder writes: random, truncated, deeply nested, huge numbers, NaN."""
    return st.one_of(
        st.binary(max_size=200),
        st.text(max_size=200).map(str.encode),
        st.integers(1, 5_000).map(lambda n: b"[" * n + b"]" * n),
        st.integers(1, 5_000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
        st.sampled_from(
            [b"", b"{", b"null", b"NaN", b'{"query": NaN}', b'{"query": 1e999}',
             b'{"query": "{ __typename }", "query": 1}', b'{"query": "\\ud800"}',
             b"9" * 5_000, b"\xef\xbb\xbf{}", b'{"query": "{ __typename }"}\x00']
        ),
    )  # fmt: skip


GRAPHQL_TOKENS = st.sampled_from(
    [
        *"{}()[]:$!@=,\"'\\#&|",
        *("...", "on", "query", "mutation", "fragment", "subscription", "assets", "edges"),
        *("node", "id", "first", "__schema", "__typename", "1", "1.5", '"x"'),
    ]
)


def nested(depth: int, name: str) -> str:
    return "{ " + f"{name} {{ " * depth + "__typename" + " }" * depth + " }"


@st.composite
def bodies(draw: st.DrawFn, values: Values) -> Any:
    """A JSON value to send as the body: any value, or an object with a query (random text,
    random tokens, deep nesting, a query of the schema; the last with any variables, operation
    name and extensions)."""
    query = st.one_of(
        st.text(max_size=200),
        st.lists(GRAPHQL_TOKENS, max_size=60).map(" ".join),
        st.builds(nested, st.integers(1, 300), st.sampled_from(["a", "assets", "...on Query"])),
        queries(values).map(lambda r: r.query),
        json_values,
    )
    return draw(
        st.one_of(
            json_values,
            st.fixed_dictionaries({"query": query}),
            st.fixed_dictionaries(
                {"query": query},
                optional={
                    "variables": json_values,
                    "operationName": json_values,
                    "extensions": json_values,
                },
            ),
        )
    )


async def test_random_bodies_content_types_and_signatures_get_no_server_error(
    admin: Admin,
) -> None:
    """Bodies of any JSON value, rightly signed; bytes that are no JSON; content types other
    than JSON; signatures missing, malformed, stale, for another body or used twice."""
    known = await seed(admin)
    before = await state(admin.pool)
    url = f"{admin.url}/graphql"
    assert admin.secret is not None
    secret = admin.secret

    @FUZZ
    @given(
        case=st.sampled_from(["json", "json", "bytes", "content-type", "signature"]),
        body=bodies(Values(known)),
        raw=raw_bodies(),
        content_type=st.sampled_from(CONTENT_TYPES) | HEADER_TEXT,
        signature=st.sampled_from(
            ["", "t=1, v1=" + "0" * 64, "garbage", "t=, v1=", "stale", "other", "twice"]
        )
        | HEADER_TEXT
        | st.builds(
            "t={}, v1={}{}".format,
            st.integers(-1, 2**70),
            st.text("0123456789abcdefABCDEF", max_size=70),
            st.sampled_from(["", ", n=x", ", n=", ",", ", v1=0", ", t=1"]),
        ),
    )
    def check(
        client: httpx.Client,
        sign: Signer,
        case: str,
        body: Any,
        raw: bytes,
        content_type: str,
        signature: str,
    ) -> None:
        if case == "json":
            post_signed(client, sign, url, body)
        elif case == "bytes":
            headers = {"content-type": "application/json", "signature": sign({})}
            answer = post(client, url, raw, headers, raw)
            assert answer["_status"] in (400, 401, 413), (raw[:300], answer)
        elif case == "content-type":
            headers = {"content-type": content_type, "signature": sign(body)}
            post(client, url, json.dumps(body).encode(), headers, (content_type, body))
        else:
            if signature == "stale":
                signature = signature_header(
                    secret, body, timestamp_ms=int(time.time() * 1000) - 3_600_000
                )
            elif signature == "other":
                signature = sign({"query": "{ __typename }", "other": str(uuid.uuid4())})
            elif signature == "twice":
                signature = sign(body)
                post(
                    client,
                    url,
                    json.dumps(body).encode(),
                    {"content-type": "application/json", "signature": signature},
                    body,
                )
            content = json.dumps(body).encode()
            headers = {"content-type": "application/json", "signature": signature}
            answer = post(client, url, content, headers, (signature, body))
            if len(content) > MAX_BODY_BYTES:
                assert answer["_status"] == 413, answer
            else:
                assert answer["_status"] == 401, (signature, body, answer)
                assert answer["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"

    await run_in_thread(admin, check)
    await assert_unchanged(admin.pool, before)


# -- what the fuzzer found (each was a 500 or an INTERNAL_SERVER_ERROR) ---------------------------


async def test_a_page_size_of_thousands_of_digits_is_refused_not_a_500(admin: Admin) -> None:
    response = await admin.post("{ assets(first: " + "9" * 4_300 + ") { edges { node { id } } } }")
    assert response.status_code == 400, response.text
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_json_nested_a_thousand_deep_is_refused_not_a_500(admin: Admin) -> None:
    response = await admin.client.post(
        f"{admin.url}/graphql",
        content=b"[" * 1_000 + b"]" * 1_000,
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400, response.text


async def test_an_infinite_number_in_metadata_is_refused_not_an_internal_error(
    admin: Admin,
) -> None:
    """1e400 is beyond a double: JSON cannot write it, so metadata holding it is refused as
    BAD_USER_INPUT by every mutation that stores metadata, and nothing is written."""
    usd = await admin.create_asset("USD", 2)
    wallet = await create_wallet_address(admin, usd, "/alice")
    before = await admin.pool.fetchval("SELECT count(*) FROM incoming_payments")
    for mutation, target in (
        ("createIncomingPayment", f'walletAddressId: "{wallet}"'),
        ("createReceiver", f'walletAddressUrl: "{WALLET_BASE}/alice"'),
    ):
        failure = await admin.error(
            f"mutation {{ {mutation}(input: {{{target}, metadata: {{k: 1e400, n: [1, 2]}}}})"
            " { __typename } }"
        )
        assert failure.code == "BAD_USER_INPUT", (mutation, failure.errors)
        assert "infinite" in failure.errors[0]["message"], failure.errors
    assert await admin.pool.fetchval("SELECT count(*) FROM incoming_payments") == before
