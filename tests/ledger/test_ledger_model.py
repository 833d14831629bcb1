"""Each backend against the rules' in-memory model (hypothesis): random operations, sent one
at a time to the real ledger (Postgres, or a TigerBeetle server of the test's own) and applied
to :func:`kiungo.ledger.rules.apply_batch`, succeed or fail alike and leave the same balances
and transfer states. (Which error a doubly wrong operation reports may differ: the backends
check in different orders.)"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from tests.ledger.schema import create_asset
from tests.ledger.test_ledger_rules_properties import (
    ACCOUNTS,
    FOREIGN,
    SETTLEMENT,
    TRANSFER_IDS,
    fresh_accounts,
)

from kiungo.ledger import AccountKind, Ledger, LedgerError
from kiungo.ledger.rules import (
    CreateTransfers,
    Leg,
    Operation,
    PostTransfers,
    Transfer,
    VoidTransfers,
    apply_batch,
)

UNKNOWN = uuid.UUID(int=99)
NOW = datetime(2026, 1, 1, tzinfo=UTC)

# Mostly accounts and amounts that can succeed, so that holds, posts and voids happen.
any_account = st.sampled_from([SETTLEMENT, *ACCOUNTS] * 3 + [FOREIGN, UNKNOWN])
legs = st.builds(
    Leg,
    st.sampled_from(TRANSFER_IDS),
    any_account,
    any_account,
    st.one_of(st.integers(min_value=1, max_value=60), st.integers(min_value=-1, max_value=300)),
)
# Holds that outlive the example: time does not pass between the model's operations.
operations: st.SearchStrategy[Operation] = st.one_of(
    st.builds(
        CreateTransfers,
        st.lists(legs, min_size=1, max_size=3).map(tuple),
        st.sampled_from([None, timedelta(minutes=10), timedelta(seconds=-1)]),
    ),
    st.builds(PostTransfers, st.lists(st.sampled_from(TRANSFER_IDS), max_size=2).map(tuple)),
    st.builds(VoidTransfers, st.lists(st.sampled_from(TRANSFER_IDS), max_size=2).map(tuple)),
)


class Translation:
    """The model's fixed ids → this example's own ids in the real ledger."""

    def __init__(self, accounts: dict[uuid.UUID, uuid.UUID]) -> None:
        self.accounts = accounts
        self.transfers = {t: uuid.uuid4() for t in TRANSFER_IDS}

    def account(self, model_id: uuid.UUID) -> uuid.UUID:
        return self.accounts.get(model_id, model_id)

    def operation(self, op: Operation) -> Operation:
        if isinstance(op, CreateTransfers):
            return CreateTransfers(
                tuple(
                    Leg(
                        self.transfers[leg.id],
                        self.account(leg.debit_account_id),
                        self.account(leg.credit_account_id),
                        leg.amount,
                    )
                    for leg in op.legs
                ),
                op.timeout,
            )
        ids = tuple(self.transfers[i] for i in op.ids)
        return PostTransfers(ids) if isinstance(op, PostTransfers) else VoidTransfers(ids)


async def real_accounts(ledger: Ledger, pool: asyncpg.Pool) -> dict[uuid.UUID, uuid.UUID]:
    # Assets of the example's own (one code and scale is one asset).
    usd = await create_asset(pool, uuid.uuid4().hex[:8].upper(), 2)
    eur = await create_asset(pool, uuid.uuid4().hex[:8].upper(), 2)
    kinds = [AccountKind.PEER_LIQUIDITY, AccountKind.ASSET_LIQUIDITY, AccountKind.WALLET_ADDRESS]
    mapping = {}
    for i, account_id in enumerate(ACCOUNTS):
        mapping[account_id] = await ledger.ensure_account(kinds[i % 3], uuid.uuid4(), usd)
    mapping[SETTLEMENT] = await ledger.ensure_account(AccountKind.SETTLEMENT, usd, usd)
    mapping[FOREIGN] = await ledger.ensure_account(AccountKind.PEER_LIQUIDITY, uuid.uuid4(), eur)
    return mapping


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@example(  # posting one leg of two
    [
        CreateTransfers(
            (
                Leg(TRANSFER_IDS[0], SETTLEMENT, ACCOUNTS[0], 1),
                Leg(TRANSFER_IDS[1], SETTLEMENT, ACCOUNTS[0], 1),
            ),
            timedelta(minutes=10),
        ),
        PostTransfers((TRANSFER_IDS[0],)),
        VoidTransfers((TRANSFER_IDS[1], TRANSFER_IDS[0])),
        PostTransfers((TRANSFER_IDS[1],)),
    ],
    0,
)
@example(  # a request whose two legs share the id of a transfer that exists: refused on both
    [
        CreateTransfers(
            (
                Leg(TRANSFER_IDS[0], SETTLEMENT, ACCOUNTS[0], 1),
                Leg(TRANSFER_IDS[1], SETTLEMENT, ACCOUNTS[0], 1),
            ),
            None,
        ),
        CreateTransfers(
            (
                Leg(TRANSFER_IDS[0], SETTLEMENT, ACCOUNTS[0], 1),
                Leg(TRANSFER_IDS[0], SETTLEMENT, ACCOUNTS[0], 1),
            ),
            None,
        ),
    ],
    0,
)
@example(  # one leg of a group created again alone: a replay (TigerBeetle refused it once)
    [
        CreateTransfers(
            (
                Leg(TRANSFER_IDS[0], SETTLEMENT, ACCOUNTS[0], 1),
                Leg(TRANSFER_IDS[1], SETTLEMENT, ACCOUNTS[0], 1),
            ),
            None,
        ),
        CreateTransfers((Leg(TRANSFER_IDS[0], SETTLEMENT, ACCOUNTS[0], 1),), None),
    ],
    0,
)
@given(
    st.lists(operations, min_size=1, max_size=12),
    st.integers(min_value=0, max_value=500),
)
async def test_the_ledger_agrees_with_the_rules_model(
    ledger: Ledger, pool: asyncpg.Pool, ops: list[Operation], funding: int
) -> None:
    ids = Translation(await real_accounts(ledger, pool))
    model = fresh_accounts()
    transfers: dict[uuid.UUID, Transfer] = {}
    if funding:
        for account_id in ACCOUNTS[:2]:
            deposit = CreateTransfers((Leg(uuid.uuid4(), SETTLEMENT, account_id, funding),))
            apply_batch([deposit], model, transfers, NOW)
            await ledger.deposit(uuid.uuid4(), ids.account(account_id), funding)
    for op in ops:
        [expected] = apply_batch([op], model, transfers, NOW).results
        try:
            await ledger.submit(ids.operation(op))
        except LedgerError as error:
            assert isinstance(expected, LedgerError), (op, error)
        else:
            assert not isinstance(expected, LedgerError), (op, expected)
    for model_id, account in model.items():
        balance = await ledger.balance(ids.account(model_id))
        assert (
            balance.debits_posted,
            balance.credits_posted,
            balance.debits_pending,
            balance.credits_pending,
        ) == (
            account.debits_posted,
            account.credits_posted,
            account.debits_pending,
            account.credits_pending,
        ), model_id
    for model_id, expected_transfer in transfers.items():
        if model_id not in ids.transfers:
            continue  # a deposit's
        real = await ledger.transfer(ids.transfers[model_id])
        assert real is not None and real.state is expected_transfer.state, model_id
    assert [r for r in await ledger.check() if not r.ok] == []
