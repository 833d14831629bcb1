"""The TigerBeetle ledger's reads (kiungo.ledger.tigerbeetle): balances, one transfer and an
account's transfers with their states, ``kiungo ledger check``; and the requests to the
cluster its reads and writes both make.

Every request is bounded in time (:meth:`TigerBeetleReads._call`: the client itself retries
forever, so a caller hears LedgerUnavailable and may retry under the same ids). Lookups go in
chunks (:meth:`TigerBeetleReads._in_chunks`) and queries in pages
(:meth:`TigerBeetleReads._paged`) as large as the cluster takes: its limit (``--limit-request``)
is learnt from its TooMuchData answer, halving until one fits.

A transfer is looked up under every try of its Kiungo id (kiungo.ledger.tigerbeetle_ids) unless
the writes' cache knows which was created. A pending transfer's state is read from its post and
void (ids derived from its own): posted or voided if one exists, else expired once its timeout
has passed, else pending.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

import tigerbeetle as tb
from sqlalchemy import select

from kiungo.ledger import errors
from kiungo.ledger.accounts import AccountKind, Balance
from kiungo.ledger.check import CheckResult
from kiungo.ledger.rules import Transfer, TransferState
from kiungo.ledger.service import Ledger, TransferRecord
from kiungo.ledger.tigerbeetle_ids import attempt_ids, post_id, void_id
from kiungo.ledger.tigerbeetle_model import KINDS, LIMIT_CODE, from_tb, tb_account, within_flags
from kiungo.ledger.tigerbeetle_wire import PackedClient
from kiungo.models import Asset, LedgerAccount
from kiungo.models.sql import Statement, table

__all__ = ["REQUEST_TIMEOUT", "TigerBeetleReads", "TransferMeta"]

_T = TypeVar("_T")

_F = tb.TransferFlags
# How long one request to the cluster may take before the callers hear LedgerUnavailable.
# The client keeps retrying it meanwhile, so a caller's retry with the same ids is safe.
REQUEST_TIMEOUT = 5.0

_assets = table(Asset)
_accounts = table(LedgerAccount)

# Every account Kiungo knows, as check() compares it with TigerBeetle's.
_ACCOUNT_MAP = Statement(
    select(_accounts.c.id, _accounts.c.asset_id, _accounts.c.kind, _assets.c.ledger)
    .select_from(_accounts.join(_assets, _assets.c.id == _accounts.c.asset_id))
    .order_by(_accounts.c.id)
)


@dataclass(slots=True)
class TransferMeta:
    """What a post or void needs to know of a pending transfer (cached, else looked up)."""

    transfer: Transfer
    tb_id: int
    group_size: int
    has_limit_leg: bool


class TigerBeetleReads(Ledger):
    """:class:`Ledger`'s reads on a TigerBeetle cluster, and the requests to it that the
    ledger's reads and writes share. The base of
    :class:`~kiungo.ledger.tigerbeetle_writer.TigerBeetleWriter` and
    :class:`~kiungo.ledger.tigerbeetle.TigerBeetleLedger`, which add the writes; the latter
    sets the attributes declared here in its ``__init__``.
    """

    _client: PackedClient | None
    # Ids per lookup and results per query: learnt (halved) while the cluster refuses them.
    _max_lookup: int
    # The writes' cache of the transfers they created or looked up: _lookup takes each one's
    # TigerBeetle id (which try of its Kiungo id was created) from it.
    _meta: OrderedDict[uuid.UUID, TransferMeta]

    @property
    def client(self) -> PackedClient:
        if self._client is None:
            raise RuntimeError("the ledger is not started")
        return self._client

    async def _call(self, call: Awaitable[_T]) -> _T:
        """One request to the cluster, bounded in time (the client itself retries forever)."""
        task = asyncio.ensure_future(call)
        try:
            return await asyncio.wait_for(asyncio.shield(task), REQUEST_TIMEOUT)
        except TimeoutError:
            raise errors.LedgerUnavailable("TigerBeetle did not answer in time; retry") from None
        except (tb.ClientClosedError, tb.ClientEvictedError) as exc:
            raise errors.LedgerUnavailable(f"the TigerBeetle client cannot send: {exc!r}") from None

    async def _in_chunks(
        self, lookup: Callable[[list[int]], Awaitable[list[_T]]], ids: list[int]
    ) -> list[_T]:
        """``lookup`` of every id, in requests as large as the cluster takes: its limit (set by
        ``--limit-request``) is learnt from its TooMuchData answer, halving until one fits."""
        found: list[_T] = []
        start = 0
        while start < len(ids):
            size = self._max_lookup
            try:
                found += await self._call(lookup(ids[start : start + size]))
            except tb.TooMuchDataError:
                if size == 1:
                    raise
                self._max_lookup = max(1, size // 2)
                continue
            start += size
        return found

    async def _paged(
        self, query: Callable[[int], Awaitable[list[_T]]], page_size: int
    ) -> tuple[list[_T], int]:
        """One page of ``query(limit)`` and the limit it was read with: halved (and learnt)
        while the cluster answers TooMuchData."""
        while True:
            try:
                return await self._call(query(page_size)), page_size
            except tb.TooMuchDataError:
                if page_size == 1:
                    raise
                page_size = self._max_lookup = max(1, page_size // 2)

    # -- reads ---------------------------------------------------------------------------------

    async def balance(self, account_id: uuid.UUID) -> Balance:
        [balance] = await self.balances([account_id])
        if balance is None:
            raise errors.UnknownAccount(f"account {account_id} does not exist")
        return balance

    async def balances(self, account_ids: Sequence[uuid.UUID]) -> list[Balance | None]:
        ids = [a.int for a in account_ids]
        found = {a.id: a for a in await self._in_chunks(self.client.lookup_accounts, ids)}
        balances: list[Balance | None] = []
        for account_id in account_ids:
            account = found.get(account_id.int)
            kind = None if account is None else KINDS.get(account.code)
            if account is None or kind is None:
                balances.append(None)
                continue
            balances.append(
                Balance(
                    account_id,
                    kind,
                    account.debits_posted,
                    account.credits_posted,
                    account.debits_pending,
                    account.credits_pending,
                )
            )
        return balances

    async def transfers_of(self, account_id: uuid.UUID, limit: int = 100) -> list[Transfer]:
        filter_flags = tb.AccountFilterFlags.DEBITS | tb.AccountFilterFlags.CREDITS
        found = await self._account_transfers(account_id, filter_flags, limit)
        return [r.transfer for r in await self._records(found)]

    async def history(
        self, account_ids: Sequence[uuid.UUID], *, debits: bool, limit: int
    ) -> list[TransferRecord]:
        side = tb.AccountFilterFlags.DEBITS if debits else tb.AccountFilterFlags.CREDITS
        found: list[tb.Transfer] = []
        for account_id in account_ids:
            found += await self._account_transfers(
                account_id, side | tb.AccountFilterFlags.REVERSED, limit
            )
        found.sort(key=lambda t: t.timestamp, reverse=True)
        return await self._records(found[:limit])

    async def _account_transfers(
        self, account_id: uuid.UUID, flags: tb.AccountFilterFlags, limit: int
    ) -> list[tb.Transfer]:
        """Up to ``limit`` of the account's own transfers (not posts and voids, which are
        transfers of their own in TigerBeetle), in timestamp order (or reversed)."""
        found: list[tb.Transfer] = []
        bound = 0
        reverse = bool(flags & tb.AccountFilterFlags.REVERSED)
        while len(found) < limit:
            page_size = min(self._max_lookup, max(limit * 2, 16))

            def transfers_page(size: int, bound: int = bound) -> Awaitable[list[tb.Transfer]]:
                return self.client.get_account_transfers(
                    tb.AccountFilter(
                        account_id=account_id.int,
                        user_data_128=0,
                        user_data_64=0,
                        user_data_32=0,
                        code=0,
                        timestamp_min=0 if reverse else bound,
                        timestamp_max=bound if reverse else 0,
                        limit=size,
                        flags=flags,
                    )
                )

            page, page_size = await self._paged(transfers_page, page_size)
            found += [
                t
                for t in page
                if not t.flags & (_F.POST_PENDING_TRANSFER | _F.VOID_PENDING_TRANSFER)
            ]
            if len(page) < page_size:
                break
            bound = page[-1].timestamp - 1 if reverse else page[-1].timestamp + 1
        return found[:limit]

    async def _records(self, found: list[tb.Transfer]) -> list[TransferRecord]:
        transfers = [
            from_tb(t, await self._asset_for(uuid.UUID(int=t.debit_account_id))) for t in found
        ]
        await self._states(transfers, [t.id for t in found])
        return [
            TransferRecord(transfer, datetime.fromtimestamp(t.timestamp / 1e9, UTC))
            for transfer, t in zip(transfers, found, strict=True)
        ]

    async def transfer(self, transfer_id: uuid.UUID) -> Transfer | None:
        found = (await self._lookup([transfer_id])).get(transfer_id)
        if found is None:
            return None
        asset_id = await self._asset_for(uuid.UUID(int=found.debit_account_id))
        [transfer] = await self._states([from_tb(found, asset_id, transfer_id)], [found.id])
        return transfer

    async def _lookup(self, transfer_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, tb.Transfer]:
        """The transfers of these Kiungo ids, whichever try of each id was created."""
        by_tb_id: dict[int, uuid.UUID] = {}
        for transfer_id in transfer_ids:
            meta = self._meta.get(transfer_id)
            for tb_id in [meta.tb_id] if meta else attempt_ids(transfer_id.int):
                by_tb_id[tb_id] = transfer_id
        found: dict[uuid.UUID, tb.Transfer] = {}
        for t in await self._in_chunks(self.client.lookup_transfers, list(by_tb_id)):
            if t.code != LIMIT_CODE:
                found[by_tb_id[t.id]] = t
        return found

    async def _states(self, transfers: list[Transfer], tb_ids: list[int]) -> list[Transfer]:
        """Settle each pending transfer's state: posted, voided, expired or still pending."""
        pending = [
            (t, tb_id)
            for t, tb_id in zip(transfers, tb_ids, strict=True)
            if t.state is TransferState.PENDING
        ]
        if not pending:
            return transfers
        ids: list[int] = []
        for _, tb_id in pending:
            ids += [post_id(tb_id), void_id(tb_id)]
        resolved = {
            t.pending_id: t.flags
            for t in await self._call(self.client.lookup_transfers(ids))
            if t.pending_id
        }
        now = datetime.now(UTC)
        for t, tb_id in pending:
            flags = resolved.get(tb_id)
            if flags is not None:
                posted = flags & _F.POST_PENDING_TRANSFER
                t.state = TransferState.POSTED if posted else TransferState.VOIDED
            elif t.expires_at is not None and t.expires_at <= now:
                t.state = TransferState.EXPIRED
        return transfers

    async def check(self) -> list[CheckResult]:
        """``kiungo ledger check`` on TigerBeetle. The engine keeps each ledger balanced and
        each account within its flags; what can still go wrong is the map: an account Kiungo
        knows that TigerBeetle lacks or holds with another kind, ledger or asset (its rules
        would then not be the kind's). The balances are checked against the kinds' rules too."""
        async with self._pool.acquire() as conn:
            rows = await _ACCOUNT_MAP.fetch(conn)
        expected = {
            r["id"]: tb_account(r["id"], r["asset_id"], AccountKind(r["kind"]), r["ledger"])
            for r in rows
        }
        ids = [a.int for a in expected]
        found = {a.id: a for a in await self._in_chunks(self.client.lookup_accounts, ids)}
        mismatched: list[dict[str, object]] = []
        flags_broken: list[dict[str, object]] = []
        for account_id, want in expected.items():
            have = found.get(account_id.int)
            if have is None:
                mismatched.append({"account_id": str(account_id), "problem": "missing"})
                continue
            differs = [
                name
                for name in ("ledger", "code", "flags", "user_data_128")
                if getattr(have, name) != getattr(want, name)
            ]
            if differs:
                mismatched.append({"account_id": str(account_id), "differs": differs})
            kind = KINDS.get(want.code)
            if kind is not None and not within_flags(kind, have):
                flags_broken.append(
                    {
                        "account_id": str(account_id),
                        "kind": kind.value,
                        "debits_posted": have.debits_posted,
                        "credits_posted": have.credits_posted,
                        "debits_pending": have.debits_pending,
                        "credits_pending": have.credits_pending,
                    }
                )
        unbalanced: list[dict[str, object]] = []
        for asset_id, ledger in sorted({(r["asset_id"], r["ledger"]) for r in rows}):
            sums = await self._ledger_sums(ledger)
            if sums[0] != sums[1] or sums[2] != sums[3]:
                unbalanced.append(
                    {
                        "asset_id": str(asset_id),
                        "debits_posted": sums[0],
                        "credits_posted": sums[1],
                        "debits_pending": sums[2],
                        "credits_pending": sums[3],
                    }
                )
        return [
            CheckResult(
                "tigerbeetle_accounts",
                "every account in ledger_accounts is in TigerBeetle with its kind's flags and "
                "code and its asset's ledger",
                mismatched,
            ),
            CheckResult(
                "ledger_balances",
                "per asset, posted debits equal posted credits and pending debits equal "
                "pending credits",
                unbalanced,
            ),
            CheckResult(
                "account_flags",
                "no liquidity account debited beyond its credits, no settlement account "
                "credited beyond its debits",
                flags_broken,
            ),
        ]

    async def _ledger_sums(self, ledger: int) -> tuple[int, int, int, int]:
        sums = [0, 0, 0, 0]
        timestamp_min = 0
        while True:
            page_size = self._max_lookup

            def accounts_page(size: int, since: int = timestamp_min) -> Awaitable[list[tb.Account]]:
                return self.client.query_accounts(
                    tb.QueryFilter(
                        user_data_128=0,
                        user_data_64=0,
                        user_data_32=0,
                        ledger=ledger,
                        code=0,
                        timestamp_min=since,
                        timestamp_max=0,
                        limit=size,
                        flags=tb.QueryFilterFlags.NONE,
                    )
                )

            page, page_size = await self._paged(accounts_page, page_size)
            for a in page:
                sums[0] += a.debits_posted
                sums[1] += a.credits_posted
                sums[2] += a.debits_pending
                sums[3] += a.credits_pending
            if len(page) < page_size:
                return sums[0], sums[1], sums[2], sums[3]
            timestamp_min = page[-1].timestamp + 1
