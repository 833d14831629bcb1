"""The ledger service: double-entry transfers on Postgres with group commit (DESIGN §4).

Callers submit operations concurrently; one writer task per process takes whatever has queued
up while the previous batch was committing and applies it in a single transaction
(:mod:`kiungo.ledger.batch_commit`). Each caller gets its own result.
A batch that fails as a whole (deadlock, lost connection) is retried or reported as
:class:`LedgerUnavailable`; transfer ids make the caller's retry safe.

**Time.** Every decision about a hold's timeout is made on the database's clock: a batch takes
``clock_timestamp()`` with its account locks and sets new holds' ``expires_at`` from it, posts
and releases against it; the sweep (:meth:`Ledger.expire_pending`) and :meth:`Ledger.balance`
compare with it in SQL. No replica's own clock enters, so a replica whose clock runs ahead
cannot expire another's hold while that one may still post it, and a hold lives its full
timeout however far the clocks of the replicas drift apart. (Callers' deadlines for retrying,
such as how long to retry a post through an outage, stay on their own clocks: they decide
only how long to wait, never what the books say.) The sweep releases with
:class:`~kiungo.ledger.rules.ExpireTransfers`, never a void: a hold not yet due when its batch
runs stays pending.

**SQL.** The batch's five statements are raw SQL (:mod:`kiungo.ledger.batch_sql`). Every other
statement (accounts, balances, history, the sweep's read, the balance copy of
:meth:`Ledger.sync_balances`) is built from the models (:mod:`kiungo.ledger.service_sql`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import ClassVar, Self

import asyncpg

from kiungo.ledger.accounts import AccountKind, Balance
from kiungo.ledger.batch_commit import WriterConnection, commit_batch
from kiungo.ledger.batch_sql import transfer_from_row
from kiungo.ledger.check import CheckResult, run_checks
from kiungo.ledger.errors import LedgerUnavailable, UnknownAccount
from kiungo.ledger.group_commit import GroupCommit, settle
from kiungo.ledger.rules import (
    CreateTransfers,
    ExpireTransfers,
    Leg,
    Operation,
    PostTransfers,
    Transfer,
    TransferState,
    VoidTransfers,
)
from kiungo.ledger.service_sql import (
    ACCOUNT_FACTS,
    ACCOUNTS_OF_KINDS,
    BALANCE,
    COPY_BALANCES,
    CREDITS_HISTORY,
    DEBITS_HISTORY,
    EXPIRED_HOLDS,
    INSERT_ACCOUNT,
    TRANSFER,
    TRANSFERS_OF,
)

__all__ = ["Ledger", "TransferRecord", "account_id_for"]

log = logging.getLogger(__name__)

_ACCOUNT_NAMESPACE = uuid.UUID("6f1d3c2e-8a4b-4f0e-9d7c-5b2a1e0f3c4d")
_RETRIES = 3


# Cached: every packet names two to four accounts, and uuid5 (SHA-1 and a UUID object) was a
# sixth of the ledger's CPU in the connector. Ids are pure functions of their arguments.
@functools.lru_cache(maxsize=65536)
def account_id_for(kind: AccountKind, owner_id: uuid.UUID) -> uuid.UUID:
    """The id of ``owner_id``'s account of ``kind`` (stable, so no lookup is needed)."""
    return uuid.uuid5(_ACCOUNT_NAMESPACE, f"{kind.value}:{owner_id}")


@dataclass(frozen=True, slots=True)
class TransferRecord:
    """A transfer as an account's history shows it (``accountingTransfers``)."""

    transfer: Transfer
    created_at: datetime


@dataclass(slots=True)
class _Request:
    operation: Operation
    future: asyncio.Future[list[Transfer]]


class Ledger:
    """Transfers, balances and accounts over an asyncpg pool. Use as an async context manager.

    ``clock`` is for tests: it replaces the database's clock, by which holds time out.

    Each writer keeps one connection of the pool while the ledger runs, so the pool needs more
    than ``writers`` connections for reads and for its other users.
    """

    # Whether the balance columns of ledger_accounts are a copy of balances kept elsewhere
    # (TigerBeetle's), which sync_balances refreshes; here they are the ledger's own.
    balances_are_a_copy: ClassVar[bool] = False

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        max_batch: int = 4000,
        writers: int = 2,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if pool.get_max_size() <= writers:
            raise ValueError(f"the pool needs more than {writers} connections for the ledger")
        self._pool = pool
        self._max_batch = max_batch
        # Tests only: stands in for the database's clock (the module docstring's "Time").
        self._clock = clock
        self._commits: GroupCommit[_Request] = GroupCommit("ledger-writer", writers)
        self._asset_of: dict[uuid.UUID, uuid.UUID] = {}
        self._kind_of: dict[uuid.UUID, AccountKind] = {}
        self.batches = 0
        self.operations = 0

    async def __aenter__(self) -> Self:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def start(self) -> None:
        # Two writers overlap one batch's Python work with the other's time in Postgres; row
        # locks taken in one order keep their batches serial where they share accounts.
        self._commits.start(self._write_loop)

    async def close(self) -> None:
        """Finish what is queued, then stop the writer."""
        await self._commits.close()

    def readiness_probe(self) -> Callable[[], Awaitable[None]] | None:
        """A round trip to the engine holding the balances, for ``/readyz``; None when that
        engine is Postgres itself (which readiness checks anyway)."""
        return None

    # -- accounts ------------------------------------------------------------------------------

    async def ensure_account(
        self, kind: AccountKind, owner_id: uuid.UUID, asset_id: uuid.UUID
    ) -> uuid.UUID:
        """The account of ``kind`` for ``owner_id``, created on first use, with its asset's
        settlement account."""
        await self._map_accounts(kind, owner_id, asset_id)
        account_id = account_id_for(kind, owner_id)
        self._asset_of[account_id] = asset_id
        return account_id

    async def _map_accounts(
        self, kind: AccountKind, owner_id: uuid.UUID, asset_id: uuid.UUID
    ) -> dict[uuid.UUID, AccountKind]:
        """Insert (if new) the ``ledger_accounts`` rows of ``owner_id``'s account of ``kind``
        and of its asset's settlement account; their ids and kinds."""
        accounts = {
            account_id_for(kind, owner_id): (kind, owner_id),
            account_id_for(AccountKind.SETTLEMENT, asset_id): (AccountKind.SETTLEMENT, asset_id),
        }
        async with self._pool.acquire() as conn:
            await INSERT_ACCOUNT.executemany(
                conn,
                [
                    {"id": account_id, "asset_id": asset_id, "kind": made.value, "owner_id": owner}
                    for account_id, (made, owner) in accounts.items()
                ],
            )
        return {account_id: made for account_id, (made, _) in accounts.items()}

    async def _account_facts(self, account_id: uuid.UUID) -> tuple[uuid.UUID, AccountKind]:
        """The account's asset and kind (cached, else looked up)."""
        asset_id = self._asset_of.get(account_id)
        kind = self._kind_of.get(account_id)
        if asset_id is None or kind is None:
            async with self._pool.acquire() as conn:
                row = await ACCOUNT_FACTS.fetchrow(conn, id=account_id)
            if row is None:
                raise UnknownAccount(f"account {account_id} does not exist")
            asset_id, kind = row["asset_id"], AccountKind(row["kind"])
            self._asset_of[account_id] = asset_id
            self._kind_of[account_id] = kind
        return asset_id, kind

    async def _asset_for(self, account_id: uuid.UUID) -> uuid.UUID:
        asset_id = self._asset_of.get(account_id)
        if asset_id is None:
            asset_id, _ = await self._account_facts(account_id)
        return asset_id

    async def balance(self, account_id: uuid.UUID) -> Balance:
        """Balances, with holds past their timeout already released even if not yet swept."""
        async with self._pool.acquire() as conn:
            row = await BALANCE.fetchrow(conn, id=account_id, test_now=self._test_now())
        if row is None:
            raise UnknownAccount(f"account {account_id} does not exist")
        return Balance(
            account_id,
            AccountKind(row["kind"]),
            int(row["debits_posted"]),
            int(row["credits_posted"]),
            int(row["debits_pending"]),
            int(row["credits_pending"]),
        )

    async def balances(self, account_ids: Sequence[uuid.UUID]) -> list[Balance | None]:
        """The balances of several accounts at once (None for an unknown id), in order."""
        return [await self._balance_or_none(a) for a in account_ids]

    async def _balance_or_none(self, account_id: uuid.UUID) -> Balance | None:
        try:
            return await self.balance(account_id)
        except UnknownAccount:
            return None

    async def sync_balances(
        self,
        conn: asyncpg.Connection,
        account_ids: Sequence[uuid.UUID] | None = None,
        kinds: Sequence[AccountKind] = (),
    ) -> None:
        """Bring the balance columns of ``ledger_accounts`` (``account_ids``, or every account
        of ``kinds``) up to date for SQL that reads them, in ``conn``'s transaction: the
        backend's SQL that joins balances with its own rows (alerts, gauges, expiry, deletions).
        Here they are the ledger's own, always current: nothing to do. Where they are a copy
        (:attr:`balances_are_a_copy`, TigerBeetle), what :meth:`balances` reads is written into
        them; that ledger never reads these columns itself."""
        if not self.balances_are_a_copy:
            return
        if account_ids is None:
            rows = await ACCOUNTS_OF_KINDS.fetch(conn, kinds=[k.value for k in kinds])
            account_ids = [row["id"] for row in rows]
        found = [b for b in await self.balances(account_ids) if b is not None]
        if not found:
            return
        await COPY_BALANCES.execute(
            conn,
            ids=[b.account_id for b in found],
            debits_posted=[Decimal(b.debits_posted) for b in found],
            credits_posted=[Decimal(b.credits_posted) for b in found],
            debits_pending=[Decimal(b.debits_pending) for b in found],
            credits_pending=[Decimal(b.credits_pending) for b in found],
        )

    async def check(self) -> list[CheckResult]:
        """The invariants of ``kiungo ledger check`` (:mod:`kiungo.ledger.check`)."""
        async with self._pool.acquire() as conn:
            return await run_checks(conn)

    def _test_now(self) -> datetime | None:
        """``test_now`` of a statement's ``coalesce(test_now, statement_timestamp())``: NULL
        (the database's clock) but in tests."""
        return None if self._clock is None else self._clock()

    async def transfers_of(self, account_id: uuid.UUID, limit: int = 100) -> list[Transfer]:
        async with self._pool.acquire() as conn:
            rows = await TRANSFERS_OF.fetch(conn, account_id=account_id, limit=limit)
        return [transfer_from_row(r) for r in rows]

    async def history(
        self, account_ids: Sequence[uuid.UUID], *, debits: bool, limit: int
    ) -> list[TransferRecord]:
        """The newest ``limit`` transfers debiting (or crediting) any of ``account_ids``,
        newest first."""
        query = DEBITS_HISTORY if debits else CREDITS_HISTORY
        async with self._pool.acquire() as conn:
            rows = await query.fetch(conn, account_ids=list(account_ids), limit=limit)
        return [TransferRecord(transfer_from_row(r), r["created_at"]) for r in rows]

    async def transfer(self, transfer_id: uuid.UUID) -> Transfer | None:
        async with self._pool.acquire() as conn:
            row = await TRANSFER.fetchrow(conn, id=transfer_id)
        return None if row is None else transfer_from_row(row)

    # -- transfers -----------------------------------------------------------------------------

    async def create_transfer(
        self,
        transfer_id: uuid.UUID,
        debit_account_id: uuid.UUID,
        credit_account_id: uuid.UUID,
        amount: int,
        *,
        hold_for: timedelta | None = None,
        code: str = "TRANSFER",
    ) -> Transfer:
        """One leg; with ``hold_for`` it is pending until posted, voided or expired."""
        leg = Leg(transfer_id, debit_account_id, credit_account_id, amount)
        return (await self.submit(CreateTransfers((leg,), hold_for, code)))[0]

    async def create_transfers(
        self, legs: Sequence[Leg], *, hold_for: timedelta | None = None, code: str = "TRANSFER"
    ) -> list[Transfer]:
        """Several legs that all happen or none (e.g. cross-currency through liquidity)."""
        return await self.submit(CreateTransfers(tuple(legs), hold_for, code))

    async def post(self, *transfer_ids: uuid.UUID) -> list[Transfer]:
        return await self.submit(PostTransfers(transfer_ids))

    async def void(self, *transfer_ids: uuid.UUID) -> list[Transfer]:
        return await self.submit(VoidTransfers(transfer_ids))

    async def deposit(self, transfer_id: uuid.UUID, account_id: uuid.UUID, amount: int) -> Transfer:
        """Money entering the node: settlement → ``account_id``."""
        settlement = account_id_for(AccountKind.SETTLEMENT, await self._asset_for(account_id))
        return await self.create_transfer(
            transfer_id, settlement, account_id, amount, code="DEPOSIT"
        )

    async def withdraw(
        self,
        transfer_id: uuid.UUID,
        account_id: uuid.UUID,
        amount: int,
        *,
        hold_for: timedelta | None = None,
    ) -> Transfer:
        """Money leaving the node: ``account_id`` → settlement; two-phase with ``hold_for``."""
        settlement = account_id_for(AccountKind.SETTLEMENT, await self._asset_for(account_id))
        return await self.create_transfer(
            transfer_id, account_id, settlement, amount, hold_for=hold_for, code="WITHDRAWAL"
        )

    async def submit(self, operation: Operation) -> list[Transfer]:
        """Queue ``operation`` for the next batch and wait for its own result."""
        commits = self._commits
        future = commits.future()
        commits.put(_Request(operation, future))
        return await future

    async def expire_pending(self, limit: int = 1000) -> int:
        """Release holds past their timeout everywhere (a background sweep); returns how many
        transfers (or multi-leg groups) it released. Legs of one transfer go together."""
        async with self._pool.acquire() as conn:
            rows = await EXPIRED_HOLDS.fetch(conn, test_now=self._test_now(), limit=limit)
        if not rows:
            return 0
        results = await asyncio.gather(
            *(self.submit(ExpireTransfers(tuple(r["ids"]))) for r in rows), return_exceptions=True
        )
        return sum(
            1
            for r in results
            if isinstance(r, list) and r and all(t.state is TransferState.EXPIRED for t in r)
        )

    # -- the writer ----------------------------------------------------------------------------

    async def _write_loop(self) -> None:
        writer = WriterConnection(self._pool)
        queue = self._commits.queue
        try:
            while True:
                await self._commits.wait()
                batch = queue[: self._max_batch]
                del queue[: self._max_batch]
                await self._run_batch(writer, batch)
        finally:
            await writer.release()

    async def _run_batch(self, writer: WriterConnection, batch: list[_Request]) -> None:
        for attempt in range(_RETRIES):
            try:
                results = await commit_batch(writer, [r.operation for r in batch], self._clock)
            except (
                asyncpg.DeadlockDetectedError,
                asyncpg.SerializationError,
                # Another writer's batch created one of our new transfer ids meanwhile: run
                # again, and the retry reads it as a replay (or a TransferExists).
                asyncpg.UniqueViolationError,
            ):
                if attempt + 1 < _RETRIES:
                    continue
                error: Exception = LedgerUnavailable("the ledger is busy; retry")
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("ledger batch of %d failed: %s", len(batch), exc)
                await writer.release()
                error = LedgerUnavailable(f"the ledger could not commit: {exc}")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Anything else (asyncpg's InternalClientError when the server went away
                # mid-transaction, a bug): the connection's state is unknown, so it is
                # dropped, and the writer lives on. Callers retry with the same ids: a batch
                # that did commit reads as a replay (AlreadyPosted, TransferExists).
                log.exception("ledger batch of %d failed unexpectedly", len(batch))
                await writer.discard()
                error = LedgerUnavailable(f"the ledger could not commit: {exc!r}")
            else:
                self.batches += 1
                self.operations += len(batch)
                for request, result in zip(batch, results, strict=True):
                    settle(request, result)
                return
            for request in batch:
                settle(request, error)
            return
