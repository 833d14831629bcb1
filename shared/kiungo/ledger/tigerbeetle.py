"""The ledger on a TigerBeetle cluster: the same interface and semantics as :class:`Ledger`,
with balances and transfers kept (and their rules enforced) by TigerBeetle.

**What lives where.** Postgres keeps ``ledger_accounts`` rows as the account ↔ resource map
(id, asset, kind, owner), so the backend's joins on owners keep working. Balances and transfers
live only in TigerBeetle; reads go through the ledger (:meth:`balance`, :meth:`balances`,
:meth:`history`), and the balance columns of ``ledger_accounts`` are a copy that
:meth:`sync_balances` refreshes for the backend's SQL that joins them with its own rows.

**Where each part lives.** Here: the ledger's lifecycle, its accounts, creates (with their
tries and credit limits), posts and voids. The reads (balances, transfers, history,
``kiungo ledger check``) and the requests that reads and writes both make (bounded in time,
lookups in chunks, queries in pages) are kiungo.ledger.tigerbeetle_reads
(:class:`TigerBeetleReads`, the base class); the group commit that sends creates, posts and
voids is kiungo.ledger.tigerbeetle_writer (:class:`TigerBeetleWriter`, between the two). How
accounts and transfers are TigerBeetle records (codes, flags, ``user_data``) is
kiungo.ledger.tigerbeetle_model; the ids of tries, posts, voids and limit accounts are
kiungo.ledger.tigerbeetle_ids; TigerBeetle's result statuses as ledger errors are
kiungo.ledger.tigerbeetle_errors; requests packed as the wire's rows are
kiungo.ledger.tigerbeetle_wire.

**Transfers.** Several legs are one linked chain. A create refused with ``id_already_failed``
(TigerBeetle keeps such an id as failed for good, Kiungo's callers retry under it) is sent
again under the next try's ids (:func:`attempt_id`, up to eight tries). A hold is a pending
transfer with TigerBeetle's ``timeout`` (whole seconds, rounded up): TigerBeetle expires it on
its own clock, so :meth:`expire_pending` has nothing to do. The post and void of a pending
transfer have ids derived from its id (:func:`post_id`, :func:`void_id`), so posting twice is
TigerBeetle's ``exists`` (:class:`AlreadyPosted`) and nothing else can post it under another id.

**Credit limits** (an incoming payment's amount) are enforced by TigerBeetle, not read and then
written here: the limited account D has a control account (``debits_must_not_exceed_credits``)
credited once with the limit from a per-asset sink; every leg crediting D with a limit carries
a linked leg of the same amount debiting the control account, pending or posted with it and
posted, voided or expired together. The control account refuses (``exceeds_credits``) the leg
that would take D's limited credits, posted and pending, beyond the limit. The limit is the
one given with the first limited leg (an incoming payment's amount does not change).

**Time.** TigerBeetle's clock decides holds' timeouts. ``credit_until`` (an incoming payment's
expiry) is compared here with this process's clock before the request is sent: the one rule
not enforced inside TigerBeetle (README, "TigerBeetle").

**Group commit.** Concurrent operations queue; a writer sends everything queued (up to the
request's size) as one ``create_transfers`` request, each operation's chain contiguous, and
gives each caller its own result (kiungo.ledger.tigerbeetle_writer).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta

import asyncpg
import tigerbeetle as tb
from sqlalchemy import bindparam, select

from kiungo.ilp.oer import MAX_UINT64
from kiungo.ledger import errors
from kiungo.ledger.accounts import AccountKind
from kiungo.ledger.group_commit import GroupCommit
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
from kiungo.ledger.service import account_id_for
from kiungo.ledger.tigerbeetle_errors import create_error, resolve_error
from kiungo.ledger.tigerbeetle_ids import (
    ATTEMPTS,
    attempt_id,
    control_id,
    funding_id,
    limit_leg_id,
    post_id,
    sink_id,
    void_id,
)
from kiungo.ledger.tigerbeetle_model import (
    ATTEMPT_SHIFT,
    CONTROL_CODE,
    HAS_LIMIT_LEG,
    LIMIT_CODE,
    SINK_CODE,
    TRANSFER_CODES,
    copy_transfer,
    expiry,
    from_tb,
    tb_account,
)
from kiungo.ledger.tigerbeetle_reads import REQUEST_TIMEOUT, TransferMeta
from kiungo.ledger.tigerbeetle_wire import Event, PackedClient
from kiungo.ledger.tigerbeetle_writer import Replay, ReplayError, TigerBeetleWriter
from kiungo.models import Asset
from kiungo.models.sql import Statement, table

__all__ = ["TigerBeetleLedger"]

_S = tb.CreateTransferStatus
_F = tb.TransferFlags
_METADATA_CACHE = 65536

_assets = table(Asset)

_LEDGER_NUMBER = Statement(select(_assets.c.ledger).where(_assets.c.id == bindparam("asset_id")))


class TigerBeetleLedger(TigerBeetleWriter):
    """:class:`Ledger`'s interface on a TigerBeetle cluster (module docstring).

    It subclasses :class:`Ledger` (through :class:`TigerBeetleWriter` and
    :class:`TigerBeetleReads`) so that everything typed ``Ledger`` takes it, and shares
    with it only the Postgres account map (``ledger_accounts`` rows, looked up and made in the
    same way), :meth:`sync_balances` (which copies :meth:`balances` into that map) and
    ``async with``; every other public method is its own. ``pool`` reaches the Postgres
    account map.
    """

    balances_are_a_copy = True

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        cluster_id: int,
        addresses: str,
        max_batch: int = 8000,
        writers: int = 2,
    ) -> None:
        self._pool = pool
        self._cluster_id = cluster_id
        self._addresses = addresses
        self._max_batch = max_batch
        # Ids per lookup and results per query: TigerBeetle's reply must fit one message
        # (lookups of 3,000 ids refused by a default server here, 2,000 taken); learnt when refused.
        self._max_lookup = 8000
        self._client = None
        self._sends = GroupCommit("tigerbeetle-writer", writers)
        self._asset_of: dict[uuid.UUID, uuid.UUID] = {}
        self._kind_of: dict[uuid.UUID, AccountKind] = {}
        self._ledger_of: dict[uuid.UUID, int] = {}
        self._known_accounts: set[uuid.UUID] = set()
        self._funded: dict[uuid.UUID, int] = {}
        self._fundings: dict[tuple[uuid.UUID, int], asyncio.Future[None]] = {}
        self._meta = OrderedDict()
        self.batches = 0
        self.operations = 0

    @property
    def addresses(self) -> str:
        return self._addresses

    def start(self) -> None:
        if not self._sends.running:
            self._client = PackedClient(self._cluster_id, self._addresses)
            self._sends.start(self._send_loop)

    async def close(self) -> None:
        await self._sends.close()
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.close(), REQUEST_TIMEOUT)

    def readiness_probe(self) -> Callable[[], Awaitable[None]] | None:
        return self._ping

    async def _ping(self) -> None:
        # A lookup of an id no account has: one round trip to the cluster, nothing read.
        await self._call(self.client.lookup_accounts([0]))

    # -- accounts ------------------------------------------------------------------------------

    async def ensure_account(
        self, kind: AccountKind, owner_id: uuid.UUID, asset_id: uuid.UUID
    ) -> uuid.UUID:
        account_id = account_id_for(kind, owner_id)
        if account_id in self._known_accounts:
            return account_id
        # The map row first: an account in TigerBeetle is never one Kiungo cannot name.
        mapped = await self._map_accounts(kind, owner_id, asset_id)
        ledger = await self._ledger_number(asset_id)
        accounts = [tb_account(a, asset_id, k, ledger) for a, k in mapped.items()]
        results = await self._call(self.client.create_accounts(accounts))
        for account, result in zip(accounts, results, strict=True):
            if result.status not in (tb.CreateAccountStatus.CREATED, tb.CreateAccountStatus.EXISTS):
                raise errors.LedgerError(
                    f"TigerBeetle refused account {uuid.UUID(int=account.id)}: {result.status.name}"
                )
        for mapped_id, mapped_kind in mapped.items():
            self._asset_of[mapped_id] = asset_id
            self._kind_of[mapped_id] = mapped_kind
            self._known_accounts.add(mapped_id)
        return account_id

    async def _ledger_number(self, asset_id: uuid.UUID) -> int:
        """The asset's TigerBeetle ledger: its ``assets.ledger`` (module docstring)."""
        number = self._ledger_of.get(asset_id)
        if number is None:
            async with self._pool.acquire() as conn:
                number = await _LEDGER_NUMBER.fetchval(conn, asset_id=asset_id)
            if number is None:
                raise errors.UnknownAccount(f"asset {asset_id} does not exist")
            self._ledger_of[asset_id] = number
        return number

    # -- transfers -----------------------------------------------------------------------------

    async def submit(self, operation: Operation) -> list[Transfer]:
        if isinstance(operation, CreateTransfers):
            return await self._create(operation)
        if isinstance(operation, ExpireTransfers):
            # TigerBeetle releases holds past their timeout itself.
            return [t for t in [await self.transfer(i) for i in operation.ids] if t is not None]
        return await self._resolve(operation)

    async def expire_pending(self, limit: int = 1000) -> int:
        """Nothing to sweep: TigerBeetle expires pending transfers on its own clock."""
        return 0

    async def _create(self, op: CreateTransfers) -> list[Transfer]:
        legs = op.legs
        if not legs:
            raise errors.InvalidAmount("a transfer needs at least one leg")
        pending = op.timeout is not None
        timeout = 0
        if op.timeout is not None:
            if op.timeout <= timedelta(0):
                raise errors.InvalidAmount("a pending transfer's timeout must be positive")
            timeout = max(1, math.ceil(op.timeout.total_seconds()))
        if len({leg.id for leg in legs}) != len(legs):
            raise errors.TransferExists("two legs share one id")
        code = TRANSFER_CODES.get(op.code)
        if code is None:
            raise errors.InvalidAmount(f"unknown transfer code {op.code!r}")
        group = legs[0].id.int
        flags = int(_F.PENDING) if pending else 0
        assets: list[uuid.UUID] = []
        ledgers: list[int] = []
        for leg in legs:
            if not 0 < leg.amount <= MAX_UINT64:
                raise errors.InvalidAmount(f"amount {leg.amount} is not between 1 and 2^64-1")
            if leg.debit_account_id == leg.credit_account_id:
                raise errors.SameAccounts("a transfer cannot debit and credit one account")
            # The caches first: a coroutine per lookup was a visible share of a packet's CPU.
            debit_asset = (
                self._asset_of.get(leg.debit_account_id)
                or (await self._account_facts(leg.debit_account_id))[0]
            )
            credit_asset = (
                self._asset_of.get(leg.credit_account_id)
                or (await self._account_facts(leg.credit_account_id))[0]
            )
            if debit_asset != credit_asset:
                raise errors.DifferentAssets("both accounts of a leg must hold the same asset")
            assets.append(debit_asset)
            if leg.credit_until is not None and datetime.now(UTC) >= leg.credit_until:
                raise errors.CreditLimitExceeded(
                    f"account {leg.credit_account_id} takes nothing after {leg.credit_until}"
                )
            ledgers.append(
                self._ledger_of.get(debit_asset) or await self._ledger_number(debit_asset)
            )
            if leg.credit_limit is not None:
                await self._fund_control(leg.credit_account_id, debit_asset, leg.credit_limit)

        def events_of(attempt: int) -> tuple[list[Event], list[tuple[Leg, str]]]:
            events: list[Event] = []
            owners: list[tuple[Leg, str]] = []  # for each event, its leg and role
            for leg, asset_id, ledger in zip(legs, assets, ledgers, strict=True):
                limited = leg.credit_limit is not None
                tb_id = attempt_id(leg.id.int, attempt)
                events.append(
                    Event(
                        id=tb_id,
                        debit_account_id=leg.debit_account_id.int,
                        credit_account_id=leg.credit_account_id.int,
                        amount=leg.amount,
                        pending_id=0,
                        user_data_128=group,
                        user_data_64=(HAS_LIMIT_LEG if limited else 0) | attempt << ATTEMPT_SHIFT,
                        user_data_32=len(legs),
                        timeout=timeout,
                        ledger=ledger,
                        code=code,
                        flags=flags,
                    )
                )
                owners.append((leg, "leg"))
                if limited:
                    events.append(
                        Event(
                            id=limit_leg_id(tb_id),
                            debit_account_id=control_id(leg.credit_account_id),
                            credit_account_id=sink_id(asset_id),
                            amount=leg.amount,
                            pending_id=0,
                            user_data_128=tb_id,
                            user_data_64=0,
                            user_data_32=0,
                            timeout=timeout,
                            ledger=ledger,
                            code=LIMIT_CODE,
                            flags=flags,
                        )
                    )
                    owners.append((leg, "limit"))
            return events, owners

        def interpreter(
            events: list[Event], owners: list[tuple[Leg, str]], attempt: int
        ) -> Callable[[list[tb.CreateTransferStatus], list[int]], list[Transfer] | Exception]:
            def interpret(
                statuses: list[tb.CreateTransferStatus], timestamps: list[int]
            ) -> list[Transfer] | Exception:
                if all(s is _S.CREATED for s in statuses):
                    created: list[Transfer] = []
                    for event, (leg, role), timestamp in zip(
                        events, owners, timestamps, strict=True
                    ):
                        if role != "leg":
                            continue
                        transfer = Transfer(
                            leg.id,
                            assets[len(created)],
                            leg.debit_account_id,
                            leg.credit_account_id,
                            leg.amount,
                            TransferState.PENDING if pending else TransferState.POSTED,
                            expiry(timestamp, timeout) if pending else None,
                            legs[0].id if len(legs) > 1 else None,
                            op.code,
                        )
                        self._remember(transfer, event.id, len(legs), bool(event.user_data_64 & 1))
                        created.append(transfer)
                    return created
                if _S.ID_ALREADY_FAILED in statuses:
                    return _NextAttempt()
                index, status = next(
                    (i, s)
                    for i, s in enumerate(statuses)
                    if s not in (_S.CREATED, _S.LINKED_EVENT_FAILED)
                )
                leg, role = owners[index]
                if index == 0 and status.name.startswith("EXISTS"):
                    # Sent again (a retry's hold has less time left, or one leg of a group
                    # alone, whose flags and leg count differ): the same transfer if its
                    # accounts, amount and phase are, as on Postgres (rules._create).
                    return ReplayError(Replay(legs, pending, op.code, attempt))
                return create_error(status, leg, role, self._kind_of)

            return interpret

        # TigerBeetle keeps the id of a transfer refused for a balance as failed for good;
        # Kiungo's callers retry such a transfer under its id (nothing happened, as on
        # Postgres), so each try after such a refusal has ids of its own (module docstring).
        for attempt in range(ATTEMPTS):
            events, owners = events_of(attempt)
            try:
                return await self._enqueue(events, interpreter(events, owners, attempt))
            except _NextAttempt:
                continue
        raise errors.TransferExists(
            f"transfer {legs[0].id} was refused {ATTEMPTS} times: use a new id"
        )

    async def _fund_control(self, account_id: uuid.UUID, asset_id: uuid.UUID, limit: int) -> None:
        """Open ``account_id``'s limit control account with ``limit`` (once; module docstring)."""
        if self._funded.get(account_id) == limit:
            return
        # Concurrent first packets of one payment share one funding request.
        key = (account_id, limit)
        funding = self._fundings.get(key)
        if funding is None:
            funding = asyncio.ensure_future(self._open_control(account_id, asset_id, limit))
            self._fundings[key] = funding
            funding.add_done_callback(lambda _: self._fundings.pop(key, None))
        await asyncio.shield(funding)

    async def _open_control(self, account_id: uuid.UUID, asset_id: uuid.UUID, limit: int) -> None:
        ledger = await self._ledger_number(asset_id)
        accounts = [
            tb.Account(id=sink_id(asset_id), ledger=ledger, code=SINK_CODE),
            tb.Account(
                id=control_id(account_id),
                user_data_128=account_id.int,
                ledger=ledger,
                code=CONTROL_CODE,
                flags=tb.AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS,
            ),
        ]
        results = await self._call(self.client.create_accounts(accounts))
        for result in results:
            if result.status not in (tb.CreateAccountStatus.CREATED, tb.CreateAccountStatus.EXISTS):
                raise errors.LedgerError(
                    f"TigerBeetle refused a control account: {result.status.name}"
                )
        funding = tb.Transfer(
            id=funding_id(account_id),
            debit_account_id=sink_id(asset_id),
            credit_account_id=control_id(account_id),
            amount=limit,
            ledger=ledger,
            code=LIMIT_CODE,
        )
        [funded] = await self._call(self.client.create_transfers([funding]))
        if funded.status is _S.EXISTS_WITH_DIFFERENT_AMOUNT:
            raise errors.CreditLimitExceeded(
                f"account {account_id} has another credit limit than {limit}; it cannot change"
            )
        if funded.status not in (_S.CREATED, _S.EXISTS):
            raise errors.LedgerError(f"TigerBeetle refused a credit limit: {funded.status.name}")
        self._funded[account_id] = limit

    def _remember(
        self, transfer: Transfer, tb_id: int, group_size: int, has_limit_leg: bool
    ) -> None:
        self._meta[transfer.id] = TransferMeta(transfer, tb_id, group_size, has_limit_leg)
        if len(self._meta) > _METADATA_CACHE:
            self._meta.popitem(last=False)

    async def _resolve(self, op: PostTransfers | VoidTransfers) -> list[Transfer]:
        posting = isinstance(op, PostTransfers)
        if not op.ids:
            raise errors.UnknownTransfer("no transfer named")
        if len(set(op.ids)) != len(op.ids):
            raise errors.UnknownTransfer("a transfer is named twice")
        metas = await self._metadata(op.ids)
        groups: dict[uuid.UUID, int] = {}
        for meta in metas:
            if meta.transfer.group_id is not None:
                groups[meta.transfer.group_id] = groups.get(meta.transfer.group_id, 0) + 1
        for meta in metas:
            group = meta.transfer.group_id
            if group is not None and groups[group] != meta.group_size:
                raise errors.PartialGroup(
                    f"transfer {meta.transfer.id} is one leg of several: name them all"
                )
        derive = post_id if posting else void_id
        flag = int(_F.POST_PENDING_TRANSFER if posting else _F.VOID_PENDING_TRANSFER)
        events: list[Event] = []
        owners: list[TransferMeta] = []
        for meta in metas:
            pending_ids = [meta.tb_id]
            if meta.has_limit_leg:
                pending_ids.append(limit_leg_id(meta.tb_id))
            for pending_id in pending_ids:
                events.append(
                    Event(
                        id=derive(pending_id),
                        debit_account_id=0,
                        credit_account_id=0,
                        amount=tb.AMOUNT_MAX if posting else 0,
                        pending_id=pending_id,
                        user_data_128=0,
                        user_data_64=0,
                        user_data_32=0,
                        timeout=0,
                        ledger=0,
                        code=0,
                        flags=flag,
                    )
                )
                owners.append(meta)
        state = TransferState.POSTED if posting else TransferState.VOIDED

        def interpret(
            statuses: list[tb.CreateTransferStatus], timestamps: list[int]
        ) -> list[Transfer] | Exception:
            if all(s is _S.CREATED for s in statuses):
                results = []
                for meta in metas:
                    meta.transfer.state = state
                    results.append(copy_transfer(meta.transfer))
                    self._meta.pop(meta.transfer.id, None)
                return results
            index, status = next(
                (i, s)
                for i, s in enumerate(statuses)
                if s not in (_S.CREATED, _S.LINKED_EVENT_FAILED)
            )
            return resolve_error(status, owners[index].transfer.id, posting)

        return await self._enqueue(events, interpret)

    async def _metadata(self, ids: Sequence[uuid.UUID]) -> list[TransferMeta]:
        missing = [i for i in ids if i not in self._meta]
        if missing:
            found = await self._lookup(missing)
            for transfer_id in missing:
                t = found.get(transfer_id)
                if t is None:
                    raise errors.UnknownTransfer(f"transfer {transfer_id} does not exist")
                asset_id = await self._asset_for(uuid.UUID(int=t.debit_account_id))
                self._remember(
                    from_tb(t, asset_id, transfer_id),
                    t.id,
                    t.user_data_32 or 1,
                    bool(t.user_data_64 & HAS_LIMIT_LEG),
                )
        return [self._meta[i] for i in ids]


class _NextAttempt(Exception):
    """An id of the create failed before in TigerBeetle: try again under the next ids."""
