"""``create_transfers`` without the TigerBeetle client's per-transfer Python objects.

The client (``tigerbeetle`` 0.17.8, pinned exactly) turns each ``tb.Transfer`` dataclass into a
``CTransfer`` through ``from_param`` (twelve range checks and six 128-bit splits: about 8 µs a
transfer here) and each result into a ``CreateTransferResult`` with an enum (about 4 µs, in the
client's own thread, holding the GIL). Packet forwarding spent more on that than on anything of
its own. :class:`PackedClient` sends a request already laid out as ``CTransfer`` rows (one
``struct.pack_into`` each into one buffer) and hands back each result as ``(status, timestamp)``
integers; everything else (the packet, its completion, the asyncio wake-up) is the client's.

It overrides the client's private ``_acquire_packet``: ``tests/ledger/test_tigerbeetle_wire.py``
fails if the pinned package changes what that relies on (layouts, the method's signature).
"""

from __future__ import annotations

import ctypes
import struct
from collections.abc import Sequence
from typing import Any, NamedTuple

import tigerbeetle as tb
from tigerbeetle import bindings
from tigerbeetle.client import Client, InflightPacket

__all__ = ["CREATED", "LINKED", "Event", "PackedClient", "pack_chains"]

_LOW = (1 << 64) - 1
# CTransfer: id, debit_account_id, credit_account_id, amount, pending_id, user_data_128 (each
# u128 as low then high u64), user_data_64, user_data_32, timeout, ledger, code, flags, timestamp.
TRANSFER = struct.Struct("<13Q3I2HQ")
CREATED = int(tb.CreateTransferStatus.CREATED)
LINKED = int(tb.TransferFlags.LINKED)


class Event(NamedTuple):
    """One transfer of a request: ``tb.Transfer``'s fields that Kiungo sets (timestamp 0)."""

    id: int
    debit_account_id: int
    credit_account_id: int
    amount: int
    pending_id: int
    user_data_128: int
    user_data_64: int
    user_data_32: int
    timeout: int
    ledger: int
    code: int
    flags: int


class _Packed:
    """A request's transfers as ``CTransfer`` rows."""

    __slots__ = ("buffer", "count")

    def __init__(self, buffer: bytearray, count: int) -> None:
        self.buffer = buffer
        self.count = count


def pack_chains(chains: Sequence[Sequence[Event]]) -> _Packed:
    """The transfers of ``chains`` in order, every one but a chain's last ``LINKED`` to the next.

    A value out of its field's range raises ``struct.error`` (the client's checks, done by
    ``struct``: negative or too large for 64 bits, or a 128-bit value past 2^128-1)."""
    count = sum(len(chain) for chain in chains)
    buffer = bytearray(TRANSFER.size * count)
    pack = TRANSFER.pack_into
    offset = 0
    size = TRANSFER.size
    low = _LOW
    for chain in chains:
        last = len(chain) - 1
        for n, e in enumerate(chain):
            pack(
                buffer,
                offset,
                e.id & low,
                e.id >> 64,
                e.debit_account_id & low,
                e.debit_account_id >> 64,
                e.credit_account_id & low,
                e.credit_account_id >> 64,
                e.amount & low,
                e.amount >> 64,
                e.pending_id & low,
                e.pending_id >> 64,
                e.user_data_128 & low,
                e.user_data_128 >> 64,
                e.user_data_64,
                e.user_data_32,
                e.timeout,
                e.ledger,
                e.code,
                e.flags | LINKED if n < last else e.flags,
                0,
            )
            offset += size
    return _Packed(buffer, count)


class _CreateResult(ctypes.Structure):
    """``CCreateTransferResult``'s layout; converted to ``(status, timestamp)`` integers."""

    _fields_ = (
        ("timestamp", ctypes.c_uint64),
        ("status", ctypes.c_uint32),
        ("reserved", ctypes.c_uint32),
    )

    def to_python(self) -> tuple[int, int]:
        return self.status, self.timestamp


class PackedClient(tb.ClientAsync):
    """``tb.ClientAsync`` with :meth:`create_transfers_packed` (module docstring)."""

    async def create_transfers_packed(self, packed: _Packed) -> list[tuple[int, int]]:
        """One ``create_transfers`` request: each transfer's ``(status, timestamp)``, in order;
        the client's exceptions (``TooMuchDataError``, ``ClientClosedError``…) as its own."""
        results: list[tuple[int, int]] = await self._submit(
            bindings.Operation.CREATE_TRANSFERS, packed, bindings.CTransfer, _CreateResult
        )
        return results

    def _acquire_packet(
        self, operation: bindings.Operation, operations: Any, c_event_type: Any, c_result_type: Any
    ) -> InflightPacket:
        if not isinstance(operations, _Packed):
            return super()._acquire_packet(operation, operations, c_event_type, c_result_type)
        # As the client's own, with the rows taken as they are instead of built one by one.
        packet = bindings.CPacket()
        packet.next = None
        packet.user_data = Client._counter.increment()
        packet.user_tag = 0
        packet.operation = operation
        packet.status = bindings.PacketStatus.OK
        rows = (c_event_type * operations.count).from_buffer(operations.buffer)
        packet.data_size = ctypes.sizeof(rows)
        # The cast keeps ``rows`` (and through it the buffer) alive as long as the packet.
        packet.data = ctypes.cast(rows, ctypes.c_void_p)
        return InflightPacket(
            packet=packet,
            response=None,
            on_completion=None,
            on_completion_context=None,
            operation=operation,
            c_event_type=c_event_type,
            c_result_type=c_result_type,
        )
