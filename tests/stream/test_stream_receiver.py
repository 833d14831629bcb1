"""The STREAM receiver's answers to incoming Prepares, as PROTOCOLS.md §6.7 lists them.

Each test acts as a STREAM sender: it encrypts a STREAM packet with the connection's keys, sets
the condition from the encrypted data (or a random one for unfulfillable packets) and reads the
encrypted STREAM reply back with the same keys.
"""

from __future__ import annotations

import hashlib
import os
from datetime import UTC, datetime

import pytest

from kiungo.ilp.packet import Fulfill, Prepare, Reject
from kiungo.stream.crypto import StreamKeys
from kiungo.stream.packet import (
    ConnectionAssetDetailsFrame,
    ConnectionCloseFrame,
    ConnectionMaxDataFrame,
    ConnectionNewAddressFrame,
    ErrorCode,
    Frame,
    StreamMoneyFrame,
    StreamPacket,
    StreamReceiptFrame,
    decode_stream_packet,
    encode_stream_packet,
)
from kiungo.stream.receipt import Receipt, verify_receipt
from kiungo.stream.receiver import IncomingMoney, StreamReceiver
from kiungo.stream.server import Asset, Credentials, ReceiptSetup, StreamServer

SECRET = bytes(range(32))
BASE = "test.receiver"
EXPIRY = datetime(2030, 1, 1, tzinfo=UTC)
RECEIPTS = ReceiptSetup(nonce=bytes(range(16)), secret=bytes(range(200, 232)))
ASSET = Asset("XYZ", 9)
MONEY: list[Frame] = [StreamMoneyFrame(1, 1)]


@pytest.fixture
def server() -> StreamServer:
    return StreamServer(SECRET, BASE)


@pytest.fixture
def receiver(server: StreamServer) -> StreamReceiver:
    return StreamReceiver(server)


@pytest.fixture
def credentials(server: StreamServer) -> Credentials:
    return server.generate_credentials(payment_tag="order-7", receipt_setup=RECEIPTS, asset=ASSET)


def prepare_for(
    credentials: Credentials,
    amount: int,
    frames: list[Frame],
    *,
    minimum: int = 0,
    sequence: int = 1,
    packet_type: int = 12,
    fulfillable: bool = True,
) -> Prepare:
    keys = StreamKeys(credentials.shared_secret)
    plain = encode_stream_packet(StreamPacket(sequence, packet_type, minimum, frames))
    data = keys.encrypt(plain)
    condition = keys.condition(data) if fulfillable else os.urandom(32)
    return Prepare(amount, EXPIRY, condition, credentials.destination_account, data)


def open_reply(credentials: Credentials, data: bytes) -> StreamPacket:
    return decode_stream_packet(StreamKeys(credentials.shared_secret).decrypt(data))


def assert_stream_reject(result: object, code: str) -> Reject:
    """A Reject as every STREAM receiver sends it: our address as triggeredBy, message ''."""
    assert isinstance(result, Reject)
    assert result.code == code
    assert result.triggered_by == BASE
    assert result.message == ""
    return result


def incoming(result: object) -> IncomingMoney:
    assert isinstance(result, IncomingMoney)
    return result


# Before a connection is known: no keys to encrypt a reply with, so no data.


@pytest.mark.parametrize("destination", ["test.other.abc", "test.receiverx.abc", "g.x"])
def test_destination_outside_the_base_is_f02_without_data(
    receiver: StreamReceiver, credentials: Credentials, destination: str
) -> None:
    prepare = prepare_for(credentials, 10, MONEY)
    prepare.destination = destination
    reject = assert_stream_reject(receiver.receive(prepare), "F02")
    assert reject.data == b""


def test_base_address_without_token_is_f02_without_data(
    receiver: StreamReceiver, credentials: Credentials
) -> None:
    prepare = prepare_for(credentials, 10, MONEY)
    prepare.destination = BASE
    assert assert_stream_reject(receiver.receive(prepare), "F02").data == b""


def test_token_that_does_not_authenticate_is_f06_without_data(
    receiver: StreamReceiver, credentials: Credentials
) -> None:
    other = StreamServer(bytes(32), BASE).generate_credentials()
    prepare = prepare_for(other, 10, MONEY)
    assert assert_stream_reject(receiver.receive(prepare), "F06").data == b""


def test_data_under_another_key_is_f06_without_data(
    receiver: StreamReceiver, credentials: Credentials
) -> None:
    prepare = prepare_for(credentials, 10, MONEY)
    data = StreamKeys(bytes(32)).encrypt(encode_stream_packet(StreamPacket(1, 12, 0, MONEY)))
    prepare.data = data
    assert assert_stream_reject(receiver.receive(prepare), "F06").data == b""


@pytest.mark.parametrize(
    "data",
    [b"", b"\x01" * 27, bytes(range(7, 107))],  # fixed bytes: ids alike in every worker
    ids=["empty", "short", "random-looking"],
)
def test_data_that_does_not_decrypt_is_f06_without_data(
    receiver: StreamReceiver, credentials: Credentials, data: bytes
) -> None:
    prepare = prepare_for(credentials, 10, MONEY)
    prepare.data = data
    assert assert_stream_reject(receiver.receive(prepare), "F06").data == b""


def test_decrypted_data_that_is_not_a_stream_packet_is_f06_without_data(
    receiver: StreamReceiver, credentials: Credentials
) -> None:
    prepare = prepare_for(credentials, 10, MONEY)
    prepare.data = StreamKeys(credentials.shared_secret).encrypt(b"\x02\x0c not stream")
    assert assert_stream_reject(receiver.receive(prepare), "F06").data == b""


@pytest.mark.parametrize("packet_type", [13, 14])
def test_stream_packet_not_meant_for_a_prepare_is_f00_without_data(
    receiver: StreamReceiver, credentials: Credentials, packet_type: int
) -> None:
    prepare = prepare_for(credentials, 10, MONEY, packet_type=packet_type)
    assert assert_stream_reject(receiver.receive(prepare), "F00").data == b""


# Authentic packets: every answer carries an encrypted STREAM reply.


def test_unfulfillable_condition_is_f99_with_stream_reply(
    receiver: StreamReceiver, credentials: Credentials
) -> None:
    prepare = prepare_for(credentials, 1000, MONEY, sequence=42, fulfillable=False)
    reject = assert_stream_reject(receiver.receive(prepare), "F99")
    assert open_reply(credentials, reject.data) == StreamPacket(42, 14, 1000, [])


def test_amount_below_the_minimum_is_f99_with_stream_reply(
    receiver: StreamReceiver, credentials: Credentials
) -> None:
    prepare = prepare_for(credentials, 99, MONEY, minimum=100, sequence=3)
    reject = assert_stream_reject(receiver.receive(prepare), "F99")
    assert open_reply(credentials, reject.data) == StreamPacket(3, 14, 99, [])


def test_amount_equal_to_the_minimum_is_accepted(
    receiver: StreamReceiver, credentials: Credentials
) -> None:
    assert (
        incoming(receiver.receive(prepare_for(credentials, 100, MONEY, minimum=100))).amount == 100
    )


def test_reply_amount_is_the_ilp_amount_that_arrived_not_the_minimum(
    receiver: StreamReceiver, credentials: Credentials
) -> None:
    prepare = prepare_for(credentials, 12345, MONEY, minimum=7, sequence=9, fulfillable=False)
    reject = assert_stream_reject(receiver.receive(prepare), "F99")
    reply = open_reply(credentials, reject.data)
    assert (reply.sequence, reply.ilp_packet_type, reply.prepare_amount) == (9, 14, 12345)


@pytest.mark.parametrize("sequence", [0, 1, 2**31, 2**64 - 1])
def test_reply_sequence_is_the_request_sequence(
    receiver: StreamReceiver, credentials: Credentials, sequence: int
) -> None:
    prepare = prepare_for(credentials, 5, MONEY, sequence=sequence, fulfillable=False)
    reject = assert_stream_reject(receiver.receive(prepare), "F99")
    assert open_reply(credentials, reject.data).sequence == sequence


def test_connection_close_is_answered_f99_with_connection_close_no_error(
    receiver: StreamReceiver, credentials: Credentials
) -> None:
    # Fulfillable and carrying money: the close still wins.
    frames: list[Frame] = [ConnectionCloseFrame(ErrorCode.APPLICATION_ERROR, "bye"), *MONEY]
    prepare = prepare_for(credentials, 50, frames, sequence=8)
    reject = assert_stream_reject(receiver.receive(prepare), "F99")
    reply = open_reply(credentials, reject.data)
    assert reply == StreamPacket(8, 14, 50, [ConnectionCloseFrame(ErrorCode.NO_ERROR, "")])


@pytest.mark.parametrize("source_account", ["test.sender", ""])
def test_connection_new_address_is_answered_with_asset_details(
    receiver: StreamReceiver, credentials: Credentials, source_account: str
) -> None:
    # pay's first asset probe sends ConnectionNewAddress('') in an unfulfillable packet.
    prepare = prepare_for(
        credentials, 0, [ConnectionNewAddressFrame(source_account)], fulfillable=False
    )
    reject = assert_stream_reject(receiver.receive(prepare), "F99")
    reply = open_reply(credentials, reject.data)
    assert reply.frames == [ConnectionAssetDetailsFrame("XYZ", 9)]


def test_asset_details_also_come_with_a_fulfill(
    receiver: StreamReceiver, credentials: Credentials
) -> None:
    prepare = prepare_for(credentials, 0, [ConnectionNewAddressFrame("test.sender")])
    fulfill = receiver.receive(prepare)
    assert isinstance(fulfill, Fulfill)
    assert open_reply(credentials, fulfill.data).frames == [ConnectionAssetDetailsFrame("XYZ", 9)]


def test_no_asset_details_without_connection_new_address(
    receiver: StreamReceiver, credentials: Credentials
) -> None:
    prepare = prepare_for(credentials, 0, [ConnectionMaxDataFrame(1000)], fulfillable=False)
    reject = assert_stream_reject(receiver.receive(prepare), "F99")
    assert open_reply(credentials, reject.data).frames == []


def test_no_asset_details_for_a_connection_without_an_asset(
    server: StreamServer, receiver: StreamReceiver
) -> None:
    credentials = server.generate_credentials()
    prepare = prepare_for(
        credentials, 0, [ConnectionNewAddressFrame("test.sender")], fulfillable=False
    )
    reject = assert_stream_reject(receiver.receive(prepare), "F99")
    assert open_reply(credentials, reject.data).frames == []


def test_zero_amount_fulfillable_packet_is_fulfilled_directly(
    receiver: StreamReceiver, credentials: Credentials
) -> None:
    prepare = prepare_for(credentials, 0, [ConnectionMaxDataFrame(1000)], sequence=4)
    fulfill = receiver.receive(prepare)
    assert isinstance(fulfill, Fulfill)
    assert hashlib.sha256(fulfill.fulfillment).digest() == prepare.execution_condition
    assert open_reply(credentials, fulfill.data) == StreamPacket(4, 13, 0, [])


def test_money_awaits_the_application_as_incoming_money(
    receiver: StreamReceiver, credentials: Credentials, server: StreamServer
) -> None:
    prepare = prepare_for(credentials, 750, MONEY, minimum=700, sequence=5)
    money = incoming(receiver.receive(prepare))
    assert money.amount == 750
    assert money.prepare is prepare
    assert money.request == StreamPacket(5, 12, 700, MONEY)
    assert money.payment_tag == "order-7"
    details = server.connection(credentials.destination_account)
    assert details is not None and money.connection_id == details.connection_id


def test_accept_fulfills_with_a_receipt_for_the_running_total(
    receiver: StreamReceiver, credentials: Credentials
) -> None:
    prepare = prepare_for(credentials, 750, MONEY, sequence=6)
    fulfill = incoming(receiver.receive(prepare)).accept(2000)
    assert isinstance(fulfill, Fulfill)
    assert hashlib.sha256(fulfill.fulfillment).digest() == prepare.execution_condition
    reply = open_reply(credentials, fulfill.data)
    assert (reply.sequence, reply.ilp_packet_type, reply.prepare_amount) == (6, 13, 750)
    (frame,) = reply.frames
    assert isinstance(frame, StreamReceiptFrame)
    assert frame.stream_id == 1
    assert verify_receipt(frame.receipt, RECEIPTS.secret) == Receipt(RECEIPTS.nonce, 1, 2000)


def test_accept_without_receipt_setup_fulfills_without_a_receipt(
    server: StreamServer, receiver: StreamReceiver
) -> None:
    credentials = server.generate_credentials()
    prepare = prepare_for(credentials, 10, MONEY)
    fulfill = incoming(receiver.receive(prepare)).accept(10)
    assert isinstance(fulfill, Fulfill)
    assert open_reply(credentials, fulfill.data) == StreamPacket(1, 13, 10, [])


def test_accept_without_a_total_fulfills_without_a_receipt(
    receiver: StreamReceiver, credentials: Credentials
) -> None:
    fulfill = incoming(receiver.receive(prepare_for(credentials, 10, MONEY))).accept()
    assert open_reply(credentials, fulfill.data).frames == []


def test_decline_temporarily_is_t00_with_stream_reply(
    receiver: StreamReceiver, credentials: Credentials
) -> None:
    prepare = prepare_for(credentials, 10, MONEY, sequence=11)
    reject = assert_stream_reject(incoming(receiver.receive(prepare)).decline_temporarily(), "T00")
    assert open_reply(credentials, reject.data) == StreamPacket(11, 14, 10, [])


def test_decline_finally_is_f99_with_connection_close(
    receiver: StreamReceiver, credentials: Credentials
) -> None:
    prepare = prepare_for(credentials, 10, MONEY, sequence=12)
    reject = assert_stream_reject(incoming(receiver.receive(prepare)).decline_finally(), "F99")
    assert open_reply(credentials, reject.data) == StreamPacket(
        12, 14, 10, [ConnectionCloseFrame(ErrorCode.NO_ERROR, "")]
    )


def test_a_receiver_on_another_replica_fulfills_the_same_connection(
    credentials: Credentials,
) -> None:
    replica = StreamReceiver(StreamServer(SECRET, BASE))
    prepare = prepare_for(credentials, 10, MONEY)
    assert isinstance(incoming(replica.receive(prepare)).accept(10), Fulfill)


def test_extra_segments_after_the_token_reach_the_same_connection(
    receiver: StreamReceiver, credentials: Credentials
) -> None:
    prepare = prepare_for(credentials, 10, MONEY)
    prepare.destination = credentials.destination_account + ".extra"
    assert incoming(receiver.receive(prepare)).payment_tag == "order-7"
