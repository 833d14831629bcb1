"""The Postgres writer's batch as SQL (:mod:`kiungo.ledger.batch_commit`), and its rows.

The batch's five statements (the locks of steps 1 and 2, the write of step 4) are raw SQL: the
measured hot path, arrays unnested into one round trip per batch, checked against the models by
tests/models. Every other statement of the ledger is built from the models
(:mod:`kiungo.ledger.service_sql`). The row mapping turns their rows into the rules' records
(:mod:`kiungo.ledger.rules`) and a batch's outcome into :data:`WRITE`'s arrays.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import asyncpg

from kiungo.ledger.accounts import Account, AccountKind
from kiungo.ledger.rules import Transfer, TransferState

__all__ = [
    "LOCK_ACCOUNTS",
    "LOCK_EXPIRED_HOLDS",
    "LOCK_MORE_ACCOUNTS",
    "LOCK_TRANSFERS",
    "WRITE",
    "accounts_from_rows",
    "transfer_from_row",
    "write_arguments",
]

# The named transfers, with every leg of the multi-leg ones among them (a post or void must
# name them all, which the rules can only tell with all of them loaded).
LOCK_TRANSFERS = """
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
LOCK_EXPIRED_HOLDS = """
SELECT id, asset_id, debit_account_id, credit_account_id, amount, state, expires_at, group_id,
       code
FROM ledger_transfers
WHERE state = 'PENDING' AND expires_at <= $2 AND group_id IS NULL
  AND (debit_account_id = ANY($1::uuid[]) OR credit_account_id = ANY($1::uuid[]))
ORDER BY id
FOR UPDATE SKIP LOCKED
"""

# With the database's clock: the batch's ``now`` (kiungo.ledger.service's "Time"), read
# with the locks instead of in a statement of its own.
LOCK_ACCOUNTS = """
SELECT id, asset_id, kind, debits_posted, credits_posted, debits_pending, credits_pending,
       clock_timestamp() AS now
FROM ledger_accounts
WHERE id = ANY($1::uuid[])
ORDER BY id
FOR UPDATE
"""

LOCK_MORE_ACCOUNTS = """
SELECT id, asset_id, kind, debits_posted, credits_posted, debits_pending, credits_pending
FROM ledger_accounts
WHERE id = ANY($1::uuid[])
ORDER BY id
FOR UPDATE SKIP LOCKED
"""

WRITE = """
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


def transfer_from_row(row: asyncpg.Record) -> Transfer:
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


def accounts_from_rows(rows: Sequence[asyncpg.Record]) -> dict[uuid.UUID, Account]:
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


def write_arguments(outcome: Any) -> list[list[Any]]:
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
