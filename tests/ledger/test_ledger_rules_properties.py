"""The ledger rules in memory: no sequence of operations breaks an invariant (hypothesis)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import example, given, settings
from hypothesis import strategies as st

from kiungo.ledger.accounts import Account, AccountKind
from kiungo.ledger.errors import LedgerError
from kiungo.ledger.rules import (
    CreateTransfers,
    Leg,
    Operation,
    PostTransfers,
    Transfer,
    TransferState,
    VoidTransfers,
    apply_batch,
)

ASSET = uuid.UUID(int=1)
OTHER_ASSET = uuid.UUID(int=2)
SETTLEMENT = uuid.UUID(int=10)
ACCOUNTS = [uuid.UUID(int=i) for i in range(11, 15)]
FOREIGN = uuid.UUID(int=20)
TRANSFER_IDS = [uuid.UUID(int=100 + i) for i in range(12)]
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def fresh_accounts() -> dict[uuid.UUID, Account]:
    accounts = {SETTLEMENT: Account(SETTLEMENT, ASSET, AccountKind.SETTLEMENT, 0, 0, 0, 0)}
    kinds = [AccountKind.PEER_LIQUIDITY, AccountKind.ASSET_LIQUIDITY, AccountKind.WALLET_ADDRESS]
    for i, account_id in enumerate(ACCOUNTS):
        accounts[account_id] = Account(account_id, ASSET, kinds[i % 3], 0, 0, 0, 0)
    accounts[FOREIGN] = Account(FOREIGN, OTHER_ASSET, AccountKind.PEER_LIQUIDITY, 0, 0, 0, 0)
    return accounts


any_account = st.sampled_from([SETTLEMENT, *ACCOUNTS, FOREIGN, uuid.UUID(int=99)])
legs = st.builds(
    Leg,
    st.sampled_from(TRANSFER_IDS),
    any_account,
    any_account,
    st.integers(min_value=-1, max_value=300),
)
operations: st.SearchStrategy[Operation] = st.one_of(
    st.builds(
        CreateTransfers,
        st.lists(legs, min_size=1, max_size=3).map(tuple),
        st.sampled_from([None, timedelta(seconds=5), timedelta(seconds=-1)]),
    ),
    st.builds(PostTransfers, st.lists(st.sampled_from(TRANSFER_IDS), max_size=2).map(tuple)),
    st.builds(VoidTransfers, st.lists(st.sampled_from(TRANSFER_IDS), max_size=2).map(tuple)),
)


def check_invariants(
    accounts: dict[uuid.UUID, Account], transfers: dict[uuid.UUID, Transfer]
) -> None:
    for asset in (ASSET, OTHER_ASSET):
        mine = [a for a in accounts.values() if a.asset_id == asset]
        assert sum(a.debits_posted for a in mine) == sum(a.credits_posted for a in mine)
        assert sum(a.debits_pending for a in mine) == sum(a.credits_pending for a in mine)
    for account in accounts.values():
        assert min(account.debits_pending, account.credits_pending) >= 0
        if account.kind.debits_must_not_exceed_credits:
            assert account.debits_posted + account.debits_pending <= account.credits_posted
        else:
            assert account.credits_posted + account.credits_pending <= account.debits_posted
        posted_debits = sum(
            t.amount
            for t in transfers.values()
            if t.debit_account_id == account.id and t.state is TransferState.POSTED
        )
        pending_debits = sum(
            t.amount
            for t in transfers.values()
            if t.debit_account_id == account.id and t.state is TransferState.PENDING
        )
        assert account.debits_posted == posted_debits
        assert account.debits_pending == pending_debits
    groups: dict[uuid.UUID, set[TransferState]] = {}
    for t in transfers.values():
        if t.group_id is not None:
            groups.setdefault(t.group_id, set()).add(t.state)
    assert all(len(states) == 1 for states in groups.values())


@settings(max_examples=400, deadline=None)
@example(  # once found: posting one leg of two left the other pending
    [
        [
            CreateTransfers(
                (
                    Leg(TRANSFER_IDS[0], SETTLEMENT, ACCOUNTS[0], 1),
                    Leg(TRANSFER_IDS[1], SETTLEMENT, ACCOUNTS[0], 1),
                ),
                timedelta(seconds=5),
            ),
            PostTransfers((TRANSFER_IDS[0],)),
        ]
    ],
    0,
)
@given(
    st.lists(st.lists(operations, min_size=1, max_size=6), min_size=1, max_size=5),
    st.integers(min_value=0, max_value=500),
)
def test_no_batch_sequence_breaks_an_invariant(
    batches: list[list[Operation]], funding: int
) -> None:
    accounts = fresh_accounts()
    transfers: dict[uuid.UUID, Transfer] = {}
    if funding:
        for account_id in ACCOUNTS[:2]:
            deposit = CreateTransfers((Leg(uuid.uuid4(), SETTLEMENT, account_id, funding),))
            apply_batch([deposit], accounts, transfers, NOW)
    now = NOW
    for batch in batches:
        before = {k: a.copy() for k, a in accounts.items()}
        outcome = apply_batch(batch, accounts, transfers, now)
        assert len(outcome.results) == len(batch)
        for account_id, account in accounts.items():
            if account_id not in outcome.accounts_changed:
                assert account == before[account_id]
        check_invariants(accounts, transfers)
        now += timedelta(seconds=3)  # some holds expire between batches


def test_failed_operations_change_nothing() -> None:
    accounts = fresh_accounts()
    transfers: dict[uuid.UUID, Transfer] = {}
    overdraw = CreateTransfers(
        (
            Leg(TRANSFER_IDS[0], SETTLEMENT, ACCOUNTS[0], 5),
            Leg(TRANSFER_IDS[1], ACCOUNTS[1], ACCOUNTS[2], 1),
        )
    )
    outcome = apply_batch([overdraw], accounts, transfers, NOW)
    assert isinstance(outcome.results[0], LedgerError)
    assert transfers == {}
    assert outcome.accounts_changed == {}
    assert accounts == fresh_accounts()
