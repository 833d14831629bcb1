"""The connector through HTTP: every reject code it originates, and money never overdrawn."""

from __future__ import annotations

import asyncio
import json
import math
import os
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from tests.connector.harness import (
    ADDRESS,
    PREIMAGE,
    Connector,
    fulfilling_hop,
    gather_replies,
    next_hop,
    prepare_to,
    running_connector,
)
from tests.loopback import serve

from kiungo.config import Settings
from kiungo.ilp.errors import decode_amount_too_large_data
from kiungo.ilp.ildcp import build_request, parse_response
from kiungo.ilp.packet import Fulfill, Prepare, Reject, decode_prepare, encode_packet
from kiungo.ledger import AccountKind
from kiungo.spsp import SpspResponse
from kiungo.store.channels import PEERS_CHANGED_CHANNEL
from kiungo.stream.crypto import StreamKeys, random_condition
from kiungo.stream.packet import StreamMoneyFrame, StreamPacket, encode_stream_packet


def assert_reject(reply: Fulfill | Reject, code: str) -> Reject:
    assert isinstance(reply, Reject), reply
    assert reply.code == code, reply
    assert reply.triggered_by == ADDRESS
    return reply


async def test_forwarded_packet_is_fulfilled_and_moves_money(
    connector_on_each_backend: Connector,
) -> None:
    connector = connector_on_each_backend
    reply = await connector.send(prepare_to("test.bob.x", 100))
    assert isinstance(reply, Fulfill)
    assert reply.data == b"ok"
    assert (
        await connector.balance(AccountKind.PEER_LIQUIDITY, connector.seeded.peers["alice"])
        == 9_900
    )
    assert await connector.balance(AccountKind.PEER_LIQUIDITY, connector.seeded.peers["bob"]) == 100
    assert await connector.pending() == 0


@pytest.mark.parametrize("backend", ["postgres", "tigerbeetle"])
async def test_a_cross_currency_forward_moves_both_legs_or_neither(
    backend: str,
    tmp_path: Path,
    database_url: str,
    redis_server_url: str,
    redis_prefix: str,
    redis: Redis,
) -> None:
    """USD from alice forwarded as EUR to erin: two legs (alice → the USD pool, the EUR pool →
    erin), posted together on a Fulfill and voided together on a downstream Reject."""
    downstream = Reject("F99", "test.erin", "no", b"")
    seen: list[Prepare] = []

    async def hop(request: Request) -> Response:
        prepare = decode_prepare(await request.body())
        seen.append(prepare)
        reply = downstream if prepare.destination.endswith(".refuse") else Fulfill(PREIMAGE, b"")
        return Response(encode_packet(reply), media_type="application/octet-stream")

    async def rates(request: Request) -> Response:
        return Response(json.dumps({"base": request.query_params["base"], "rates": {"EUR": "0.9"}}))

    async with (
        serve(Starlette(routes=[Route("/rates", rates)])) as rates_url,
        next_hop(hop) as hop_url,
        running_connector(
            database_url, redis_server_url, redis_prefix, hop_endpoint=hop_url,
            settings=replace(Settings(), exchange_rates_url=f"{rates_url}/rates"),
            tigerbeetle_dir=tmp_path if backend == "tigerbeetle" else None,
        ) as connector,
    ):  # fmt: skip
        seeded = connector.seeded

        async def balances() -> tuple[int, ...]:
            return (
                await connector.balance(AccountKind.PEER_LIQUIDITY, seeded.peers["alice"]),
                await connector.balance(AccountKind.ASSET_LIQUIDITY, seeded.usd),
                await connector.balance(AccountKind.ASSET_LIQUIDITY, seeded.eur),
                await connector.balance(AccountKind.PEER_LIQUIDITY, seeded.peers["erin"]),
            )

        assert isinstance(await connector.send(prepare_to("test.erin.x", 500)), Fulfill)
        assert seen[-1].amount == 450
        assert await balances() == (9_500, 500, 10**9 - 450, 450)
        assert await connector.send(prepare_to("test.erin.refuse", 300)) == downstream
        assert seen[-1].amount == 270
        assert await balances() == (9_500, 500, 10**9 - 450, 450)
        assert await connector.pending() == 0


async def test_routes_reach_a_peer_by_its_extra_prefixes(connector: Connector) -> None:
    assert isinstance(await connector.send(prepare_to("test.bobland.shop", 5)), Fulfill)


async def test_garbage_is_an_f01_reject(connector: Connector) -> None:
    assert_reject(await connector.send(b"\x0c\x05hello"), "F01")


async def test_no_route_is_f02_and_moves_nothing(connector: Connector) -> None:
    assert_reject(await connector.send(prepare_to("test.nowhere.x", 10)), "F02")
    assert_reject(await connector.send(prepare_to("test.alice.back", 10)), "F02")
    assert (
        await connector.balance(AccountKind.PEER_LIQUIDITY, connector.seeded.peers["alice"])
        == 10_000
    )


async def test_amount_above_the_peers_maximum_is_f08_with_data(connector: Connector) -> None:
    reject = assert_reject(await connector.send(prepare_to("test.bob.x", 1001)), "F08")
    assert decode_amount_too_large_data(reject.data) == (1001, 1000)


async def test_amount_above_what_the_next_peer_accepts_is_f08_and_moves_nothing(
    connector: Connector, redis: Redis, redis_prefix: str
) -> None:
    await connector.pool.execute(
        "UPDATE peers SET max_packet_amount = 40 WHERE id = $1", connector.seeded.peers["bob"]
    )
    await redis.publish(redis_prefix + PEERS_CHANGED_CHANNEL, "1")
    reply: Fulfill | Reject = await connector.send(prepare_to("test.bob.x", 41))
    for _ in range(100):
        if isinstance(reply, Reject):
            break
        await asyncio.sleep(0.05)
        reply = await connector.send(prepare_to("test.bob.x", 41))
    reject = assert_reject(reply, "F08")
    assert decode_amount_too_large_data(reject.data) == (41, 40)
    assert isinstance(await connector.send(prepare_to("test.bob.x", 40)), Fulfill)
    assert await connector.pending() == 0


async def test_expired_packet_is_r02(connector: Connector) -> None:
    assert_reject(await connector.send(prepare_to("test.bob.x", 10, expires_in=-1)), "R02")
    assert_reject(await connector.send(prepare_to("test.bob.x", 10, expires_in=1.5)), "R02")


async def test_insufficient_liquidity_is_t04_and_moves_nothing(
    database_url: str, redis_server_url: str, redis_prefix: str
) -> None:
    async with (
        next_hop(fulfilling_hop()) as hop,
        running_connector(
            database_url, redis_server_url, redis_prefix, hop_endpoint=hop, alice_liquidity=50
        ) as connector,
    ):
        assert_reject(await connector.send(prepare_to("test.bob.x", 51)), "T04")
        assert (
            await connector.balance(AccountKind.PEER_LIQUIDITY, connector.seeded.peers["alice"])
            == 50
        )


async def test_a_peer_with_100_sending_300_concurrent_packets_gets_exactly_100_through(
    database_url: str, redis_server_url: str, redis_prefix: str
) -> None:
    async with (
        next_hop(fulfilling_hop()) as hop,
        running_connector(
            database_url, redis_server_url, redis_prefix, hop_endpoint=hop, alice_liquidity=100
        ) as connector,
    ):
        replies = await gather_replies(connector, [prepare_to("test.bob.x", 1) for _ in range(300)])
        assert sum(isinstance(r, Fulfill) for r in replies) == 100
        assert {r.code for r in replies if isinstance(r, Reject)} == {"T04"}
        alice = connector.seeded.peers["alice"]
        assert await connector.balance(AccountKind.PEER_LIQUIDITY, alice) == 0
        assert await connector.pending() == 0


async def test_wrong_fulfillment_is_f05_and_the_hold_is_voided(
    database_url: str, redis_server_url: str, redis_prefix: str
) -> None:
    async with (
        next_hop(fulfilling_hop(preimage=os.urandom(32))) as hop,
        running_connector(
            database_url, redis_server_url, redis_prefix, hop_endpoint=hop
        ) as connector,
    ):
        assert_reject(await connector.send(prepare_to("test.bob.x", 10)), "F05")
        assert (
            await connector.balance(AccountKind.PEER_LIQUIDITY, connector.seeded.peers["alice"])
            == 10_000
        )
        assert await connector.pending() == 0


async def test_a_next_hop_that_never_answers_is_r00(
    database_url: str, redis_server_url: str, redis_prefix: str
) -> None:
    async def silent(request: Request) -> Response:
        await asyncio.sleep(3)  # past the forwarded packet's expiry (2 s)
        return Response(b"")

    async with (
        next_hop(silent) as hop,
        running_connector(
            database_url, redis_server_url, redis_prefix, hop_endpoint=hop
        ) as connector,
    ):
        assert_reject(await connector.send(prepare_to("test.bob.x", 10, expires_in=3)), "R00")
        assert (
            await connector.balance(AccountKind.PEER_LIQUIDITY, connector.seeded.peers["alice"])
            == 10_000
        )
        assert await connector.pending() == 0


@pytest.mark.parametrize(("status", "code"), [(500, "T01"), (404, "F02"), (200, "T01")])
async def test_next_hop_http_failures_map_to_ilp_codes(
    database_url: str, redis_server_url: str, redis_prefix: str, status: int, code: str
) -> None:
    async def broken(request: Request) -> Response:
        return Response(b"not a packet", status_code=status)

    async with (
        next_hop(broken) as hop,
        running_connector(
            database_url, redis_server_url, redis_prefix, hop_endpoint=hop
        ) as connector,
    ):
        assert_reject(await connector.send(prepare_to("test.bob.x", 10)), code)
        assert await connector.pending() == 0


async def test_downstream_rejects_are_relayed_byte_for_byte(
    database_url: str, redis_server_url: str, redis_prefix: str
) -> None:
    downstream = Reject("F99", "test.bob.receiver", "no thanks", b"\x01\x02")

    async def rejecting(request: Request) -> Response:
        return Response(encode_packet(downstream), media_type="application/octet-stream")

    async with (
        next_hop(rejecting) as hop,
        running_connector(
            database_url, redis_server_url, redis_prefix, hop_endpoint=hop
        ) as connector,
    ):
        assert await connector.send(prepare_to("test.bob.x", 10)) == downstream
        assert await connector.pending() == 0


async def test_missing_rates_are_f07(connector: Connector) -> None:
    assert_reject(await connector.send(prepare_to("test.erin.x", 10)), "F07")


async def test_an_unexpected_failure_is_t00(connector: Connector) -> None:
    # The peer has no liquidity account: a configuration error surfacing in the ledger.
    assert_reject(await connector.send(prepare_to("test.bob.x", 10), token="nobody-token"), "T00")


async def test_rate_limit_is_t05(
    database_url: str, redis_server_url: str, redis_prefix: str
) -> None:
    settings = replace(Settings(), peer_rate_limit=3)
    async with (
        next_hop(fulfilling_hop()) as hop,
        running_connector(
            database_url, redis_server_url, redis_prefix, hop_endpoint=hop, settings=settings
        ) as connector,
    ):
        started = time.monotonic()
        replies = await gather_replies(connector, [prepare_to("test.bob.x", 1) for _ in range(8)])
        refilled = math.ceil((time.monotonic() - started) * 3)  # the bucket refills 3 per second
        fulfilled = sum(isinstance(r, Fulfill) for r in replies)
        assert 3 <= fulfilled <= 3 + refilled
        rejected = [r for r in replies if not isinstance(r, Fulfill)]
        assert rejected
        for reply in rejected:
            assert_reject(reply, "T05")


async def test_ildcp_answers_the_peers_address_and_asset(connector: Connector) -> None:
    reply = await connector.send(build_request(datetime.now(UTC)))
    assert isinstance(reply, Fulfill)
    response = parse_response(reply)
    assert (response.client_address, response.asset_code, response.asset_scale) == (
        "test.alice", "USD", 2,
    )  # fmt: skip


async def test_http_errors(connector: Connector) -> None:
    client = connector.client
    body = encode_packet(prepare_to("test.bob.x", 1))
    octets = {"Content-Type": "application/octet-stream"}
    no_token = await client.post(f"{connector.url}/ilp", content=body, headers=octets)
    assert no_token.status_code == 401
    wrong = await client.post(
        f"{connector.url}/ilp", content=body, headers={**octets, "Authorization": "Bearer nope"}
    )
    assert wrong.status_code == 401
    json_type = await client.post(
        f"{connector.url}/ilp",
        content=body,
        headers={"Authorization": "Bearer alice-token", "Content-Type": "application/json"},
    )
    assert json_type.status_code == 400
    huge = await client.post(
        f"{connector.url}/ilp",
        content=b"\x00" * 40_001,
        headers={**octets, "Authorization": "Bearer alice-token"},
    )
    assert huge.status_code == 413


async def spsp(connector: Connector, path: str, **headers: str) -> SpspResponse:
    response = await connector.client.get(
        f"{connector.url}{path}", headers={"Accept": "application/spsp4+json", **headers}
    )
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == "*"
    return SpspResponse.from_json(response.json())


async def test_stream_packets_to_a_wallet_address_credit_it(
    connector_on_each_backend: Connector,
) -> None:
    connector = connector_on_each_backend
    credentials = await spsp(connector, "/carol")
    keys = StreamKeys(credentials.shared_secret)
    data = keys.encrypt(encode_stream_packet(StreamPacket(1, 12, 0, [StreamMoneyFrame(1, 1)])))
    expires = datetime.now(UTC) + timedelta(seconds=10)
    destination = credentials.destination_account
    reply = await connector.send(Prepare(250, expires, keys.condition(data), destination, data))
    assert isinstance(reply, Fulfill)
    await connector.settled()
    carol = connector.seeded.wallets["carol"]
    assert await connector.balance(AccountKind.WALLET_ADDRESS, carol) == 250
    probe = prepare_to(credentials.destination_account, 7, data=data)
    probe.execution_condition = random_condition()
    assert_reject(await connector.send(probe), "F99")
    bad_token = prepare_to(f"{ADDRESS}.AAAA", 7, data=data)
    assert_reject(await connector.send(bad_token), "F06")


async def test_spsp_refuses_unknown_receivers_and_wrong_accept(connector: Connector) -> None:
    missing = await connector.client.get(
        f"{connector.url}/nobody", headers={"Accept": "application/spsp4+json"}
    )
    assert missing.status_code == 404
    wrong = await connector.client.get(f"{connector.url}/carol", headers={"Accept": "text/html"})
    assert wrong.status_code == 406
    one_header = await connector.client.get(
        f"{connector.url}/carol",
        headers={"Accept": "application/spsp4+json", "Receipt-Nonce": "AAAAAAAAAAAAAAAAAAAAAA=="},
    )
    assert one_header.status_code == 400


async def test_healthz_and_metrics(connector: Connector) -> None:
    assert (await connector.client.get(f"{connector.url}/healthz")).json() == {"status": "ok"}
    await connector.send(prepare_to("test.nowhere", 1))
    assert isinstance(await connector.send(prepare_to("test.bob.x", 100)), Fulfill)
    await connector.settled()
    metrics = (await connector.client.get(f"{connector.url}/metrics")).text
    alice = connector.seeded.peers["alice"]
    # Packets by the peer they came from; amounts by their asset, never summed across assets.
    assert f'kiungo_ilp_packets_total{{outcome="F02",peer="{alice}"}} 1.0' in metrics
    assert f'kiungo_ilp_packets_total{{outcome="fulfilled",peer="{alice}"}} 1.0' in metrics
    assert 'kiungo_ilp_amount_total{asset="USD",asset_scale="2",kind="forwarded"} 100.0' in metrics
    # The standard process collectors.
    assert "process_cpu_seconds_total" in metrics and "process_resident_memory_bytes" in metrics


async def test_a_burst_of_stream_packets_beyond_the_redis_pool_is_all_fulfilled(
    connector: Connector,
) -> None:
    credentials = await spsp(connector, "/carol")
    keys = StreamKeys(credentials.shared_secret)
    expires = datetime.now(UTC) + timedelta(seconds=30)
    prepares = []
    for sequence in range(250):  # more at once than the 200 Redis connections of the node
        data = keys.encrypt(
            encode_stream_packet(StreamPacket(sequence, 12, 0, [StreamMoneyFrame(1, 1)]))
        )
        prepares.append(
            Prepare(2, expires, keys.condition(data), credentials.destination_account, data)
        )
    replies = await gather_replies(connector, prepares)
    assert all(isinstance(r, Fulfill) for r in replies), {
        r.code for r in replies if isinstance(r, Reject)
    }
    await connector.settled()
    carol = connector.seeded.wallets["carol"]
    assert await connector.balance(AccountKind.WALLET_ADDRESS, carol) == 500
