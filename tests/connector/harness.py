"""A connector under test: a migrated database with assets, peers, liquidity and receivers,
the real Node and Starlette app served by uvicorn on loopback, and scripted next hops."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import signal
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from tests.loopback import serve
from tests.process_output import CapturedOutput
from tests.tigerbeetle_server import TigerBeetleServer, tigerbeetle_server

from kiungo.config import Settings
from kiungo.connector.command import connector_server
from kiungo.connector.node import Node
from kiungo.ilp.packet import Fulfill, Prepare, Reject, decode_prepare, decode_reply, encode_packet
from kiungo.ledger import AccountKind, Ledger
from kiungo.ledger.backend import make_ledger
from kiungo.ledger.tigerbeetle import TigerBeetleLedger
from kiungo.migrations.run import upgrade

ADDRESS = "test.kiungo"
KIUNGO = str(Path(sys.executable).parent / "kiungo")
WALLET_BASE = "https://wallet.test"
PREIMAGE = bytes(range(32))
CONDITION = hashlib.sha256(PREIMAGE).digest()


@dataclass
class Seeded:
    usd: uuid.UUID
    eur: uuid.UUID
    peers: dict[str, uuid.UUID] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    wallets: dict[str, uuid.UUID] = field(default_factory=dict)


async def create_asset(conn: asyncpg.Connection, code: str, scale: int) -> uuid.UUID:
    asset = uuid.uuid4()
    await conn.execute(
        "INSERT INTO assets (id, code, scale) VALUES ($1, $2, $3)", asset, code, scale
    )
    return asset


async def create_peer(
    conn: asyncpg.Connection,
    ledger: Ledger,
    *,
    asset: uuid.UUID,
    address: str,
    endpoint: str = "http://127.0.0.1:9/ilp",
    incoming_token: str | None = None,
    outgoing_token: str = "out-token",
    max_packet_amount: int | None = None,
    routes: tuple[str, ...] = (),
    liquidity: int = 0,
    with_account: bool = True,
) -> uuid.UUID:
    peer = uuid.uuid4()
    await conn.execute(
        "INSERT INTO peers (id, asset_id, static_ilp_address, http_endpoint, http_outgoing_token,"
        " max_packet_amount, routes) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        peer, asset, address, endpoint, outgoing_token, max_packet_amount, list(routes),
    )  # fmt: skip
    if incoming_token is not None:
        await conn.execute(
            "INSERT INTO peer_incoming_tokens (id, peer_id, token_hash) VALUES ($1, $2, $3)",
            uuid.uuid4(), peer, hashlib.sha256(incoming_token.encode()).digest(),
        )  # fmt: skip
    if with_account:
        account = await ledger.ensure_account(AccountKind.PEER_LIQUIDITY, peer, asset)
        if liquidity:
            await ledger.deposit(uuid.uuid4(), account, liquidity)
    return peer


async def create_wallet(
    conn: asyncpg.Connection, ledger: Ledger, asset: uuid.UUID, path: str
) -> uuid.UUID:
    wallet = uuid.uuid4()
    await conn.execute(
        "INSERT INTO wallet_addresses (id, url, asset_id) VALUES ($1, $2, $3)",
        wallet, f"{WALLET_BASE}{path}", asset,
    )  # fmt: skip
    await ledger.ensure_account(AccountKind.WALLET_ADDRESS, wallet, asset)
    return wallet


async def create_incoming_payment(
    conn: asyncpg.Connection,
    wallet: uuid.UUID,
    asset: uuid.UUID,
    amount: int | None,
    expires_in: timedelta = timedelta(hours=1),
) -> uuid.UUID:
    payment = uuid.uuid4()
    await conn.execute(
        "INSERT INTO incoming_payments (id, wallet_address_id, asset_id, incoming_amount,"
        " expires_at) VALUES ($1, $2, $3, $4, $5)",
        payment, wallet, asset, amount, datetime.now(UTC) + expires_in,
    )  # fmt: skip
    return payment


async def post_prepare(
    client: httpx.AsyncClient, url: str, prepare: Prepare | bytes, token: str = "alice-token"
) -> Fulfill | Reject:
    """ILP over HTTP to the connector at ``url`` as the peer holding ``token``."""
    body = prepare if isinstance(prepare, bytes) else encode_packet(prepare)
    response = await client.post(
        f"{url}/ilp",
        content=body,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/octet-stream"},
    )
    assert response.status_code == 200, response.text
    return decode_reply(response.content)


@dataclass
class Connector:
    url: str
    pool: asyncpg.Pool
    seeded: Seeded
    client: httpx.AsyncClient
    process: asyncio.subprocess.Process | None = None  # a `kiungo connector` process's
    node: Node | None = None  # an in-process connector's

    async def send(self, prepare: Prepare | bytes, token: str = "alice-token") -> Fulfill | Reject:
        return await post_prepare(self.client, self.url, prepare, token)

    ledger: Ledger | None = None  # the test's own view of the node's ledger, either backend
    tigerbeetle: TigerBeetleServer | None = None  # the ledger's server, on TigerBeetle

    async def balance(self, kind: AccountKind, owner: uuid.UUID) -> int:
        from kiungo.ledger import account_id_for

        if self.ledger is not None:
            return (await self.ledger.balance(account_id_for(kind, owner))).posted
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT credits_posted - debits_posted AS posted, debits_pending, credits_pending"
                " FROM ledger_accounts WHERE id = $1",
                account_id_for(kind, owner),
            )
        assert row is not None
        return int(row["posted"])

    async def settled(self, seconds: float = 20.0) -> None:
        """Wait until no transfer is pending: received packets post just after their Fulfill
        (on a loaded machine, a while after)."""
        deadline = asyncio.get_running_loop().time() + seconds
        while asyncio.get_running_loop().time() < deadline:
            if not await self.pending():
                return
            await asyncio.sleep(0.02)
        raise AssertionError("transfers still pending")

    async def pending(self) -> int:
        if isinstance(self.ledger, TigerBeetleLedger):
            # No transfers table: what every account still has pending (0 when none is).
            ids = [r["id"] for r in await self.pool.fetch("SELECT id FROM ledger_accounts")]
            return sum(b.debits_pending for b in await self.ledger.balances(ids) if b)
        async with self.pool.acquire() as conn:
            return int(
                await conn.fetchval("SELECT count(*) FROM ledger_transfers WHERE state = 'PENDING'")
            )


def prepare_to(
    destination: str, amount: int, *, expires_in: float = 10.0, data: bytes = b""
) -> Prepare:
    return Prepare(
        amount, datetime.now(UTC) + timedelta(seconds=expires_in), CONDITION, destination, data
    )


NextHop = Callable[[Request], Awaitable[Response]]


def fulfilling_hop(preimage: bytes = PREIMAGE, seen: list[Prepare] | None = None) -> NextHop:
    async def hop(request: Request) -> Response:
        prepare = decode_prepare(await request.body())
        if seen is not None:
            seen.append(prepare)
        return Response(
            encode_packet(Fulfill(preimage, b"ok")), media_type="application/octet-stream"
        )

    return hop


@contextlib.asynccontextmanager
async def next_hop(handler: NextHop) -> AsyncIterator[str]:
    async with serve(Starlette(routes=[Route("/ilp", handler, methods=["POST"])])) as url:
        yield f"{url}/ilp"


def node_settings(base: Settings | None, redis_prefix: str) -> Settings:
    base = base or Settings()
    return replace(
        base,
        ilp_address=ADDRESS,
        redis_key_prefix=redis_prefix,
        open_payments_url=WALLET_BASE,
        stream_secret=base.stream_secret or os.urandom(32),
    )


async def seed(
    pool: asyncpg.Pool, hop_endpoint: str, alice_liquidity: int, ledger: Ledger | None = None
) -> Seeded:
    """Assets USD and EUR; peers alice (sends, USD, max packet 1000), bob (USD, next hop, also
    routes test.bobland), erin (EUR, next hop), nobody (no ledger account); wallets carol (USD)
    and dave (EUR). On ``ledger`` (started) when given, else on a Postgres ledger of its own."""
    if ledger is not None:
        return await _seed(pool, ledger, hop_endpoint, alice_liquidity)
    async with Ledger(pool) as own:
        return await _seed(pool, own, hop_endpoint, alice_liquidity)


async def _seed(
    pool: asyncpg.Pool, ledger: Ledger, hop_endpoint: str, alice_liquidity: int
) -> Seeded:
    async with pool.acquire() as conn:
        usd = await create_asset(conn, "USD", 2)
        eur = await create_asset(conn, "EUR", 2)
        seeded = Seeded(usd, eur)
        await ledger.ensure_account(AccountKind.ASSET_LIQUIDITY, usd, usd)
        eur_pool = await ledger.ensure_account(AccountKind.ASSET_LIQUIDITY, eur, eur)
        await ledger.deposit(uuid.uuid4(), eur_pool, 10**9)
        seeded.peers["alice"] = await create_peer(
            conn, ledger, asset=usd, address="test.alice", incoming_token="alice-token",
            max_packet_amount=1000, liquidity=alice_liquidity,
        )  # fmt: skip
        seeded.peers["bob"] = await create_peer(
            conn, ledger, asset=usd, address="test.bob", endpoint=hop_endpoint,
            incoming_token="bob-token", routes=("test.bobland",),
        )  # fmt: skip
        seeded.peers["erin"] = await create_peer(
            conn, ledger, asset=eur, address="test.erin", endpoint=hop_endpoint,
        )  # fmt: skip
        seeded.peers["nobody"] = await create_peer(
            conn, ledger, asset=usd, address="test.nobody", incoming_token="nobody-token",
            with_account=False,
        )  # fmt: skip
        seeded.wallets["carol"] = await create_wallet(conn, ledger, usd, "/carol")
        seeded.wallets["dave"] = await create_wallet(conn, ledger, eur, "/dave")
    return seeded


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def process_env(settings: Settings, database_url: str, redis_url: str, port: int) -> dict[str, str]:
    """The environment that gives a `kiungo connector` process these settings."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "ILP_ADDRESS": settings.ilp_address,
        "REDIS_KEY_PREFIX": settings.redis_key_prefix,
        "OPEN_PAYMENTS_URL": settings.open_payments_url,
        "STREAM_SECRET": base64.b64encode(settings.stream_secret or os.urandom(32)).decode(),
        "CONNECTOR_PORT": str(port),
    }
    if settings.exchange_rates_url:
        env["EXCHANGE_RATES_URL"] = settings.exchange_rates_url
    if settings.peer_rate_limit:
        env["PEER_RATE_LIMIT"] = str(settings.peer_rate_limit)
    if settings.use_tigerbeetle:
        env["USE_TIGERBEETLE"] = "true"
        env["TIGERBEETLE_REPLICA_ADDRESSES"] = settings.tigerbeetle_replica_addresses or ""
    return env


@contextlib.asynccontextmanager
async def connector_process(
    env: dict[str, str], url: str, *args: str
) -> AsyncIterator[asyncio.subprocess.Process]:
    """`kiungo connector [args]` as a real process, yielded once its /healthz answers. Its
    stderr is read as it is written, and shown when the process had to be killed or failed.
    In a session of its own: whatever it forked (``--processes N``) is killed with it, not
    left serving (and holding connections to the test's servers) after a failed test."""
    process = await asyncio.create_subprocess_exec(
        KIUNGO, "connector", *args, env=env, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    stderr = CapturedOutput(process.stderr)
    try:
        async with httpx.AsyncClient() as client:
            deadline = asyncio.get_running_loop().time() + 60  # slow to start when loaded
            while True:
                if process.returncode is not None:
                    break
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{url}/healthz")).status_code == 200:
                        break
                if asyncio.get_running_loop().time() > deadline:
                    raise AssertionError("connector did not start")
                await asyncio.sleep(0.05)
        if process.returncode is not None:
            raise AssertionError(f"connector exited with status {process.returncode}")
        yield process
    finally:
        killed = process.returncode is None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
        await stderr.finish()
        if killed or process.returncode != 0:
            command = " ".join(("kiungo connector", *args))
            stderr.show(f"{command}: stderr, exit status {process.returncode}")


@contextlib.asynccontextmanager
async def running_connector(
    database_url: str,
    redis_url: str,
    redis_prefix: str,
    *,
    hop_endpoint: str = "http://127.0.0.1:9/ilp",
    settings: Settings | None = None,
    alice_liquidity: int = 10_000,
    as_process: bool = False,
    processes: int = 1,
    tigerbeetle_dir: Path | None = None,
) -> AsyncIterator[Connector]:
    """A seeded connector: in this process (real uvicorn on loopback), or with ``as_process``
    a separate `kiungo connector [--processes N]` process. With ``tigerbeetle_dir``, its
    ledger is a TigerBeetle server of the test's own with its data file there."""
    await upgrade(database_url)
    settings = node_settings(settings, redis_prefix)
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    try:
        async with contextlib.AsyncExitStack() as stack:
            ledger: Ledger | None = None
            server: TigerBeetleServer | None = None
            if tigerbeetle_dir is not None:
                server = await stack.enter_async_context(tigerbeetle_server(tigerbeetle_dir))
                settings = replace(
                    settings, use_tigerbeetle=True, tigerbeetle_replica_addresses=server.address
                )
                ledger = await stack.enter_async_context(await make_ledger(pool, settings))
            seeded = await seed(pool, hop_endpoint, alice_liquidity, ledger)
            client = await stack.enter_async_context(httpx.AsyncClient(timeout=60))
            if as_process:
                port = free_port()
                url = f"http://127.0.0.1:{port}"
                env = process_env(settings, database_url, redis_url, port)
                args = ("--processes", str(processes)) if processes > 1 else ()
                async with connector_process(env, url, *args) as process:
                    yield Connector(
                        url, pool, seeded, client, process, ledger=ledger, tigerbeetle=server
                    )
            else:
                async with connector_server(
                    settings, database_url, redis_url, "127.0.0.1", 0
                ) as running:
                    yield Connector(
                        running.url, pool, seeded, client, node=running.node, ledger=ledger,
                        tigerbeetle=server,
                    )  # fmt: skip
    finally:
        await pool.close()


async def incoming_payment_state(
    pool: asyncpg.Pool, payment: uuid.UUID, until: str = "COMPLETED", seconds: float = 7.5
) -> str | None:
    """The incoming payment's state once it is ``until``, or after ``seconds`` of waiting
    (a completion is recorded just after the packet that completes it is posted)."""
    state = None
    for _ in range(int(seconds / 0.05)):
        async with pool.acquire() as conn:
            state = await conn.fetchval(
                "SELECT state FROM incoming_payments WHERE id = $1", payment
            )
        if state == until:
            break
        await asyncio.sleep(0.05)
    return state


async def gather_replies(
    connector: Connector, prepares: list[Prepare], token: str = "alice-token"
) -> list[Fulfill | Reject]:
    return list(await asyncio.gather(*(connector.send(p, token) for p in prepares)))
