"""The Postgres ledger's batch commit (DESIGN §4): one batch of operations in one transaction.

A writer of :class:`kiungo.ledger.Ledger` takes whatever has queued up while the previous
batch was committing and applies it in a single transaction:

1. lock the transfers the batch names and the expired holds on its accounts (id order);
2. lock every account involved (id order, so replicas never deadlock each other);
3. apply the operations in arrival order in memory (:mod:`kiungo.ledger.rules`);
4. write new transfers, changed transfer states and each changed account once, in one statement.

Each caller gets its own result. Throughput on a hot account therefore grows with the batch
size instead of being capped by one row lock per transfer, and all money stays in Postgres.
The batch's ``now`` is the database's clock, read with its account locks
(:mod:`kiungo.ledger.service`'s "Time"); its statements are :mod:`kiungo.ledger.batch_sql`.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg

from kiungo.ledger import batch_sql
from kiungo.ledger.batch_sql import accounts_from_rows, transfer_from_row, write_arguments
from kiungo.ledger.errors import InsufficientBalance, LedgerError
from kiungo.ledger.rules import CreateTransfers, Operation, Transfer, apply_batch

__all__ = ["WriterConnection", "commit_batch"]


async def commit_batch(
    writer: WriterConnection,
    operations: list[Operation],
    clock: Callable[[], datetime] | None,
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
            r["id"]: transfer_from_row(r)
            for r in await conn.fetch(batch_sql.LOCK_TRANSFERS, list(named))
        }
        account_ids = set(created_accounts)
        for t in transfers.values():
            account_ids.add(t.debit_account_id)
            account_ids.add(t.credit_account_id)
        account_rows = list(await conn.fetch(batch_sql.LOCK_ACCOUNTS, list(account_ids)))
        if clock is not None:
            now = clock()
        elif account_rows:
            now = max(r["now"] for r in account_rows)
        else:
            # No account: every operation fails for that, whatever the time.
            now = datetime.now(UTC)
        if clock is None and any(
            leg.credit_until is not None
            for op in operations
            if isinstance(op, CreateTransfers)
            for leg in op.legs
        ):
            # Read again now that the locks are held (the statement's clock may be from
            # before it waited for them): a deadline is judged against whoever held the
            # account before, such as the incoming-payment expiry worker.
            now = await conn.fetchval("SELECT clock_timestamp()")
        accounts = accounts_from_rows(account_rows)
        outcome = apply_batch(operations, accounts, transfers, now)
        short = {
            r.account_id
            for r in outcome.results
            if isinstance(r, InsufficientBalance) and r.account_id is not None
        }
        if short:
            # Expired holds may be what made these accounts short: release them and apply
            # the batch again from the state in the database (nothing was written yet).
            expired = await conn.fetch(batch_sql.LOCK_EXPIRED_HOLDS, list(short), now)
            if expired:
                more = {r["debit_account_id"] for r in expired}
                more |= {r["credit_account_id"] for r in expired}
                more -= account_ids
                if more:
                    account_rows += await conn.fetch(batch_sql.LOCK_MORE_ACCOUNTS, list(more))
                transfers = {
                    r["id"]: transfer_from_row(r)
                    for r in await conn.fetch(batch_sql.LOCK_TRANSFERS, list(named))
                }
                transfers.update((r["id"], transfer_from_row(r)) for r in expired)
                account_rows = list(
                    await conn.fetch(batch_sql.LOCK_ACCOUNTS, [r["id"] for r in account_rows])
                )
                accounts = accounts_from_rows(account_rows)
                outcome = apply_batch(operations, accounts, transfers, now)
        if outcome.created or outcome.state_changed or outcome.accounts_changed:
            await conn.fetchrow(batch_sql.WRITE, *write_arguments(outcome))
    return outcome.results


class WriterConnection:
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
