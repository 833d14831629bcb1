"""Webhook events: delivery (signed, retried with backoff, in order per resource, given up after
WEBHOOK_MAX_RETRY, at least once across replicas), the ``webhookEvents`` query, and the
liquidity alerts the workers raise."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from tests.backend.harness import Admin, backend_settings, running_backend
from tests.loopback import serve

from kiungo.events import EventType, insert_event
from kiungo.signatures import verify

SECRET = "whsec"
INTERVAL = 0.05  # the harness's worker_interval_ms

# Decides the status of one delivery from its body and its attempt number (1 for the first);
# it may wait (a receiver that does not answer in time).
Respond = Callable[[dict[str, Any], int], Awaitable[int]]


async def _ok(_body: dict[str, Any], _attempt: int) -> int:
    return 200


@dataclass
class Delivery:
    body: dict[str, Any]
    signature: str | None
    attempt: int
    status: int


@dataclass
class Receiver:
    """A webhook receiver recording every request, in the order they arrived."""

    respond: Respond = _ok
    url: str = ""
    deliveries: list[Delivery] = field(default_factory=list)
    attempts: Counter[str] = field(default_factory=Counter)

    async def handle(self, request: Request) -> Response:
        body = await request.json()
        self.attempts[body["id"]] += 1
        attempt = self.attempts[body["id"]]
        status = await self.respond(body, attempt)
        self.deliveries.append(
            Delivery(body, request.headers.get("Rafiki-Signature"), attempt, status)
        )
        return Response(status_code=status)

    def of(self, event_id: uuid.UUID) -> list[Delivery]:
        return [d for d in self.deliveries if d.body["id"] == str(event_id)]

    def index(self, event_id: uuid.UUID, status: int | None = None, attempt: int = 1) -> int:
        """Where the delivery of ``event_id`` (its ``attempt``-th, or the one answered
        ``status``) is in the arrival order."""
        for i, d in enumerate(self.deliveries):
            if d.body["id"] != str(event_id):
                continue
            if (status is None and d.attempt == attempt) or d.status == status:
                return i
        raise AssertionError(f"no such delivery of {event_id}")


@contextlib.asynccontextmanager
async def receiving(respond: Respond = _ok) -> AsyncIterator[Receiver]:
    receiver = Receiver(respond)
    app = Starlette(routes=[Route("/hook", receiver.handle, methods=["POST"])])
    async with serve(app) as url:
        receiver.url = f"{url}/hook"
        yield receiver


@contextlib.asynccontextmanager
async def backend(
    database: str, redis_url: str, prefix: str, **overrides: Any
) -> AsyncIterator[Admin]:
    settings = backend_settings(prefix, signature_secret=SECRET, **overrides)
    async with running_backend(database, redis_url, settings) as admin:
        yield admin


async def eventually(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool], within: float = 10.0
) -> None:
    """Wait until ``check`` holds, polling; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"still not so after {within} s")
        await asyncio.sleep(0.02)


async def event(
    admin: Admin,
    resource: uuid.UUID | None = None,
    event_type: EventType = EventType.ASSET_LIQUIDITY_LOW,
    data: dict[str, Any] | None = None,
) -> uuid.UUID:
    async with admin.pool.acquire() as conn:
        return await insert_event(
            conn, event_type, resource or uuid.uuid4(), data or {"n": 1, "note": "ünïcode"}
        )


async def row(admin: Admin, event_id: uuid.UUID) -> asyncpg.Record:
    found = await admin.pool.fetchrow("SELECT * FROM webhook_events WHERE id = $1", event_id)
    assert found is not None
    return found


async def delivered(admin: Admin, *event_ids: uuid.UUID) -> bool:
    count = await admin.pool.fetchval(
        "SELECT count(*) FROM webhook_events WHERE id = ANY($1::uuid[]) "
        "AND delivered_at IS NOT NULL",
        list(event_ids),
    )
    return bool(count == len(event_ids))


def failing(times: int, *event_ids: uuid.UUID, status: int = 500) -> Respond:
    """500 to the first ``times`` deliveries of each of ``event_ids``; 200 to the rest."""
    failed = {str(i) for i in event_ids}

    async def respond(body: dict[str, Any], attempt: int) -> int:
        return status if body["id"] in failed and attempt <= times else 200

    return respond


# -- delivery -------------------------------------------------------------------------------------


async def test_an_event_is_retried_until_delivered_signed_and_then_left_alone(
    migrated_database: str, redis_server_url: str, redis_prefix: str, redis: object
) -> None:
    async def respond(_body: dict[str, Any], attempt: int) -> int:
        return 500 if attempt <= 2 else 200

    async with (
        receiving(respond) as receiver,
        backend(
            migrated_database, redis_server_url, redis_prefix, webhook_url=receiver.url
        ) as admin,
    ):
        data = {"id": "x", "amount": {"value": "10", "assetScale": 2}, "fraction": 0.5}
        event_id = await event(admin, uuid.uuid4(), EventType.INCOMING_PAYMENT_COMPLETED, data)
        await eventually(lambda: delivered(admin, event_id))
        await asyncio.sleep(8 * INTERVAL)  # a few more worker rounds: nothing more arrives

        deliveries = receiver.of(event_id)
        assert [(d.attempt, d.status) for d in deliveries] == [(1, 500), (2, 500), (3, 200)]
        for d in deliveries:
            assert d.body == {
                "id": str(event_id),
                "type": "incoming_payment.completed",
                "data": data,
            }
            verify(SECRET, d.signature, d.body, ttl_seconds=60)
        stored = await row(admin, event_id)
        assert stored["attempts"] == 3
        assert stored["status_code"] == 200
        assert stored["process_at"] is None
        assert stored["delivered_at"] is not None


async def test_an_outgoing_payments_receiver_is_delivered_by_its_open_payments_url(
    migrated_database: str, redis_server_url: str, redis_prefix: str, redis: object
) -> None:
    """Outgoing payments store this node's incoming payments in the wallet-address form; their
    events carry them as their quotes show them (Rafiki's: the incoming payment URL), in the
    webhook and in ``webhookEvents``. Another node's receiver, and other events, are as stored."""
    payment_id = uuid.uuid4()
    stored = f"https://wallet.example/alice/incoming-payments/{payment_id}"
    shown = f"https://wallet.example/incoming-payments/{payment_id}"
    remote = f"https://other.example/bob/incoming-payments/{payment_id}"
    async with (
        receiving() as receiver,
        backend(
            migrated_database, redis_server_url, redis_prefix, webhook_url=receiver.url
        ) as admin,
    ):
        local_event = await event(
            admin, uuid.uuid4(), EventType.OUTGOING_PAYMENT_CREATED, {"receiver": stored}
        )
        remote_event = await event(
            admin, uuid.uuid4(), EventType.OUTGOING_PAYMENT_COMPLETED, {"receiver": remote}
        )
        other_event = await event(
            admin, uuid.uuid4(), EventType.INCOMING_PAYMENT_COMPLETED, {"receiver": stored}
        )
        await eventually(lambda: delivered(admin, local_event, remote_event, other_event))
        expected = {local_event: shown, remote_event: remote, other_event: stored}
        for event_id, receiver_shown in expected.items():
            assert receiver.of(event_id)[0].body["data"] == {"receiver": receiver_shown}
        listed = await admin.data("{ webhookEvents(first: 10) { edges { node { id data } } } }")
        assert {
            e["node"]["id"]: e["node"]["data"]["receiver"] for e in listed["webhookEvents"]["edges"]
        } == {str(event_id): receiver_shown for event_id, receiver_shown in expected.items()}


async def test_events_of_one_resource_are_delivered_in_order(
    migrated_database: str, redis_server_url: str, redis_prefix: str, redis: object
) -> None:
    first_ids: list[uuid.UUID] = []

    async def respond(body: dict[str, Any], attempt: int) -> int:
        return await failing(3, *first_ids)(body, attempt)

    async with (
        receiving(respond) as receiver,
        backend(
            migrated_database, redis_server_url, redis_prefix, webhook_url=receiver.url
        ) as admin,
    ):
        resource, other = uuid.uuid4(), uuid.uuid4()
        async with admin.pool.acquire() as conn, conn.transaction():
            first = await insert_event(conn, EventType.ASSET_LIQUIDITY_LOW, resource, {"n": 1})
            first_ids.append(first)
            second = await insert_event(conn, EventType.ASSET_LIQUIDITY_HIGH, resource, {"n": 2})
            unrelated = await insert_event(conn, EventType.ASSET_LIQUIDITY_LOW, other, {"n": 3})
        await eventually(lambda: delivered(admin, first, second, unrelated))

        assert [d.status for d in receiver.of(first)] == [500, 500, 500, 200]
        assert [d.status for d in receiver.of(second)] == [200]
        assert [d.status for d in receiver.of(unrelated)] == [200]
        # The second waited for the first; the other resource's event did not.
        assert receiver.index(second) > receiver.index(first, status=200)
        assert receiver.index(unrelated, status=200) < receiver.index(first, status=200)


async def test_an_event_given_up_stops_and_unblocks_its_resource(
    migrated_database: str, redis_server_url: str, redis_prefix: str, redis: object
) -> None:
    doomed: list[uuid.UUID] = []

    async def respond(body: dict[str, Any], attempt: int) -> int:
        return await failing(1_000, *doomed, status=503)(body, attempt)

    async with (
        receiving(respond) as receiver,
        backend(
            migrated_database,
            redis_server_url,
            redis_prefix,
            webhook_url=receiver.url,
            webhook_max_retry=3,
        ) as admin,
    ):
        resource = uuid.uuid4()
        async with admin.pool.acquire() as conn, conn.transaction():
            lost = await insert_event(conn, EventType.PEER_LIQUIDITY_LOW, resource, {"n": 1})
            doomed.append(lost)
            after = await insert_event(conn, EventType.PEER_LIQUIDITY_HIGH, resource, {"n": 2})
        await eventually(lambda: delivered(admin, after))
        await asyncio.sleep(8 * INTERVAL)

        assert [d.status for d in receiver.of(lost)] == [503, 503, 503]
        assert [d.status for d in receiver.of(after)] == [200]
        assert receiver.index(after) > receiver.index(lost, attempt=3)
        stored = await row(admin, lost)
        assert stored["attempts"] == 3
        assert stored["status_code"] == 503
        assert stored["process_at"] is None
        assert stored["delivered_at"] is None


async def test_a_receiver_that_does_not_answer_in_time_is_retried(
    migrated_database: str, redis_server_url: str, redis_prefix: str, redis: object
) -> None:
    # The retry must answer within the same timeout: 1 s leaves it ample room on a loaded
    # machine (0.3 s once timed out an honest retry too, making a third attempt).
    timeout_ms = 1_000
    release = asyncio.Event()

    async def respond(_body: dict[str, Any], attempt: int) -> int:
        if attempt == 1:
            await release.wait()  # far past WEBHOOK_TIMEOUT
        return 200

    try:
        async with (
            receiving(respond) as receiver,
            backend(
                migrated_database,
                redis_server_url,
                redis_prefix,
                webhook_url=receiver.url,
                webhook_timeout_ms=timeout_ms,
            ) as admin,
        ):
            started = time.monotonic()
            event_id = await event(admin)
            await eventually(lambda: receiver.attempts[str(event_id)] >= 1)
            await eventually(lambda: delivered(admin, event_id))
            assert time.monotonic() - started >= timeout_ms / 1000
            release.set()
            assert receiver.attempts[str(event_id)] == 2
            stored = await row(admin, event_id)
            assert stored["attempts"] == 2
            assert stored["status_code"] == 200
            assert stored["process_at"] is None
    finally:
        release.set()


async def test_a_receiver_answering_204_without_a_length_gets_its_events(
    migrated_database: str, redis_server_url: str, redis_prefix: str, redis: object
) -> None:
    """Starlette (hence FastAPI) on uvicorn answers 204 with no Content-Length, as Express
    does: the reply ends at its headers. It was read as a body until the timeout, so every
    event to such a receiver failed and was given up after its retries."""

    async def respond(_body: dict[str, Any], _attempt: int) -> int:
        return 204

    async with (
        receiving(respond) as receiver,
        backend(
            migrated_database,
            redis_server_url,
            redis_prefix,
            webhook_url=receiver.url,
            # Longer than five deliveries take on a loaded machine: one delivery that waited
            # for a body would time out (and be retried) instead.
            webhook_timeout_ms=10_000,
        ) as admin,
    ):
        head = await _raw_reply_head(receiver.url, b'{"id": "probe"}')
        assert head.startswith(b"HTTP/1.1 204 "), head
        assert b"content-length" not in head.lower(), head
        receiver.deliveries.clear()
        receiver.attempts.clear()

        started = time.monotonic()
        ids = [await event(admin) for _ in range(5)]
        await eventually(lambda: delivered(admin, *ids))
        # Inside one WEBHOOK_TIMEOUT: no delivery waited for a body.
        assert time.monotonic() - started < admin.backend.settings.webhook_timeout_ms / 1000
        for event_id in ids:
            assert [d.status for d in receiver.of(event_id)] == [204]
            stored = await row(admin, event_id)
            assert (stored["attempts"], stored["status_code"]) == (1, 204)


async def _raw_reply_head(url: str, body: bytes) -> bytes:
    """The status line and headers a server at ``url`` answers a POST of ``body`` with."""
    host, port = url.split("/")[2].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(
            b"POST /%s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n%s"
            % (url.split("/", 3)[3].encode(), host.encode(), len(body), body)
        )
        async with asyncio.timeout(5):
            return await reader.readuntil(b"\r\n\r\n")
    finally:
        writer.close()


async def test_two_replicas_deliver_every_event_once(
    migrated_database: str, redis_server_url: str, redis_prefix: str, redis: object
) -> None:
    async def respond(_body: dict[str, Any], _attempt: int) -> int:
        # Slow enough that one replica's batch is still in flight when the other looks for work.
        await asyncio.sleep(0.05)
        return 200

    async with (
        receiving(respond) as receiver,
        backend(migrated_database, redis_server_url, redis_prefix, webhook_url=receiver.url) as one,
        backend(migrated_database, redis_server_url, redis_prefix, webhook_url=receiver.url) as two,
    ):
        # 150 resources, the first 50 with a second event: more due at once than one replica
        # claims in a round (100), and some that must wait for the one before them.
        resources = [uuid.uuid4() for _ in range(150)]
        order: dict[str, list[str]] = {str(r): [] for r in resources}
        ids: list[uuid.UUID] = []
        for round_, some in enumerate((resources, resources[:50])):
            async with one.pool.acquire() as conn, conn.transaction():
                for resource in some:
                    event_id = await insert_event(
                        conn, EventType.ASSET_LIQUIDITY_LOW, resource, {"round": round_}
                    )
                    ids.append(event_id)
                    order[str(resource)].append(str(event_id))
            await asyncio.sleep(0.01)
        assert len(ids) == 200
        await eventually(lambda: delivered(one, *ids), within=30)
        await asyncio.sleep(8 * INTERVAL)

        counts = Counter(d.body["id"] for d in receiver.deliveries)
        assert set(counts) == {str(i) for i in ids}
        assert set(counts.values()) == {1}, "an event was delivered twice"
        assert all(d.status == 200 for d in receiver.deliveries)
        attempts = await one.pool.fetch("SELECT DISTINCT attempts FROM webhook_events")
        assert [r["attempts"] for r in attempts] == [1]
        # And in order per resource, whichever replica sent each.
        by_resource: dict[str, list[str]] = {str(r): [] for r in resources}
        position = {event_id: r for r, events in order.items() for event_id in events}
        for d in receiver.deliveries:
            by_resource[position[d.body["id"]]].append(d.body["id"])
        assert by_resource == order
        # Each replica counted what it sent; together, every event once.
        sent = [await _delivered_metric(replica) for replica in (one, two)]
        assert sum(sent) == 200, sent
        assert min(sent) > 0, f"one replica did all the work: {sent}"


async def _delivered_metric(admin: Admin) -> int:
    """The replica's ``kiungo_webhook_deliveries_total{outcome="delivered"}``."""
    text = (await admin.client.get(f"{admin.url}/metrics")).text
    found = re.search(r'^kiungo_webhook_deliveries_total\{outcome="delivered"\} (\S+)$', text, re.M)
    return 0 if found is None else int(float(found.group(1)))


async def test_without_a_webhook_url_events_stay_in_the_outbox(
    migrated_database: str, redis_server_url: str, redis_prefix: str, redis: object
) -> None:
    async with (
        receiving() as receiver,
        backend(migrated_database, redis_server_url, redis_prefix) as admin,
    ):
        assert admin.backend.settings.webhook_url is None
        event_id = await event(admin)
        asset_id = await admin.create_asset(
            "USD", 2, liquidityThreshold="100", liquidityThresholdHigh="1000"
        )
        await admin.deposit_asset(asset_id, 50)
        await eventually(lambda: _events_of(admin, EventType.ASSET_LIQUIDITY_LOW, asset_id, 1))
        await asyncio.sleep(8 * INTERVAL)

        assert receiver.deliveries == []
        pending = await admin.pool.fetch("SELECT * FROM webhook_events")
        assert {r["id"] for r in pending} >= {event_id}
        assert len(pending) == 2
        for stored in pending:
            assert stored["process_at"] is not None
            assert stored["attempts"] == 0
            assert stored["delivered_at"] is None


# -- the webhookEvents query ----------------------------------------------------------------------

EVENTS = """
query Events($after: String, $before: String, $first: Int, $last: Int, $sortOrder: SortOrder,
             $filter: WebhookEventFilter) {
  webhookEvents(after: $after, before: $before, first: $first, last: $last,
                sortOrder: $sortOrder, filter: $filter) {
    pageInfo { startCursor endCursor hasNextPage hasPreviousPage }
    edges { cursor node { id type data createdAt } }
  }
}
"""


def _ids(page: dict[str, Any]) -> list[str]:
    return [e["node"]["id"] for e in page["edges"]]


async def test_webhook_events_are_paged_filtered_and_checked(admin: Admin) -> None:
    low: list[str] = []
    high: list[str] = []
    for n in range(7):
        kind = EventType.ASSET_LIQUIDITY_HIGH if n % 3 == 2 else EventType.ASSET_LIQUIDITY_LOW
        event_id = await event(admin, event_type=kind, data={"n": n, "nested": {"ok": True}})
        (high if kind is EventType.ASSET_LIQUIDITY_HIGH else low).append(str(event_id))
    every = await admin.data(EVENTS, {"sortOrder": "ASC"})
    page = every["webhookEvents"]
    assert len(page["edges"]) == 7
    nodes = [e["node"] for e in page["edges"]]
    assert [n["data"]["n"] for n in nodes] == list(range(7))
    assert nodes[0]["data"] == {"n": 0, "nested": {"ok": True}}
    assert nodes[2]["type"] == "asset.liquidity_high"
    assert nodes[0]["createdAt"].endswith("Z")
    in_order = _ids(page)

    # Newest first by default.
    newest = await admin.data(EVENTS, {"first": 3})
    assert _ids(newest["webhookEvents"]) == in_order[::-1][:3]

    # Forward in pages of three.
    seen: list[str] = []
    after: str | None = None
    while True:
        data = await admin.data(EVENTS, {"first": 3, "after": after, "sortOrder": "ASC"})
        connection = data["webhookEvents"]
        seen += _ids(connection)
        info = connection["pageInfo"]
        assert info["hasPreviousPage"] is (after is not None)
        assert info["endCursor"] == connection["edges"][-1]["cursor"]
        if not info["hasNextPage"]:
            break
        after = info["endCursor"]
    assert seen == in_order

    # Backward from the end.
    before_last = await admin.data(
        EVENTS, {"last": 2, "before": page["edges"][-1]["cursor"], "sortOrder": "ASC"}
    )
    assert _ids(before_last["webhookEvents"]) == in_order[4:6]
    assert before_last["webhookEvents"]["pageInfo"]["hasNextPage"] is True
    assert before_last["webhookEvents"]["pageInfo"]["hasPreviousPage"] is True

    # Filtered by type.
    only_high = await admin.data(
        EVENTS, {"filter": {"type": {"in": ["asset.liquidity_high"]}}, "sortOrder": "ASC"}
    )
    assert _ids(only_high["webhookEvents"]) == high
    both = await admin.data(
        EVENTS,
        {"filter": {"type": {"in": ["asset.liquidity_high", "asset.liquidity_low"]}}},
    )
    assert sorted(_ids(both["webhookEvents"])) == sorted(low + high)
    none = await admin.data(EVENTS, {"filter": {"type": {"in": ["peer.liquidity_low"]}}})
    assert none["webhookEvents"]["edges"] == []
    filtered_page = await admin.data(
        EVENTS,
        {"filter": {"type": {"in": ["asset.liquidity_low"]}}, "first": 2, "sortOrder": "ASC"},
    )
    next_page = await admin.data(
        EVENTS,
        {
            "filter": {"type": {"in": ["asset.liquidity_low"]}},
            "first": 2,
            "after": filtered_page["webhookEvents"]["pageInfo"]["endCursor"],
            "sortOrder": "ASC",
        },
    )
    assert _ids(filtered_page["webhookEvents"]) + _ids(next_page["webhookEvents"]) == low[:4]

    # Refusals.
    for variables in (
        {"after": "not-a-cursor"},
        {"before": "bm9wZQ"},
        {"first": 101},
        {"last": 101},
        {"first": -1},
        {"first": 2, "last": 2},
    ):
        failure = await admin.error(EVENTS, variables)
        assert failure.code == "BAD_USER_INPUT", variables


# -- liquidity alerts -----------------------------------------------------------------------------


async def _events_of(admin: Admin, kind: EventType, resource: str, count: int) -> bool:
    found = await admin.pool.fetchval(
        "SELECT count(*) FROM webhook_events WHERE type = $1 AND resource_id = $2",
        kind.value,
        uuid.UUID(resource),
    )
    return bool(found == count)


async def test_asset_liquidity_alerts_once_per_crossing(admin: Admin) -> None:
    asset_id = await admin.create_asset(
        "USD", 2, liquidityThreshold="100", liquidityThresholdHigh="1000"
    )
    alert_sql = "SELECT liquidity_alert FROM assets WHERE id = $1"
    asset = uuid.UUID(asset_id)

    async def alert() -> str | None:
        value: str | None = await admin.pool.fetchval(alert_sql, asset)
        return value

    await admin.deposit_asset(asset_id, 50)
    await eventually(lambda: _events_of(admin, EventType.ASSET_LIQUIDITY_LOW, asset_id, 1))
    assert await alert() == "LOW"

    await admin.deposit_asset(asset_id, 450)  # 500: between the thresholds
    await eventually(lambda: _alert_is(alert, None))
    await admin.deposit_asset(asset_id, 1000)  # 1500: above the high threshold
    await eventually(lambda: _events_of(admin, EventType.ASSET_LIQUIDITY_HIGH, asset_id, 1))
    await admin.deposit_asset(asset_id, 10)  # still above: no repeat
    await asyncio.sleep(8 * INTERVAL)

    data = await admin.data(EVENTS, {"sortOrder": "ASC"})
    events = [e["node"] for e in data["webhookEvents"]["edges"]]
    assert [e["type"] for e in events] == ["asset.liquidity_low", "asset.liquidity_high"]
    low, high = (e["data"] for e in events)
    assert low == {
        "id": asset_id,
        "asset": {"id": asset_id, "code": "USD", "scale": 2},
        "liquidityThreshold": "100",
        "balance": "50",
    }
    assert high["liquidityThreshold"] == "1000"
    assert high["balance"] == "1500"


async def _alert_is(alert: Callable[[], Awaitable[str | None]], expected: str | None) -> bool:
    return await alert() == expected
