"""The TigerBeetle ledger's group commit (kiungo.ledger.tigerbeetle): concurrent operations
queue; a writer sends everything queued (up to the request's size) as one ``create_transfers``
request, each operation's chain contiguous, and gives each caller its own result. A request the
server finds too large is split in halves.

An operation's interpreter turns its share of the request's results into its transfers or an
error, in the writer, where nothing can be looked up: a create whose first leg exists comes back
as a :class:`ReplayError`, and its caller looks the originals up after the batch
(:meth:`TigerBeetleWriter._replay`): the same transfer if its accounts, amount and phase are,
else TransferExists.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

import tigerbeetle as tb

from kiungo.ledger import errors
from kiungo.ledger.group_commit import GroupCommit, settle
from kiungo.ledger.rules import Leg, Transfer
from kiungo.ledger.tigerbeetle_ids import attempt_id
from kiungo.ledger.tigerbeetle_model import from_tb
from kiungo.ledger.tigerbeetle_reads import TigerBeetleReads
from kiungo.ledger.tigerbeetle_wire import Event, pack_chains

__all__ = ["Replay", "ReplayError", "TigerBeetleWriter"]

# The ledger's logger: its writer's failures are logged as they were before this module split.
log = logging.getLogger("kiungo.ledger.tigerbeetle")

_S = tb.CreateTransferStatus
_STATUSES = {int(s): s for s in _S}
_F = tb.TransferFlags


@dataclass(slots=True)
class _Request:
    events: list[Event]
    interpret: Callable[[list[tb.CreateTransferStatus], list[int]], list[Transfer] | Exception]
    future: asyncio.Future[list[Transfer]]


@dataclass(slots=True)
class Replay:
    """A create whose first leg exists: the originals are looked up after the batch."""

    legs: tuple[Leg, ...]
    pending: bool
    code: str
    attempt: int


class ReplayError(Exception):
    """Carries a replay from the writer back to its caller, who looks up the originals."""

    def __init__(self, replay: Replay) -> None:
        super().__init__("replay")
        self.replay = replay


class TigerBeetleWriter(TigerBeetleReads):
    """The group commit of :class:`~kiungo.ledger.tigerbeetle.TigerBeetleLedger`, its subclass:
    that sets ``_sends`` (and :class:`Ledger`'s ``_max_batch``, ``batches`` and ``operations``)
    in its ``__init__`` and starts the writers (:meth:`_send_loop`)."""

    _sends: GroupCommit[_Request]

    async def _enqueue(
        self,
        events: list[Event],
        interpret: Callable[[list[tb.CreateTransferStatus], list[int]], list[Transfer] | Exception],
    ) -> list[Transfer]:
        sends = self._sends
        future = sends.future()
        sends.put(_Request(events, interpret, future))
        try:
            return await future
        except ReplayError as replay:
            return await self._replay(replay.replay)

    async def _replay(self, replay: Replay) -> list[Transfer]:
        """The original transfers of a create sent again, or TransferExists if they differ."""
        ids = [attempt_id(leg.id.int, replay.attempt) for leg in replay.legs]
        found = {t.id: t for t in await self._call(self.client.lookup_transfers(ids))}
        originals = []
        for leg, tb_id in zip(replay.legs, ids, strict=True):
            t = found.get(tb_id)
            if (
                t is None
                or t.debit_account_id != leg.debit_account_id.int
                or t.credit_account_id != leg.credit_account_id.int
                or t.amount != leg.amount
                or bool(t.flags & _F.PENDING) != replay.pending
            ):
                raise errors.TransferExists(f"transfer {leg.id} exists")
            originals.append(from_tb(t, await self._asset_for(leg.debit_account_id), leg.id))
        return await self._states(originals, ids)

    async def _send_loop(self) -> None:
        queue = self._sends.queue
        while True:
            await self._sends.wait()
            # As many queued operations as fit in one request (taken by one slice: popping
            # them one at a time from the front was a tenth of the writer's time), but only a
            # fair share when other writers are idle: they send the rest at once, so the
            # cluster works on one request while this process packs or reads another.
            limit = self._max_batch
            if self._sends.idle:
                total = sum(len(request.events) for request in queue)
                limit = min(limit, -(-total // (self._sends.idle + 1)))
            size = 0
            taken = 0
            for request in queue:
                size += len(request.events)
                if taken and size > limit:
                    break
                taken += 1
            batch = queue[:taken]
            del queue[:taken]
            await self._send_batch(batch)

    async def _send_batch(self, batch: list[_Request]) -> None:
        try:
            # Chains: every event but an operation's last is linked to the next.
            packed = pack_chains([r.events for r in batch])
            results = await self._call(self.client.create_transfers_packed(packed))
        except tb.TooMuchDataError:
            if len(batch) == 1:
                error: Exception = errors.InvalidAmount(
                    "the transfer has too many legs for one request"
                )
            else:
                # The cluster's request limit is below max_batch: learn it, send in halves.
                self._max_batch = max(1, packed.count // 2)
                half = len(batch) // 2
                await self._send_batch(batch[:half])
                await self._send_batch(batch[half:])
                return
        except errors.LedgerUnavailable as exc:
            error = exc
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("TigerBeetle batch of %d failed unexpectedly", len(batch))
            error = errors.LedgerUnavailable(f"the ledger could not commit: {exc!r}")
        else:
            self.batches += 1
            self.operations += len(batch)
            position = 0
            for request in batch:
                count = len(request.events)
                mine = results[position : position + count]
                position += count
                if request.future.done():
                    continue
                try:
                    outcome = request.interpret(
                        [_STATUSES[status] for status, _ in mine],
                        [timestamp for _, timestamp in mine],
                    )
                except Exception as exc:  # a bug in interpreting must not stop the writer
                    log.exception("interpreting a TigerBeetle result failed")
                    outcome = errors.LedgerUnavailable(
                        f"the ledger could not read its result: {exc!r}"
                    )
                settle(request, outcome)
            return
        for request in batch:
            settle(request, error)
