"""Ledger invariants checked on a live database (``kiungo ledger check``).

Each check is one SQL query returning the rows that break it; an empty result means it holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg

__all__ = ["CHECKS", "CheckResult", "run_checks"]


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    description: str
    violations: list[dict[str, object]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations


CHECKS: tuple[tuple[str, str, str], ...] = (
    (
        "ledger_balances",
        "per asset, posted debits equal posted credits and pending debits equal pending credits",
        """
        SELECT asset_id, sum(debits_posted) AS debits_posted,
               sum(credits_posted) AS credits_posted, sum(debits_pending) AS debits_pending,
               sum(credits_pending) AS credits_pending
        FROM ledger_accounts GROUP BY asset_id
        HAVING sum(debits_posted) <> sum(credits_posted)
            OR sum(debits_pending) <> sum(credits_pending)
        """,
    ),
    (
        "account_balances_match_transfers",
        "every account's balances equal the sums of its transfers",
        """
        WITH sums AS (
            SELECT a.id,
                   COALESCE(sum(t.amount) FILTER (WHERE t.debit_account_id = a.id
                                                  AND t.state = 'POSTED'), 0) AS dp,
                   COALESCE(sum(t.amount) FILTER (WHERE t.credit_account_id = a.id
                                                  AND t.state = 'POSTED'), 0) AS cp,
                   COALESCE(sum(t.amount) FILTER (WHERE t.debit_account_id = a.id
                                                  AND t.state = 'PENDING'), 0) AS dq,
                   COALESCE(sum(t.amount) FILTER (WHERE t.credit_account_id = a.id
                                                  AND t.state = 'PENDING'), 0) AS cq
            FROM ledger_accounts a
            LEFT JOIN ledger_transfers t
              ON t.debit_account_id = a.id OR t.credit_account_id = a.id
            GROUP BY a.id
        )
        SELECT a.id AS account_id, a.debits_posted, s.dp AS transfers_debits_posted,
               a.credits_posted, s.cp AS transfers_credits_posted,
               a.debits_pending, s.dq AS transfers_debits_pending,
               a.credits_pending, s.cq AS transfers_credits_pending
        FROM ledger_accounts a JOIN sums s ON s.id = a.id
        WHERE a.debits_posted <> s.dp OR a.credits_posted <> s.cp
           OR a.debits_pending <> s.dq OR a.credits_pending <> s.cq
        """,
    ),
    (
        "account_flags",
        "no liquidity account debited beyond its credits, no settlement account credited "
        "beyond its debits",
        """
        SELECT id AS account_id, kind, debits_posted, credits_posted, debits_pending,
               credits_pending
        FROM ledger_accounts
        WHERE (kind <> 'SETTLEMENT' AND debits_posted + debits_pending > credits_posted)
           OR (kind = 'SETTLEMENT' AND credits_posted + credits_pending > debits_posted)
        """,
    ),
    (
        "transfer_legs_agree",
        "the legs of a multi-leg transfer are all in one state",
        """
        SELECT group_id, array_agg(DISTINCT state) AS states
        FROM ledger_transfers WHERE group_id IS NOT NULL
        GROUP BY group_id HAVING count(DISTINCT state) > 1
        """,
    ),
    (
        "transfer_assets",
        "both accounts of every transfer exist and hold the transfer's asset",
        """
        SELECT t.id AS transfer_id
        FROM ledger_transfers t
        LEFT JOIN ledger_accounts d ON d.id = t.debit_account_id
        LEFT JOIN ledger_accounts c ON c.id = t.credit_account_id
        WHERE d.id IS NULL OR c.id IS NULL
           OR d.asset_id <> t.asset_id OR c.asset_id <> t.asset_id
        """,
    ),
)


async def run_checks(conn: asyncpg.Connection) -> list[CheckResult]:
    """Run every check in one repeatable-read snapshot so they see one consistent state."""
    results = []
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        for name, description, query in CHECKS:
            rows = await conn.fetch(query)
            results.append(
                CheckResult(name, description, [{k: _plain(v) for k, v in r.items()} for r in rows])
            )
    return results


def _plain(value: object) -> object:
    if isinstance(value, int | str | bool) or value is None:
        return value
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return str(value)
