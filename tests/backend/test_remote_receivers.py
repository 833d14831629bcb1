"""Receivers on another node over Open Payments, through the admin API, against a real second
HTTP server that plays that node's wallet address, authorization server and resource server,
and misbehaves at each step on demand: every failure is a typed GraphQL error within the
receiver read bounds, never a hang or a 500. Also what the client keeps: one grant for many
requests, rotated when its token expires, replaced after a 401."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from tests.backend.harness import Admin, backend_settings, running_backend
from tests.openpayments.other_node import STEPS, OtherNode, other_node

from kiungo.openpayments.identity import node_identity

FIELDS = (
    "id walletAddressUrl completed expiresAt metadata createdAt "
    "incomingAmount { value assetCode assetScale } receivedAmount { value assetCode assetScale }"
)
CREATE = (
    "mutation($input: CreateReceiverInput!) { createReceiver(input: $input) {"
    f" receiver {{ {FIELDS} }} }} }}"
)
READ = f"query($id: String!) {{ receiver(id: $id) {{ {FIELDS} }} }}"
COMPLETE = (
    "mutation($input: CompleteReceiverInput!) { completeReceiver(input: $input) {"
    f" receiver {{ {FIELDS} }} }} }}"
)
TIMEOUT_MS = 1000  # under load, a good answer takes longer than 0.25 s


@contextlib.asynccontextmanager
async def backend_and_other(
    database: str, redis_url: str, prefix: str
) -> AsyncIterator[tuple[Admin, OtherNode]]:
    settings = backend_settings(prefix, receiver_fetch_timeout_ms=TIMEOUT_MS)
    identity = node_identity(settings)
    async with other_node() as other, running_backend(database, redis_url, settings) as admin:
        # The key the node signs with, as its jwks.json publishes it, and who it says it is.
        other.jwk, other.client = identity.jwk(), identity.wallet_address
        yield admin, other


async def test_create_read_and_complete_a_receiver_on_another_node_with_one_grant(
    migrated_database: str, redis_server_url: str, redis_prefix: str, redis: object
) -> None:
    async with backend_and_other(migrated_database, redis_server_url, redis_prefix) as (
        admin,
        other,
    ):
        amount = {"value": "250", "assetCode": "USD", "assetScale": 2}
        given = {
            "walletAddressUrl": other.wallet,
            "metadata": {"order": 7},
            "incomingAmount": amount,
        }
        created = (await admin.data(CREATE, {"input": given}))["createReceiver"]["receiver"]
        assert created["id"].startswith(f"{other.url}/incoming-payments/")
        assert created["walletAddressUrl"] == other.wallet
        assert created["incomingAmount"]["value"] == "250" and created["metadata"] == {"order": 7}
        read = (await admin.data(READ, {"id": created["id"]}))["receiver"]
        assert read == created
        done = await admin.data(COMPLETE, {"input": {"incomingPaymentUrl": created["id"]}})
        assert done["completeReceiver"]["receiver"]["completed"] is True
        # `id`, Kiungo's earlier name for the URL, still works.
        again = await admin.data(COMPLETE, {"input": {"id": created["id"]}})
        assert again["completeReceiver"]["receiver"]["completed"] is True
        # One grant served every request.
        assert other.hits["grant"] == 1 and other.hits["rotate"] == 0

        # A revoked token (the server forgot it): one 401, a new grant, the request again.
        other.tokens.clear()
        assert (await admin.data(READ, {"id": created["id"]}))["receiver"]["completed"] is True
        assert other.hits["grant"] == 2

        # An amount in another asset than the wallet address's never reaches the server.
        other_asset = {**given, "incomingAmount": {"value": "1", "assetCode": "EUR",
                                                   "assetScale": 2}}  # fmt: skip
        failure = await admin.error(CREATE, {"input": other_asset})
        assert failure.code == "BAD_USER_INPUT" and "asset" in failure.errors[0]["message"]
        assert other.hits["create"] == 1


async def test_an_expired_token_is_rotated_not_requested_again(
    migrated_database: str, redis_server_url: str, redis_prefix: str, redis: object
) -> None:
    async with backend_and_other(migrated_database, redis_server_url, redis_prefix) as (
        admin,
        other,
    ):
        other.expires_in = 1  # within the client's margin: expired at its next use
        created = await admin.data(CREATE, {"input": {"walletAddressUrl": other.wallet}})
        url = created["createReceiver"]["receiver"]["id"]
        await admin.data(READ, {"id": url})
        await admin.data(READ, {"id": url})
        assert other.hits["grant"] == 1 and other.hits["rotate"] == 2
        # A failed rotation: a new grant instead.
        other.modes["rotate"] = "garbage"
        await admin.data(READ, {"id": url})
        assert other.hits["grant"] == 2


CREATE_CASES = [
    ("wallet", "garbage", "NOT_FOUND"),
    ("wallet", "huge", "NOT_FOUND"),
    ("wallet", "html", "NOT_FOUND"),
    ("wallet", "redirect", "NOT_FOUND"),
    ("wallet", "shape", "NOT_FOUND"),
    ("wallet", "missing", "NOT_FOUND"),
    ("wallet", "slow", "NOT_FOUND"),
    ("grant", "garbage", "FORBIDDEN"),
    ("grant", "huge", "FORBIDDEN"),
    ("grant", "redirect", "FORBIDDEN"),
    ("grant", "shape", "FORBIDDEN"),
    ("grant", "unauthorized", "FORBIDDEN"),
    ("grant", "interact", "FORBIDDEN"),
    ("grant", "slow", "FORBIDDEN"),
    ("create", "garbage", "BAD_USER_INPUT"),
    ("create", "huge", "BAD_USER_INPUT"),
    ("create", "html", "BAD_USER_INPUT"),
    ("create", "redirect", "BAD_USER_INPUT"),
    ("create", "shape", "BAD_USER_INPUT"),
    ("create", "unauthorized", "BAD_USER_INPUT"),
    ("create", "slow", "BAD_USER_INPUT"),
]


async def test_a_hostile_node_is_a_typed_error_in_bounded_time(
    migrated_database: str, redis_server_url: str, redis_prefix: str, redis: object
) -> None:
    async with backend_and_other(migrated_database, redis_server_url, redis_prefix) as (
        admin,
        other,
    ):
        made = await admin.data(CREATE, {"input": {"walletAddressUrl": other.wallet}})
        url = made["createReceiver"]["receiver"]["id"]

        async def refused(query: str, variables: dict[str, Any], code: str, case: Any) -> None:
            started = time.monotonic()
            failure = await admin.error(query, variables)
            assert failure.code == code, (case, failure.errors)
            # At most four bounded exchanges (a 401 is retried once with a new grant).
            assert time.monotonic() - started < 4 * TIMEOUT_MS / 1000 + 1, case

        for step, mode, code in CREATE_CASES:
            other.modes = dict.fromkeys(STEPS, "ok") | {step: mode}
            await admin.backend.open_payments.forget_grant(f"{other.url}/auth")
            before = len(other.payments)
            await refused(CREATE, {"input": {"walletAddressUrl": other.wallet}}, code, (step, mode))
            if step != "create":  # refused before the resource server was asked
                assert len(other.payments) == before, (step, mode)

        read_cases = [
            ("public", "missing", "NOT_FOUND"),
            ("public", "garbage", "BAD_USER_INPUT"),
            ("public", "huge", "BAD_USER_INPUT"),
            ("public", "redirect", "BAD_USER_INPUT"),
            ("public", "shape", "BAD_USER_INPUT"),
            ("public", "slow", "BAD_USER_INPUT"),
            ("grant", "garbage", "FORBIDDEN"),
            ("read", "garbage", "BAD_USER_INPUT"),
            ("read", "shape", "BAD_USER_INPUT"),
            ("read", "unauthorized", "BAD_USER_INPUT"),
            ("read", "missing", "NOT_FOUND"),
            ("read", "slow", "BAD_USER_INPUT"),
        ]
        for step, mode, code in read_cases:
            other.modes = dict.fromkeys(STEPS, "ok") | {step: mode}
            await admin.backend.open_payments.forget_grant(f"{other.url}/auth")
            await refused(READ, {"id": url}, code, ("read", step, mode))
        for step, mode, code in [
            ("complete", "garbage", "BAD_USER_INPUT"),
            ("complete", "shape", "BAD_USER_INPUT"),
            ("complete", "slow", "BAD_USER_INPUT"),
            ("complete", "missing", "NOT_FOUND"),
            ("public", "missing", "NOT_FOUND"),
        ]:
            other.modes = dict.fromkeys(STEPS, "ok") | {step: mode}
            await refused(COMPLETE, {"input": {"incomingPaymentUrl": url}}, code, (step, mode))


@pytest.mark.parametrize(
    "given",
    [
        {"incomingPaymentUrl": "https://other.example/incoming-payments/x"},
        {},
        {"incomingPaymentUrl": "https://a.example/incoming-payments/1", "id": "https://b.example"},
    ],
)
async def test_complete_receiver_input_is_checked(admin: Admin, given: dict[str, str]) -> None:
    failure = await admin.error(COMPLETE, {"input": given})
    assert failure.code == "BAD_USER_INPUT", failure.errors
