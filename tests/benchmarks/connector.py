"""Connector throughput with real processes on Postgres and Redis: prints one JSON line per figure.

    .venv/bin/python -m tests.benchmarks.connector [--seconds 10] [--concurrency 64]
        [--ledger tigerbeetle]

(a) forwarding: peer → `kiungo connector` → a sink peer that fulfills everything;
(b) STREAM packets received into one incoming payment, with receipts;
(c) the ceiling: the sink alone (a bare Starlette app answering every POST with a fixed Fulfill);
(d) forwarding again with two replicas behind the same port (`kiungo connector --processes 2`),
    and its ratio to one process's.
Each figure is packets/s with p50/p99 latency, measured by one load generator process (plain
keep-alive HTTP/1.1 connections) on this machine, and (on Linux) the CPU µs each process spent
per packet meanwhile: load generator, sink, connector, Postgres, Redis, with the machine's busy
and steal share. The last line compares the CPU a packet costs at the ceiling and forwarded:
when every core is busy, the ratio of packets/s cannot exceed it. Uses DATABASE_URL/REDIS_URL
(scratch database and key prefix) or embedded engines. Not a test: it never fails on speed.

With ``--ledger tigerbeetle``, (a) and (b) run again on a connector whose ledger is a TigerBeetle
server of its own (``TIGERBEETLE_BIN``, 1 MiB requests; its CPU counted as ``tigerbeetle``),
with their ratios to the Postgres figures and to the ceiling of the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
from tests.benchmarks.cpu import CpuMeter
from tests.benchmarks.ledger import BENCHMARK_SERVER
from tests.benchmarks.sink import PREIMAGE
from tests.connector.harness import ADDRESS, WALLET_BASE, create_incoming_payment, seed
from tests.stores import create_database, drop_database
from tests.tigerbeetle_server import tigerbeetle_server

from kiungo.ilp.packet import Fulfill, Prepare, decode_reply, encode_packet
from kiungo.ledger.tigerbeetle import TigerBeetleLedger
from kiungo.migrations.run import upgrade
from kiungo.spsp import SpspResponse
from kiungo.store.embedded import EmbeddedPostgres, EmbeddedRedis
from kiungo.stream.crypto import StreamKeys
from kiungo.stream.packet import StreamMoneyFrame, StreamPacket, encode_stream_packet

KIUNGO = str(Path(sys.executable).parent / "kiungo")
CONDITION = __import__("hashlib").sha256(PREIMAGE).digest()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def process(
    args: list[str], env: dict[str, str], health: str
) -> AsyncIterator[asyncio.subprocess.Process]:
    proc = await asyncio.create_subprocess_exec(*args, env=env, stdout=asyncio.subprocess.DEVNULL)
    try:
        async with httpx.AsyncClient() as client:
            for _ in range(400):
                with contextlib.suppress(httpx.HTTPError):
                    response = await client.request(
                        "GET" if "healthz" in health else "POST", health
                    )
                    if response.status_code < 500:
                        break
                await asyncio.sleep(0.05)
        yield proc
    finally:
        proc.terminate()
        await proc.wait()


class _Connection:
    """One keep-alive HTTP/1.1 connection speaking just enough to POST and read a reply.

    The load generator cannot be httpx: its pool slows to ~140 requests/s at 64 concurrent
    connections on this machine, far below what the servers under test do.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def post(self, head: bytes, body: bytes) -> bytes:
        self.writer.write(head + str(len(body)).encode() + b"\r\n\r\n" + body)
        header = await self.reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in header.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        return await self.reader.readexactly(length)


async def load(
    url: str, make: Callable[[int], bytes], seconds: float, concurrency: int, token: str = "alice"
) -> dict[str, object]:
    parts = httpx.URL(url)
    head = (
        f"POST {parts.path} HTTP/1.1\r\nHost: {parts.host}:{parts.port}\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/octet-stream\r\n"
        "Content-Length: "
    ).encode()
    latencies: list[float] = []
    fulfilled = 0
    counter = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal fulfilled, counter
        reader, writer = await asyncio.open_connection(parts.host, parts.port)
        connection = _Connection(reader, writer)
        try:
            while time.perf_counter() < deadline:
                counter += 1
                body = make(counter)
                started = time.perf_counter()
                reply = await connection.post(head, body)
                latencies.append(time.perf_counter() - started)
                if isinstance(decode_reply(reply), Fulfill):
                    fulfilled += 1
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    latencies.sort()
    return {
        "per_second": round(len(latencies) / elapsed),
        "fulfilled": fulfilled,
        "packets": len(latencies),
        "concurrency": concurrency,
        "p50_ms": round(latencies[len(latencies) // 2] * 1000, 2),
        "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 2),
    }


async def seeded_node(database_url: str, sink: str, tigerbeetle: str | None = None) -> uuid.UUID:
    """Seeds the node's database (and its TigerBeetle ledger); returns carol's incoming payment."""
    await upgrade(database_url)
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    try:
        ledger = None
        if tigerbeetle is not None:
            ledger = TigerBeetleLedger(pool, cluster_id=0, addresses=tigerbeetle)
            ledger.start()
        try:
            seeded = await seed(pool, sink, alice_liquidity=10**15, ledger=ledger)
        finally:
            if ledger is not None:
                await ledger.close()
        async with pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO peer_incoming_tokens (id, peer_id, token_hash) VALUES ($1, $2, $3)",
                uuid.uuid4(), seeded.peers["alice"],
                __import__("hashlib").sha256(b"alice").digest(),
            )  # fmt: skip
            return await create_incoming_payment(conn, seeded.wallets["carol"], seeded.usd, None)
    finally:
        await pool.close()


async def bench(
    database_url: str,
    redis_url: str,
    seconds: float,
    concurrency: int,
    tigerbeetle_database: str | None = None,
) -> None:
    sink_port, connector_port = free_port(), free_port()
    sink = f"http://127.0.0.1:{sink_port}/ilp"
    connector = f"http://127.0.0.1:{connector_port}"
    payment = await seeded_node(database_url, sink)
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "ILP_ADDRESS": ADDRESS,
        "REDIS_KEY_PREFIX": f"bench-{uuid.uuid4().hex}:",
        "OPEN_PAYMENTS_URL": WALLET_BASE,
        "STREAM_SECRET": base64.b64encode(os.urandom(32)).decode(),
        "CONNECTOR_PORT": str(connector_port),
        "LOG_LEVEL": "WARNING",
    }
    expires = datetime.now(UTC) + timedelta(hours=1)
    meter = CpuMeter()

    async def measured(url: str, make: Callable[[int], bytes]) -> dict[str, object]:
        before = await meter.sample()
        figures = await load(url, make, seconds, concurrency)
        after = await meter.sample()
        return {**figures, **CpuMeter.per_packet(before, after, int(str(figures["packets"])))}

    def forward_packet(i: int) -> bytes:
        return encode_packet(Prepare(1, expires, CONDITION, f"test.bob.{i % 100}", b""))

    async def stream_to(url: str, receiver: uuid.UUID) -> Callable[[int], bytes]:
        async with httpx.AsyncClient() as client:
            spsp = await client.get(
                f"{url}/carol/incoming-payments/{receiver}",
                headers={
                    "Accept": "application/spsp4+json",
                    "Receipt-Nonce": base64.b64encode(os.urandom(16)).decode(),
                    "Receipt-Secret": base64.b64encode(os.urandom(32)).decode(),
                },
            )
        credentials = SpspResponse.from_json(spsp.json())
        keys = StreamKeys(credentials.shared_secret)

        def stream_packet(i: int) -> bytes:
            data = keys.encrypt(
                encode_stream_packet(StreamPacket(i, 12, 0, [StreamMoneyFrame(1, 1)]))
            )
            return encode_packet(
                Prepare(1, expires, keys.condition(data), credentials.destination_account, data)
            )

        return stream_packet

    sink_cmd = [sys.executable, "-m", "tests.benchmarks.sink", "--port", str(sink_port)]
    async with process(sink_cmd, env, sink) as sink_process:
        meter.watch("sink", sink_process.pid)
        ceiling = await measured(sink, forward_packet)
        print(
            json.dumps({"benchmark": "connector", "figure": "bare_starlette_ceiling", **ceiling}),
            flush=True,
        )
        async with process([KIUNGO, "connector"], env, f"{connector}/healthz") as one:
            meter.watch("connector", one.pid)
            forwarded = await measured(f"{connector}/ilp", forward_packet)
            print(
                json.dumps({"benchmark": "connector", "figure": "forwarded", **forwarded}),
                flush=True,
            )

            received = await measured(f"{connector}/ilp", await stream_to(connector, payment))
            print(
                json.dumps(
                    {
                        "benchmark": "connector",
                        "figure": "stream_received_with_receipts",
                        **received,
                    }
                ),
                flush=True,
            )
        two_replicas = [KIUNGO, "connector", "--processes", "2"]
        async with process(two_replicas, env, f"{connector}/healthz") as two:
            meter.watch("connector", two.pid)
            replicated = await measured(f"{connector}/ilp", forward_packet)
            print(
                json.dumps(
                    {"benchmark": "connector", "figure": "forwarded_two_replicas", **replicated}
                ),
                flush=True,
            )
        if tigerbeetle_database is not None:
            with tempfile.TemporaryDirectory() as tmp:
                async with tigerbeetle_server(Path(tmp), *BENCHMARK_SERVER) as server:
                    assert server.process is not None
                    meter.watch("tigerbeetle", server.process.pid)
                    tb_payment = await seeded_node(tigerbeetle_database, sink, server.address)
                    tb_env = {
                        **env,
                        "DATABASE_URL": tigerbeetle_database,
                        "REDIS_KEY_PREFIX": f"bench-{uuid.uuid4().hex}:",
                        "USE_TIGERBEETLE": "true",
                        "TIGERBEETLE_REPLICA_ADDRESSES": server.address,
                    }
                    async with process([KIUNGO, "connector"], tb_env, f"{connector}/healthz") as tb:
                        meter.watch("connector", tb.pid)
                        tb_forwarded = await measured(f"{connector}/ilp", forward_packet)
                        print(
                            json.dumps(
                                {
                                    "benchmark": "connector",
                                    "ledger": "tigerbeetle",
                                    "figure": "forwarded",
                                    **tb_forwarded,
                                }
                            ),
                            flush=True,
                        )
                        tb_received = await measured(
                            f"{connector}/ilp", await stream_to(connector, tb_payment)
                        )
                        print(
                            json.dumps(
                                {
                                    "benchmark": "connector",
                                    "ledger": "tigerbeetle",
                                    "figure": "stream_received_with_receipts",
                                    **tb_received,
                                }
                            ),
                            flush=True,
                        )
            tb_rate = int(str(tb_forwarded["per_second"]))
            pg_rate = int(str(forwarded["per_second"]))
            print(
                json.dumps(
                    {
                        "benchmark": "connector",
                        "figure": "tigerbeetle_forwarded",
                        "over_postgres": round(tb_rate / max(1, pg_rate), 3),
                        "over_ceiling": round(tb_rate / max(1, int(str(ceiling["per_second"]))), 3),
                        "received_over_postgres": round(
                            int(str(tb_received["per_second"]))
                            / max(1, int(str(received["per_second"]))),
                            3,
                        ),
                    }
                ),
                flush=True,
            )
    ratio = int(str(forwarded["per_second"])) / max(1, int(str(ceiling["per_second"])))
    scaling = int(str(replicated["per_second"])) / max(1, int(str(forwarded["per_second"])))
    summary: dict[str, object] = {
        "benchmark": "connector",
        "figure": "forwarded_over_ceiling",
        "ratio": round(ratio, 3),
        "two_replicas_over_one": round(scaling, 3),
        "cpus": os.cpu_count(),
    }
    ceiling_cpu, forwarded_cpu = _cpu_total(ceiling), _cpu_total(forwarded)
    if ceiling_cpu and forwarded_cpu:
        # All processes' CPU per packet: at the ceiling, and forwarded.
        summary["cpu_us_per_packet_ceiling"] = round(ceiling_cpu, 1)
        summary["cpu_us_per_packet_forwarded"] = round(forwarded_cpu, 1)
        summary["cpu_bound_ratio"] = round(ceiling_cpu / forwarded_cpu, 3)
    print(json.dumps(summary), flush=True)


def _cpu_total(figures: dict[str, object]) -> float:
    groups = figures.get("cpu_us_per_packet")
    return sum(groups.values()) if isinstance(groups, dict) else 0.0


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--ledger", choices=("postgres", "tigerbeetle"), default="postgres")
    args = parser.parse_args()
    database_server = os.environ.get("DATABASE_URL")
    redis_url = os.environ.get("REDIS_URL")
    with tempfile.TemporaryDirectory() as tmp:
        async with contextlib.AsyncExitStack() as stack:
            if not database_server:
                database_server = (await stack.enter_async_context(EmbeddedPostgres(Path(tmp)))).url
            if not redis_url:
                redis_url = (await stack.enter_async_context(EmbeddedRedis(Path(tmp)))).url
            url = await create_database(database_server)
            tigerbeetle_url = None
            if args.ledger == "tigerbeetle":
                tigerbeetle_url = await create_database(database_server)
            try:
                await bench(url, redis_url, args.seconds, args.concurrency, tigerbeetle_url)
            finally:
                await drop_database(url)
                if tigerbeetle_url is not None:
                    await drop_database(tigerbeetle_url)


if __name__ == "__main__":
    asyncio.run(main())
