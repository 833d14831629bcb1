"""Replicas: routing changes reach every replica at runtime; two replicas act as one."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import uuid
from dataclasses import replace
from pathlib import Path

import httpx
from redis.asyncio import Redis
from tests.connector.harness import (
    Connector,
    connector_process,
    create_peer,
    free_port,
    fulfilling_hop,
    next_hop,
    node_settings,
    post_prepare,
    prepare_to,
    process_env,
    running_connector,
)
from tests.stores import DatabaseFactory

from kiungo.config import Settings
from kiungo.ilp.packet import Fulfill, Prepare, Reject
from kiungo.ledger import AccountKind, Ledger
from kiungo.spsp import SpspResponse
from kiungo.store.channels import PEERS_CHANGED_CHANNEL
from kiungo.stream.crypto import StreamKeys
from kiungo.stream.packet import (
    StreamMoneyFrame,
    StreamPacket,
    StreamReceiptFrame,
    decode_stream_packet,
    encode_stream_packet,
)
from kiungo.stream.receipt import verify_receipt


async def test_a_new_peer_is_routed_on_a_running_connector_after_a_change_message(
    database_url: str, redis_server_url: str, redis_prefix: str, redis: Redis
) -> None:
    async with (
        next_hop(fulfilling_hop()) as hop,
        running_connector(
            database_url, redis_server_url, redis_prefix, hop_endpoint=hop
        ) as connector,
    ):
        reply = await connector.send(prepare_to("test.zed.x", 1))
        assert isinstance(reply, Reject) and reply.code == "F02"
        async with connector.pool.acquire() as conn, Ledger(connector.pool) as ledger:
            await create_peer(
                conn, ledger, asset=connector.seeded.usd, address="test.zed", endpoint=hop
            )
        await redis.publish(redis_prefix + PEERS_CHANGED_CHANNEL, "changed")
        for _ in range(100):
            reply = await connector.send(prepare_to("test.zed.x", 1))
            if isinstance(reply, Fulfill):
                break
            await asyncio.sleep(0.05)
        assert isinstance(reply, Fulfill)


async def test_two_connector_processes_on_one_database_and_redis_act_as_one(
    database_url: str, redis_server_url: str, redis_prefix: str
) -> None:
    """Two `kiungo connector` processes on their own ports, packets alternating between them:
    liquidity, totals and receipts come out as one replica's would."""
    settings = node_settings(replace(Settings(), stream_secret=os.urandom(32)), redis_prefix)
    async with next_hop(fulfilling_hop()) as hop, running_connector(
        database_url, redis_server_url, redis_prefix, hop_endpoint=hop, settings=settings,
        alice_liquidity=200, as_process=True,
    ) as first:  # fmt: skip
        port = free_port()
        second_url = f"http://127.0.0.1:{port}"
        env = process_env(settings, database_url, redis_server_url, port)
        async with (
            connector_process(env, second_url),
            httpx.AsyncClient(timeout=60) as client,
        ):
            outcome = await _load(first, client, [first.url, second_url])
    assert outcome == {
        "forwarded": 200,  # of 300 one-unit packets on 200 of liquidity, across both
        "codes": ["T04"],
        "alice": 1000 - 400,
        "bob": outcome["bob"],
        # One STREAM connection paid through both replicas: one total, one receipt chain.
        "receipt_totals": [10 * (i + 1) for i in range(40)],
        "carol": 400,
    }


def ledger_account(connector: object) -> uuid.UUID:
    from kiungo.ledger import account_id_for

    seeded = connector.seeded  # type: ignore[attr-defined]
    return account_id_for(AccountKind.PEER_LIQUIDITY, seeded.peers["alice"])


async def _load(
    connector: Connector, client: httpx.AsyncClient, urls: list[str] | None = None
) -> dict[str, object]:
    """The same packets for every run, sent concurrently (alternating over ``urls``, else all to
    the connector's): 300 one-unit packets forwarded on 200 units of liquidity, then 40 STREAM
    packets of 10 into carol's wallet address on one connection with receipts. What came of
    them."""
    targets = urls or [connector.url]
    url = targets[-1]
    sent = 0

    async def one(prepare: Prepare) -> Fulfill | Reject:
        nonlocal sent
        sent += 1
        return await post_prepare(client, targets[sent % len(targets)], prepare)

    replies = await asyncio.gather(
        *(one(prepare_to("test.bob.x", 1, expires_in=30)) for _ in range(300))
    )
    forwarded = sum(isinstance(r, Fulfill) for r in replies)
    codes = sorted({r.code for r in replies if isinstance(r, Reject)})

    async with Ledger(connector.pool) as ledger:
        await ledger.deposit(uuid.uuid4(), ledger_account(connector), 1000)
    nonce, receipt_secret = os.urandom(16), os.urandom(32)
    spsp = await client.get(
        f"{url}/carol",
        headers={
            "Accept": "application/spsp4+json",
            "Receipt-Nonce": base64.b64encode(nonce).decode(),
            "Receipt-Secret": base64.b64encode(receipt_secret).decode(),
        },
    )
    credentials = SpspResponse.from_json(spsp.json())
    keys = StreamKeys(credentials.shared_secret)

    async def pay(sequence: int) -> int:
        data = keys.encrypt(
            encode_stream_packet(StreamPacket(sequence, 12, 0, [StreamMoneyFrame(1, 1)]))
        )
        prepare = Prepare(
            10,
            prepare_to("x.y", 1).expires_at,
            keys.condition(data),
            credentials.destination_account,
            data,
        )
        reply = await one(prepare)
        assert isinstance(reply, Fulfill), reply
        stream = decode_stream_packet(keys.decrypt(reply.data))
        receipt = next(f for f in stream.frames if isinstance(f, StreamReceiptFrame))
        return verify_receipt(receipt.receipt, receipt_secret).total_received

    totals = await asyncio.gather(*(pay(i) for i in range(1, 41)))  # concurrent, so sorted
    await connector.settled()
    seeded = connector.seeded
    return {
        "forwarded": forwarded,
        "codes": codes,
        "alice": await connector.balance(AccountKind.PEER_LIQUIDITY, seeded.peers["alice"]),
        "bob": await connector.balance(AccountKind.PEER_LIQUIDITY, seeded.peers["bob"]),
        "receipt_totals": sorted(totals),
        "carol": await connector.balance(AccountKind.WALLET_ADDRESS, seeded.wallets["carol"]),
    }


async def _fulfilled(client: httpx.AsyncClient, url: str) -> int:
    """Packets fulfilled, as /metrics tells on a new connection."""
    text = (await client.get(f"{url}/metrics")).text
    prefix = 'kiungo_ilp_packets_total{outcome="fulfilled",'  # one line per peer: their sum
    lines = text.splitlines()
    return sum(int(float(line.split()[-1])) for line in lines if line.startswith(prefix))


async def _metric(client: httpx.AsyncClient, url: str, sample: str) -> int | None:
    text = (await client.get(f"{url}/metrics")).text
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return int(float(line.split()[-1]))
    return None


def _children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(child) for child in text.split()]


async def test_two_replicas_behind_one_address_come_out_as_one(
    make_database: DatabaseFactory, redis_server_url: str, redis_prefix: str
) -> None:
    """`kiungo connector --processes 2`: two replicas on one port (SO_REUSEPORT spreads the
    connections), each with its own pools and workers. The same load as a single replica gets
    gives the same totals, receipts and balances; SIGTERM stops both cleanly."""
    outcomes = []
    async with next_hop(fulfilling_hop()) as hop, httpx.AsyncClient(
        timeout=60, limits=httpx.Limits(max_connections=32, max_keepalive_connections=0)
    ) as client:  # fmt: skip
        for processes, prefix in ((1, redis_prefix + "one:"), (2, redis_prefix + "two:")):
            settings = node_settings(replace(Settings(), stream_secret=os.urandom(32)), prefix)
            async with running_connector(
                await make_database(), redis_server_url, prefix, hop_endpoint=hop,
                settings=settings, alice_liquidity=200, as_process=True, processes=processes,
            ) as connector:  # fmt: skip
                process = connector.process
                assert process is not None
                if processes == 2:
                    assert len(_children(process.pid)) == 2
                outcomes.append(await _load(connector, client))
                # 240 fulfilled in all, spread over the replicas (every packet came on a new
                # connection), and /metrics, whichever replica answers it, counts them all (a
                # replica publishes what it counted every second).
                for _ in range(50):
                    if await _fulfilled(client, connector.url) == 240:
                        break
                    await asyncio.sleep(0.1)
                counts = [await _fulfilled(client, connector.url) for _ in range(40)]
                assert counts == [240] * 40, counts
                merged = await _metric(client, connector.url, "kiungo_metrics_processes")
                assert merged == (2 if processes == 2 else None)
                process.send_signal(signal.SIGTERM)
                async with asyncio.timeout(20):
                    assert await process.wait() == 0
    one, two = outcomes
    assert one == two
    assert one["forwarded"] == 200 and one["codes"] == ["T04"]
    assert one["alice"] == 1000 - 400
    assert one["receipt_totals"] == [10 * (i + 1) for i in range(40)]
    assert one["carol"] == 400
