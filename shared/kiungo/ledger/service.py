"""The ledger service: double-entry transfers on Postgres with group commit (DESIGN §4).

Callers submit operations concurrently; one writer task per process takes whatever has queued
up while the previous batch was committing and applies it in a single transaction:

1. lock the transfers the batch names and the expired holds on its accounts (id order);
2. lock every account involved (id order, so replicas never deadlock each other);
3. apply the operations in arrival order in memory (:mod:`kiungo.ledger.rules`);
4. write new transfers, changed transfer states and each changed account once, in one statement.

Each caller gets its own result. Throughput on a hot account therefore grows with the batch
size instead of being capped by one row lock per transfer, and all money stays in Postgres.
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

**SQL.** The batch's five statements (the locks of steps 1 and 2, the write of step 4) are
raw SQL: the measured hot path, arrays unnested into one round trip per batch, checked against
the models by tests/models. Every other statement (accounts, balances, history, the sweep's
read, the balance copy of :meth:`Ledger.sync_balances`) is built from the models
(:class:`kiungo.models.sql.Statement`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar, Self

import asyncpg
from sqlalchemy import (
    ARRAY,
    DateTime,
    Numeric,
    String,
    Uuid,
    any_,
    bindparam,
    func,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.sql.elements import Label

from kiungo.ledger.accounts import Account, AccountKind, Balance
from kiungo.ledger.check import CheckResult, run_checks
from kiungo.ledger.errors import (
    InsufficientBalance,
    LedgerError,
    LedgerUnavailable,
    UnknownAccount,
)
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
    apply_batch,
)
from kiungo.models import LedgerAccount, LedgerTransfer
from kiungo.models.sql import Statement, table

__all__ = ["Ledger", "TransferRecord", "account_id_for"]

log = logging.getLogger(__name__)

_ACCOUNT_NAMESPACE = uuid.UUID("6f1d3c2e-8a4b-4f0e-9d7c-5b2a1e0f3c4d")
_RETRIES = 3

# The batch's statements (raw SQL, module docstring).

# The named transfers, with every leg of the multi-leg ones among them (a post or void must
# name them all, which the rules can only tell with all of them loaded).
_LOCK_TRANSFERS = """
SELECT id, asset_id, debit_account_id, credit_account_id, amount, state, expires_at, group_id,
       code
FROM ledger_transfers
WHERE id = ANY(ARRAY(
    SELECT unnest($1::uuid[])
    UNION
    SELECT leg.id FROM ledger_transfers AS leg
    WHERE leg.group_id = ANY(ARRAY(
        SELECT named.group_id FROM ledger_transfers AS named
        WHERE named.id = ANY($1::uuid[]) AND named.group_id IS NOT NULL
    ))
))
ORDER BY id FOR UPDATE
"""

# Holds past their timeout on accounts that came up short. Taken after the account locks, so
# without waiting: a hold locked by another batch is being resolved there anyway. Multi-leg
# holds are left to the sweep (expire_pending), which releases all their legs together.
_LOCK_EXPIRED_HOLDS = """
SELECT id, asset_id, debit_account_id, credit_account_id, amount, state, expires_at, group_id,
       code
FROM ledger_transfers
WHERE state = 'PENDING' AND expires_at <= $2 AND group_id IS NULL
  AND (debit_account_id = ANY($1::uuid[]) OR credit_account_id = ANY($1::uuid[]))
ORDER BY id
FOR UPDATE SKIP LOCKED
"""

# With the database's clock: the batch's ``now`` (module docstring), read with the locks
# instead of in a statement of its own.
_LOCK_ACCOUNTS = """
SELECT id, asset_id, kind, debits_posted, credits_posted, debits_pending, credits_pending,
       clock_timestamp() AS now
FROM ledger_accounts
WHERE id = ANY($1::uuid[])
ORDER BY id
FOR UPDATE
"""

_LOCK_MORE_ACCOUNTS = """
SELECT id, asset_id, kind, debits_posted, credits_posted, debits_pending, credits_pending
FROM ledger_accounts
WHERE id = ANY($1::uuid[])
ORDER BY id
FOR UPDATE SKIP LOCKED
"""

_WRITE = """
WITH new_transfers AS (
    INSERT INTO ledger_transfers (id, asset_id, debit_account_id, credit_account_id, amount,
                                  state, expires_at, group_id, code)
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::numeric[],
                         $6::text[], $7::timestamptz[], $8::uuid[], $9::text[])
    RETURNING 1
), moved AS (
    UPDATE ledger_transfers AS t SET state = u.state, updated_at = now()
    FROM unnest($10::uuid[], $11::text[]) AS u(id, state)
    WHERE t.id = u.id
    RETURNING 1
), balances AS (
    UPDATE ledger_accounts AS a
    SET debits_posted = u.dp, credits_posted = u.cp, debits_pending = u.dq,
        credits_pending = u.cq, updated_at = now()
    FROM unnest($12::uuid[], $13::numeric[], $14::numeric[], $15::numeric[], $16::numeric[])
         AS u(id, dp, cp, dq, cq)
    WHERE a.id = u.id
    RETURNING 1
)
SELECT (SELECT count(*) FROM new_transfers), (SELECT count(*) FROM moved),
       (SELECT count(*) FROM balances)
"""


# The rest is not the batch's: statements built from the models (kiungo.models.sql).

_accounts = table(LedgerAccount)
_transfers = table(LedgerTransfer)
# A transfer as _transfer_from_row reads it.
_TRANSFER_COLUMNS = (
    _transfers.c.id,
    _transfers.c.asset_id,
    _transfers.c.debit_account_id,
    _transfers.c.credit_account_id,
    _transfers.c.amount,
    _transfers.c.state,
    _transfers.c.expires_at,
    _transfers.c.group_id,
    _transfers.c.code,
)
# ``coalesce($n, statement_timestamp())``: the database's clock but in tests (Ledger._test_now).
_NOW = func.coalesce(
    bindparam("test_now", type_=DateTime(timezone=True)), func.statement_timestamp()
)

# An account's row in the map (its balances start at 0), made once.
_INSERT_ACCOUNT = Statement(
    insert(_accounts)
    .values({name: bindparam(name) for name in ("id", "asset_id", "kind", "owner_id")})
    .on_conflict_do_nothing()
)

_ACCOUNT_FACTS = Statement(
    select(_accounts.c.asset_id, _accounts.c.kind).where(_accounts.c.id == bindparam("id"))
)


def _balance() -> Statement:
    """An account's balances less its holds past their timeout (not yet released)."""
    now = select(_NOW.label("t")).subquery("now")
    account = _accounts.alias("a")

    def expired(side: str) -> Label[Any]:
        held = (
            select(func.sum(_transfers.c.amount))
            .where(
                _transfers.c.state == TransferState.PENDING,
                _transfers.c.expires_at <= now.c.t,
                _transfers.c[f"{side}_account_id"] == account.c.id,
            )
            .scalar_subquery()
        )
        pending = account.c[f"{side}s_pending"] - func.coalesce(held, 0)
        return pending.label(f"{side}s_pending")

    return Statement(
        select(
            account.c.kind,
            account.c.debits_posted,
            account.c.credits_posted,
            expired("debit"),
            expired("credit"),
        )
        .select_from(account, now)
        .where(account.c.id == bindparam("id"))
    )


_BALANCE = _balance()

_TRANSFERS_OF = Statement(
    select(*_TRANSFER_COLUMNS)
    .where(
        or_(
            _transfers.c.debit_account_id == bindparam("account_id"),
            _transfers.c.credit_account_id == bindparam("account_id"),
        )
    )
    .order_by(_transfers.c.created_at, _transfers.c.id)
    .limit(bindparam("limit"))
)


def _history(side: str) -> Statement:
    """The newest transfers on ``side`` (debit or credit) of any of the accounts."""
    return Statement(
        select(*_TRANSFER_COLUMNS, _transfers.c.created_at)
        .where(
            _transfers.c[f"{side}_account_id"] == any_(bindparam("account_ids", type_=ARRAY(Uuid)))
        )
        .order_by(_transfers.c.created_at.desc(), _transfers.c.id.desc())
        .limit(bindparam("limit"))
    )


_DEBITS_HISTORY = _history("debit")
_CREDITS_HISTORY = _history("credit")

_TRANSFER = Statement(select(*_TRANSFER_COLUMNS).where(_transfers.c.id == bindparam("id")))

# Each transfer (the legs of one together) whose hold is past its timeout.
_EXPIRED_HOLDS = Statement(
    select(func.array_agg(_transfers.c.id).label("ids"))
    .where(_transfers.c.state == TransferState.PENDING, _transfers.c.expires_at <= _NOW)
    .group_by(func.coalesce(_transfers.c.group_id, _transfers.c.id))
    .limit(bindparam("limit"))
)

_ACCOUNTS_OF_KINDS = Statement(
    select(_accounts.c.id).where(_accounts.c.kind == any_(bindparam("kinds", type_=ARRAY(String))))
)

# The balance columns of a ledger that keeps its balances elsewhere (TigerBeetle), written
# where they changed.
_copied = (
    func.unnest(
        bindparam("ids", type_=ARRAY(Uuid)),
        bindparam("debits_posted", type_=ARRAY(Numeric)),
        bindparam("credits_posted", type_=ARRAY(Numeric)),
        bindparam("debits_pending", type_=ARRAY(Numeric)),
        bindparam("credits_pending", type_=ARRAY(Numeric)),
    )
    .table_valued("id", "dp", "cp", "dq", "cq")
    .render_derived(name="u")
)
_COPY_BALANCES = Statement(
    update(_accounts)
    .values(
        debits_posted=_copied.c.dp,
        credits_posted=_copied.c.cp,
        debits_pending=_copied.c.dq,
        credits_pending=_copied.c.cq,
    )
    .where(
        _accounts.c.id == _copied.c.id,
        tuple_(
            _accounts.c.debits_posted,
            _accounts.c.credits_posted,
            _accounts.c.debits_pending,
            _accounts.c.credits_pending,
        ).is_distinct_from(tuple_(_copied.c.dp, _copied.c.cp, _copied.c.dq, _copied.c.cq)),
    )
)


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


def _transfer_from_row(row: asyncpg.Record) -> Transfer:
    return Transfer(
        row["id"],
        row["asset_id"],
        row["debit_account_id"],
        row["credit_account_id"],
        int(row["amount"]),
        TransferState(row["state"]),
        row["expires_at"],
        row["group_id"],
        row["code"],
    )


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
            await _INSERT_ACCOUNT.executemany(
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
                row = await _ACCOUNT_FACTS.fetchrow(conn, id=account_id)
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
            row = await _BALANCE.fetchrow(conn, id=account_id, test_now=self._test_now())
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
            rows = await _ACCOUNTS_OF_KINDS.fetch(conn, kinds=[k.value for k in kinds])
            account_ids = [row["id"] for row in rows]
        found = [b for b in await self.balances(account_ids) if b is not None]
        if not found:
            return
        await _COPY_BALANCES.execute(
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
            rows = await _TRANSFERS_OF.fetch(conn, account_id=account_id, limit=limit)
        return [_transfer_from_row(r) for r in rows]

    async def history(
        self, account_ids: Sequence[uuid.UUID], *, debits: bool, limit: int
    ) -> list[TransferRecord]:
        """The newest ``limit`` transfers debiting (or crediting) any of ``account_ids``,
        newest first."""
        query = _DEBITS_HISTORY if debits else _CREDITS_HISTORY
        async with self._pool.acquire() as conn:
            rows = await query.fetch(conn, account_ids=list(account_ids), limit=limit)
        return [TransferRecord(_transfer_from_row(r), r["created_at"]) for r in rows]

    async def transfer(self, transfer_id: uuid.UUID) -> Transfer | None:
        async with self._pool.acquire() as conn:
            row = await _TRANSFER.fetchrow(conn, id=transfer_id)
        return None if row is None else _transfer_from_row(row)

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
            rows = await _EXPIRED_HOLDS.fetch(conn, test_now=self._test_now(), limit=limit)
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
        writer = _WriterConnection(self._pool)
        queue = self._commits.queue
        try:
            while True:
                await self._commits.wait()
                batch = queue[: self._max_batch]
                del queue[: self._max_batch]
                await self._run_batch(writer, batch)
        finally:
            await writer.release()

    async def _run_batch(self, writer: _WriterConnection, batch: list[_Request]) -> None:
        for attempt in range(_RETRIES):
            try:
                results = await self._commit_batch(writer, [r.operation for r in batch])
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

    async def _commit_batch(
        self, writer: _WriterConnection, operations: list[Operation]
    ) -> list[list[Transfer] | LedgerError]:
        named: set[uuid.UUID] = set()
        created_accounts: set[uuid.UUID] = set()
        for op in operations:
            if isinstance(op, CreateTransfers):
                for leg in op.legs:
                    named.add(leg.id)
                    created_accounts.add(leg.debit_account_id)
                    created_accounts.add(leg.credit_account_id)
            else:
                named.update(op.ids)
        conn = await writer.connection()
        async with conn.transaction():
            transfers = {
                r["id"]: _transfer_from_row(r)
                for r in await conn.fetch(_LOCK_TRANSFERS, list(named))
            }
            account_ids = set(created_accounts)
            for t in transfers.values():
                account_ids.add(t.debit_account_id)
                account_ids.add(t.credit_account_id)
            account_rows = list(await conn.fetch(_LOCK_ACCOUNTS, list(account_ids)))
            if self._clock is not None:
                now = self._clock()
            elif account_rows:
                now = max(r["now"] for r in account_rows)
            else:
                # No account: every operation fails for that, whatever the time.
                now = datetime.now(UTC)
            if self._clock is None and any(
                leg.credit_until is not None
                for op in operations
                if isinstance(op, CreateTransfers)
                for leg in op.legs
            ):
                # Read again now that the locks are held (the statement's clock may be from
                # before it waited for them): a deadline is judged against whoever held the
                # account before, such as the incoming-payment expiry worker.
                now = await conn.fetchval("SELECT clock_timestamp()")
            accounts = _accounts_from_rows(account_rows)
            outcome = apply_batch(operations, accounts, transfers, now)
            short = {
                r.account_id
                for r in outcome.results
                if isinstance(r, InsufficientBalance) and r.account_id is not None
            }
            if short:
                # Expired holds may be what made these accounts short: release them and apply
                # the batch again from the state in the database (nothing was written yet).
                expired = await conn.fetch(_LOCK_EXPIRED_HOLDS, list(short), now)
                if expired:
                    more = {r["debit_account_id"] for r in expired}
                    more |= {r["credit_account_id"] for r in expired}
                    more -= account_ids
                    if more:
                        account_rows += await conn.fetch(_LOCK_MORE_ACCOUNTS, list(more))
                    transfers = {
                        r["id"]: _transfer_from_row(r)
                        for r in await conn.fetch(_LOCK_TRANSFERS, list(named))
                    }
                    transfers.update((r["id"], _transfer_from_row(r)) for r in expired)
                    account_rows = list(
                        await conn.fetch(_LOCK_ACCOUNTS, [r["id"] for r in account_rows])
                    )
                    accounts = _accounts_from_rows(account_rows)
                    outcome = apply_batch(operations, accounts, transfers, now)
            if outcome.created or outcome.state_changed or outcome.accounts_changed:
                await conn.fetchrow(_WRITE, *_write_arguments(outcome))
        return outcome.results


def _accounts_from_rows(rows: Sequence[asyncpg.Record]) -> dict[uuid.UUID, Account]:
    return {
        row["id"]: Account(
            row["id"],
            row["asset_id"],
            AccountKind(row["kind"]),
            int(row["debits_posted"]),
            int(row["credits_posted"]),
            int(row["debits_pending"]),
            int(row["credits_pending"]),
        )
        for row in rows
    }


class _WriterConnection:
    """A writer's own connection, kept between batches and replaced after a failure."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._connection: Any = None

    async def connection(self) -> asyncpg.Connection:
        if self._connection is None:
            connection = await self._pool.acquire()
            # Generic plans of the batch statements ignore the arrays' sizes and the partial
            # indexes; custom plans are several times faster here.
            await connection.execute("SET plan_cache_mode = force_custom_plan")
            self._connection = connection
        return self._connection

    async def release(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await self._pool.release(connection)

    async def discard(self) -> None:
        """Close the connection (in an unknown state) and give its place back to the pool."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.terminate()
            with contextlib.suppress(Exception):
                await self._pool.release(connection)


def _write_arguments(outcome: Any) -> list[list[Any]]:
    created: list[Transfer] = outcome.created
    created_ids = {c.id for c in created}
    moved: list[Transfer] = [t for t in outcome.state_changed.values() if t.id not in created_ids]
    changed: list[Account] = list(outcome.accounts_changed.values())
    return [
        [t.id for t in created],
        [t.asset_id for t in created],
        [t.debit_account_id for t in created],
        [t.credit_account_id for t in created],
        [Decimal(t.amount) for t in created],
        [t.state.value for t in created],
        [t.expires_at for t in created],
        [t.group_id for t in created],
        [t.code for t in created],
        [t.id for t in moved],
        [t.state.value for t in moved],
        [a.id for a in changed],
        [Decimal(a.debits_posted) for a in changed],
        [Decimal(a.credits_posted) for a in changed],
        [Decimal(a.debits_pending) for a in changed],
        [Decimal(a.credits_pending) for a in changed],
    ]
