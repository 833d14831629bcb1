"""The packed ``create_transfers`` (kiungo.ledger.tigerbeetle_wire) leans on the TigerBeetle
client's private ``_acquire_packet`` and on its C layouts. These fail loudly when the pinned
package changes any of that, and check that packed rows are byte for byte the client's own."""

from __future__ import annotations

import ctypes
import inspect
import struct
from importlib.metadata import version
from pathlib import Path

import pytest
import tigerbeetle as tb
from tests.tigerbeetle_server import tigerbeetle_server
from tigerbeetle import bindings
from tigerbeetle.client import Client, InflightPacket

from kiungo.ledger.tigerbeetle_wire import (
    CREATED,
    LINKED,
    TRANSFER,
    Event,
    PackedClient,
    _CreateResult,
    pack_chains,
)

U128 = 2**128 - 1


def test_the_client_is_the_version_the_wire_module_was_written_against() -> None:
    assert version("tigerbeetle") == "0.17.8"
    assert list(inspect.signature(Client._acquire_packet).parameters) == [
        "self",
        "operation",
        "operations",
        "c_event_type",
        "c_result_type",
    ]
    assert "_acquire_packet(operation, operations, c_event_type, c_result_type)" in (
        inspect.getsource(tb.ClientAsync._submit)
    )
    # Each result goes through its c_result_type's to_python (_CreateResult's here).
    assert "[result.to_python() for result in results_slice]" in inspect.getsource(Client)
    assert {f.name for f in __import__("dataclasses").fields(InflightPacket)} == {
        "packet",
        "response",
        "operation",
        "c_event_type",
        "c_result_type",
        "on_completion",
        "on_completion_context",
    }


def test_layouts_match_the_clients_c_types() -> None:
    assert TRANSFER.size == ctypes.sizeof(bindings.CTransfer) == 128
    assert [field[0] for field in bindings.CTransfer._fields_] == [
        "id",
        "debit_account_id",
        "credit_account_id",
        "amount",
        "pending_id",
        "user_data_128",
        "user_data_64",
        "user_data_32",
        "timeout",
        "ledger",
        "code",
        "flags",
        "timestamp",
    ]
    assert list(Event._fields) == [field[0] for field in bindings.CTransfer._fields_][:-1]
    assert _CreateResult._fields_ == tuple(bindings.CCreateTransferResult._fields_)
    assert ctypes.sizeof(_CreateResult) == ctypes.sizeof(bindings.CCreateTransferResult)
    assert tb.CreateTransferStatus.CREATED.value == CREATED
    assert tb.TransferFlags.LINKED.value == LINKED


def test_packed_rows_are_the_clients_own_rows() -> None:
    first = Event(U128, 2**64, 2**64 - 1, 10**30, 0, 7 << 70, 2**64 - 1, 3, 30, 2**32 - 1, 65535, 2)
    second = first._replace(id=5, flags=int(tb.TransferFlags.PENDING), pending_id=1 << 127)
    alone = first._replace(id=6)
    packed = pack_chains([[first, second], [alone]])
    assert packed.count == 3
    theirs = [
        tb.Transfer(**(e._asdict() | {"flags": flags}))
        for e, flags in [(first, first.flags | LINKED), (second, second.flags), (alone, 2)]
    ]
    expected = b"".join(bytes(bindings.CTransfer.from_param(t)) for t in theirs)
    assert bytes(packed.buffer) == expected


def test_a_value_out_of_range_is_refused_before_anything_is_sent() -> None:
    with pytest.raises(struct.error):
        pack_chains([[Event(U128 + 1, 1, 2, 1, 0, 0, 0, 0, 0, 1, 1, 0)]])
    with pytest.raises(struct.error):
        pack_chains([[Event(1, 1, 2, -1, 0, 0, 0, 0, 0, 1, 1, 0)]])


async def test_packed_create_transfers_on_a_server(tmp_path: Path) -> None:
    async with tigerbeetle_server(tmp_path) as server:
        client = PackedClient(0, server.address)
        try:
            flags = tb.AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
            await client.create_accounts(
                [
                    tb.Account(id=1, ledger=1, code=1),
                    tb.Account(id=2, ledger=1, code=1, flags=flags),
                ]
            )
            fund = Event(10, 1, 2, 5, 0, 0, 0, 0, 0, 1, 1, 0)
            spend = Event(11, 2, 1, 3, 0, 0, 0, 0, 0, 1, 1, 0)
            too_much = Event(12, 2, 1, 3, 0, 0, 0, 0, 0, 1, 1, 0)
            results = await client.create_transfers_packed(pack_chains([[fund], [spend, too_much]]))
            statuses = [tb.CreateTransferStatus(status) for status, _ in results]
            assert statuses == [
                tb.CreateTransferStatus.CREATED,
                tb.CreateTransferStatus.LINKED_EVENT_FAILED,
                tb.CreateTransferStatus.EXCEEDS_CREDITS,
            ]
            assert results[0][1] > 0
            # The unpacked calls still work on the same client.
            [account] = await client.lookup_accounts([2])
            assert (account.credits_posted, account.debits_posted) == (5, 0)
        finally:
            await client.close()
