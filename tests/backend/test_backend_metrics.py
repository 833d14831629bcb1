"""The ledger gauges of the backend's ``GET /metrics``: every asset's and peer's liquidity and
the pending holds, set by the workers' rounds from what the admin API and the ledger did."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from tests.backend.harness import Admin, create_wallet_address

from kiungo.ledger import AccountKind, account_id_for

Liquidity = dict[tuple[str, str, str], float]


@dataclass(frozen=True)
class Gauges:
    liquidity: Liquidity
    pending_holds: float
    oldest_pending_hold_seconds: float


async def gauges(admin: Admin) -> Gauges:
    """The ledger gauges as a scraper reads them."""
    response = await admin.client.get(f"{admin.url}/metrics")
    assert response.status_code == 200
    liquidity: Liquidity = {}
    single: dict[str, float] = {}
    for family in text_string_to_metric_families(response.text):
        if family.name == "kiungo_liquidity":
            assert family.type == "gauge"
            for sample in family.samples:
                labels = sample.labels
                key = (labels["kind"], labels["id"], labels["asset"])
                assert key not in liquidity
                liquidity[key] = sample.value
        elif family.name in ("kiungo_pending_holds", "kiungo_oldest_pending_hold_seconds"):
            assert family.type == "gauge"
            (sample,) = family.samples
            single[family.name] = sample.value
    return Gauges(
        liquidity, single["kiungo_pending_holds"], single["kiungo_oldest_pending_hold_seconds"]
    )


async def until(admin: Admin, check: Callable[[Gauges], bool], within: float = 10.0) -> Gauges:
    """The gauges once ``check`` holds for them (the workers round every 50 ms here)."""
    deadline = time.monotonic() + within
    while True:
        seen = await gauges(admin)
        if check(seen):
            return seen
        if time.monotonic() > deadline:
            raise AssertionError(f"still not so after {within} s: {seen}")
        await asyncio.sleep(0.02)


async def settled(admin: Admin, liquidity: Liquidity, holds: int = 0) -> Gauges:
    """Wait for exactly these liquidity series and ``holds`` pending holds, none overdue."""
    return await until(
        admin,
        lambda g: (
            g.liquidity == liquidity
            and g.pending_holds == holds
            and g.oldest_pending_hold_seconds == 0
        ),
    )


def _ids() -> dict[str, str]:
    return {"id": str(uuid.uuid4()), "idempotencyKey": str(uuid.uuid4())}


async def mutate(admin: Admin, mutation: str, input_type: str, **fields: Any) -> None:
    data = await admin.data(
        f"mutation($input: {input_type}!) {{ {mutation}(input: $input) {{ success }} }}",
        {"input": fields},
    )
    assert data[mutation] == {"success": True}


async def create_peer(admin: Admin, asset_id: str, initial: int) -> str:
    data = await admin.data(
        "mutation($input: CreatePeerInput!) { createPeer(input: $input) { peer { id } } }",
        {
            "input": {
                "assetId": asset_id,
                "staticIlpAddress": "g.peer.alice",
                "http": {
                    "incoming": {"authTokens": ["incoming-alice"]},
                    "outgoing": {"authToken": "outgoing-alice", "endpoint": "https://a.example"},
                },
                "initialLiquidity": str(initial),
            }
        },
    )
    peer_id: str = data["createPeer"]["peer"]["id"]
    return peer_id


async def test_liquidity_and_holds_follow_the_admin_api(admin: Admin) -> None:
    usd = await admin.create_asset("USD", 2)
    eur = await admin.create_asset("EUR", 2)  # never used: deleted below
    big = await admin.create_asset("XBT", 0)
    await admin.deposit_asset(usd, 5000)
    await admin.deposit_asset(big, 2**53 - 1)
    peer = await create_peer(admin, usd, 1000)

    expected = {
        ("asset", usd, "USD"): 5000,
        ("asset", eur, "EUR"): 0,
        ("asset", big, "XBT"): 2**53 - 1,
        ("peer", peer, "USD"): 1000,
    }
    seen = await settled(admin, dict(expected))
    assert int(seen.liquidity["asset", big, "XBT"]) == 2**53 - 1  # exact up to 2^53

    # A deposit and a plain withdrawal: the next round shows both.
    await mutate(
        admin,
        "depositPeerLiquidity",
        "DepositPeerLiquidityInput",
        peerId=peer,
        amount="234",
        **_ids(),
    )
    await mutate(
        admin,
        "createAssetLiquidityWithdrawal",
        "CreateAssetLiquidityWithdrawalInput",
        assetId=usd,
        amount="1000",
        timeoutSeconds="0",
        **_ids(),
    )
    expected["peer", peer, "USD"] = 1234
    expected["asset", usd, "USD"] = 4000
    await settled(admin, dict(expected))

    # A two-phase withdrawal holds its amount: no longer available, one pending hold, not
    # past its timeout.
    held = _ids()
    await mutate(
        admin,
        "createPeerLiquidityWithdrawal",
        "CreatePeerLiquidityWithdrawalInput",
        peerId=peer,
        amount="200",
        timeoutSeconds="600",
        **held,
    )
    expected["peer", peer, "USD"] = 1034
    await settled(admin, dict(expected), holds=1)

    # Voided, the money is back and the hold gone.
    await mutate(
        admin,
        "voidLiquidityWithdrawal",
        "VoidLiquidityWithdrawalInput",
        withdrawalId=held["id"],
        idempotencyKey=str(uuid.uuid4()),
    )
    expected["peer", peer, "USD"] = 1234
    await settled(admin, dict(expected))

    # Deleted assets and peers lose their series.
    deleted = await admin.data(
        "mutation($input: DeleteAssetInput!) { deleteAsset(input: $input) { asset { id } } }",
        {"input": {"id": eur}},
    )
    assert deleted["deleteAsset"]["asset"]["id"] == eur
    del expected["asset", eur, "EUR"]
    await settled(admin, dict(expected))

    await mutate(
        admin,
        "createPeerLiquidityWithdrawal",
        "CreatePeerLiquidityWithdrawalInput",
        peerId=peer,
        amount="1234",
        timeoutSeconds="0",
        **_ids(),
    )
    data = await admin.data(
        "mutation($input: DeletePeerInput!) { deletePeer(input: $input) { success } }",
        {"input": {"id": peer}},
    )
    assert data["deletePeer"] == {"success": True}
    del expected["peer", peer, "USD"]
    seen = await settled(admin, dict(expected))
    assert not [key for key in seen.liquidity if key[0] == "peer"]


async def test_a_hold_past_its_timeout_shows_until_swept(admin: Admin) -> None:
    usd = await admin.create_asset("USD", 2)
    peer = await create_peer(admin, usd, 1000)
    await settled(admin, {("asset", usd, "USD"): 0, ("peer", peer, "USD"): 1000})

    # Two holds through the ledger (as the connector makes them for packets in flight); no
    # connector runs here, so nothing sweeps them once past their timeout.
    ledger = admin.backend.ledger
    account = account_id_for(AccountKind.PEER_LIQUIDITY, uuid.UUID(peer))
    short = await ledger.withdraw(uuid.uuid4(), account, 100, hold_for=timedelta(seconds=0.2))
    await ledger.withdraw(uuid.uuid4(), account, 50, hold_for=timedelta(minutes=10))
    assert short.expires_at is not None

    def overdue(g: Gauges) -> bool:
        return g.pending_holds == 2 and g.oldest_pending_hold_seconds > 0

    seen = await until(admin, overdue)
    # The liquidity gauge counts a hold until it is released, as the liquidity alerts do.
    assert seen.liquidity == {("asset", usd, "USD"): 0, ("peer", peer, "USD"): 850}
    age = (datetime.now(UTC) - short.expires_at).total_seconds()
    assert 0 < seen.oldest_pending_hold_seconds <= age + 0.5
    # It keeps growing while the hold stays.
    later = await until(
        admin, lambda g: g.oldest_pending_hold_seconds > seen.oldest_pending_hold_seconds
    )
    assert later.pending_holds == 2

    # The connector's sweep releases it: one hold left, not past its timeout.
    assert await ledger.expire_pending() == 1
    await settled(admin, {("asset", usd, "USD"): 0, ("peer", peer, "USD"): 950}, holds=1)


async def test_metrics_describe_the_gauges(admin: Admin) -> None:
    text = (await admin.client.get(f"{admin.url}/metrics")).text
    for name in ("kiungo_liquidity", "kiungo_pending_holds", "kiungo_oldest_pending_hold_seconds"):
        assert f"# TYPE {name} gauge" in text
    assert "exact up to 2^53" in text
    # Nothing pending in a new node.
    await until(admin, lambda g: g.liquidity == {} and g.pending_holds == 0)


def _backlog(text: str) -> tuple[float, float, dict[tuple[str, str], float]]:
    waiting = oldest = -1.0
    open_payments: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "kiungo_webhook_backlog":
                waiting = sample.value
            elif sample.name == "kiungo_oldest_undelivered_webhook_seconds":
                oldest = sample.value
            elif sample.name == "kiungo_open_payments":
                open_payments[sample.labels["type"], sample.labels["state"]] = sample.value
    return waiting, oldest, open_payments


async def test_webhook_backlog_and_open_payments(admin: Admin) -> None:
    # No WEBHOOK_URL here: every event waits, so the backlog is every event written.
    usd = await admin.create_asset("USD", 2)
    wallet = await create_wallet_address(admin, usd, "/gauges")
    created = await admin.data(
        "mutation($input: CreateIncomingPaymentInput!) {"
        " createIncomingPayment(input: $input) { payment { id } } }",
        {"input": {"walletAddressId": wallet, "idempotencyKey": str(uuid.uuid4())}},
    )
    payment = created["createIncomingPayment"]["payment"]["id"]
    events = await admin.pool.fetchval(
        "SELECT count(*) FROM webhook_events WHERE process_at IS NOT NULL"
    )
    assert events >= 1

    async def scraped() -> tuple[float, float, dict[tuple[str, str], float]]:
        return _backlog((await admin.client.get(f"{admin.url}/metrics")).text)

    deadline = time.monotonic() + 10
    while True:
        waiting, oldest, open_payments = await scraped()
        if waiting == events and open_payments.get(("incoming", "PENDING")) == 1:
            break
        assert time.monotonic() < deadline, (waiting, oldest, open_payments)
        await asyncio.sleep(0.02)
    assert oldest >= 0
    # Every open state has a series, at 0 when nothing is in it.
    assert open_payments == {
        ("incoming", "PENDING"): 1,
        ("incoming", "PROCESSING"): 0,
        ("outgoing", "FUNDING"): 0,
        ("outgoing", "SENDING"): 0,
    }
    # The oldest event ages while it waits.
    await asyncio.sleep(1.1)
    deadline = time.monotonic() + 10
    while (await scraped())[1] < 1.0:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)

    # Cancelled: no longer open. Delivered (or given up): no longer waiting.
    await admin.data(
        "mutation($input: CancelIncomingPaymentInput!) {"
        " cancelIncomingPayment(input: $input) { payment { id } } }",
        {"input": {"id": payment}},
    )
    await admin.pool.execute("UPDATE webhook_events SET process_at = NULL")
    deadline = time.monotonic() + 10
    while True:
        waiting, oldest, open_payments = await scraped()
        if waiting == 0 and open_payments[("incoming", "PENDING")] == 0:
            break
        assert time.monotonic() < deadline, (waiting, oldest, open_payments)
        await asyncio.sleep(0.02)
    assert oldest == 0
