"""The STREAM receiver: turns an incoming Prepare into a Fulfill or Reject (RFC 29, §6.7 of our
protocol notes), the way @interledger/stream-receiver and ilp-protocol-stream answer.

Sans-IO: :meth:`StreamReceiver.receive` either returns the reply at once (not for us, not
authentic, a probe, too little money, a close) or an :class:`IncomingMoney` that the application
accepts — after crediting the money and learning the running total for the receipt — or declines.
"""

from __future__ import annotations

from dataclasses import dataclass

from kiungo.ilp.oer import DecodeError
from kiungo.ilp.packet import Fulfill, PacketType, Prepare, Reject
from kiungo.stream.crypto import DecryptionError, condition_for
from kiungo.stream.packet import (
    ConnectionAssetDetailsFrame,
    ConnectionCloseFrame,
    ConnectionNewAddressFrame,
    ErrorCode,
    Frame,
    StreamPacket,
    StreamReceiptFrame,
    decode_stream_packet,
    encode_stream_packet,
)
from kiungo.stream.receipt import create_receipt
from kiungo.stream.server import ConnectionDetails, StreamServer

__all__ = ["IncomingMoney", "StreamReceiver"]

_RECEIPT_STREAM_ID = 1


@dataclass(slots=True)
class _ReplyBuilder:
    connection: ConnectionDetails
    triggered_by: str
    sequence: int
    received_amount: int
    frames: list[Frame]

    def _data(self, packet_type: int) -> bytes:
        plain = encode_stream_packet(
            StreamPacket(self.sequence, packet_type, self.received_amount, self.frames)
        )
        return self.connection.keys.encrypt(plain)

    def fulfill(self, fulfillment: bytes) -> Fulfill:
        return Fulfill(fulfillment, self._data(PacketType.FULFILL))

    def reject(self, code: str) -> Reject:
        return Reject(code, self.triggered_by, "", self._data(PacketType.REJECT))


class IncomingMoney:
    """An authentic, fulfillable Prepare carrying money, awaiting the application's decision."""

    __slots__ = ("_builder", "_fulfillment", "amount", "connection", "prepare", "request")

    def __init__(
        self,
        prepare: Prepare,
        request: StreamPacket,
        connection: ConnectionDetails,
        fulfillment: bytes,
        builder: _ReplyBuilder,
    ) -> None:
        self.prepare = prepare
        self.request = request
        self.connection = connection
        self.amount = prepare.amount
        self._fulfillment = fulfillment
        self._builder = builder

    @property
    def payment_tag(self) -> str | None:
        return self.connection.payment_tag

    @property
    def connection_id(self) -> str:
        return self.connection.connection_id

    def accept(self, total_received: int | None = None) -> Fulfill:
        """Fulfill; with receipts set up, receipt ``total_received`` (this packet included)."""
        receipt_setup = self.connection.receipt_setup
        if receipt_setup is not None and total_received is not None:
            receipt = create_receipt(
                receipt_setup.nonce, _RECEIPT_STREAM_ID, total_received, receipt_setup.secret
            )
            self._builder.frames.append(StreamReceiptFrame(_RECEIPT_STREAM_ID, receipt))
        return self._builder.fulfill(self._fulfillment)

    def decline_temporarily(self) -> Reject:
        """T00 with a STREAM reply: the sender may retry later."""
        return self._builder.reject("T00")

    def decline_finally(self) -> Reject:
        """F99 with ConnectionClose: the sender stops paying this connection."""
        self._builder.frames.append(ConnectionCloseFrame(ErrorCode.NO_ERROR, ""))
        return self._builder.reject("F99")


class StreamReceiver:
    """Answers Prepares addressed to connections of a :class:`StreamServer`."""

    def __init__(self, server: StreamServer) -> None:
        self.server = server
        self.address = server.base_address

    def receive(self, prepare: Prepare) -> Fulfill | Reject | IncomingMoney:
        connection = self.server.connection(prepare.destination)
        if connection is None:
            if self.server.token_segment(prepare.destination) is None:
                return Reject("F02", self.address, "", b"")
            return Reject("F06", self.address, "", b"")
        keys = connection.keys
        try:
            request = decode_stream_packet(keys.decrypt(prepare.data))
        except (DecryptionError, DecodeError):
            return Reject("F06", self.address, "", b"")
        if request.ilp_packet_type != PacketType.PREPARE:
            return Reject("F00", self.address, "", b"")

        builder = _ReplyBuilder(connection, self.address, request.sequence, prepare.amount, [])
        new_address = False
        for frame in request.frames:
            if type(frame) is ConnectionCloseFrame:
                builder.frames.append(ConnectionCloseFrame(ErrorCode.NO_ERROR, ""))
                return builder.reject("F99")
            if type(frame) is ConnectionNewAddressFrame:
                new_address = True
        if new_address and connection.asset is not None:
            builder.frames.append(
                ConnectionAssetDetailsFrame(connection.asset.code, connection.asset.scale)
            )
        if prepare.amount < request.prepare_amount:
            return builder.reject("F99")
        fulfillment = keys.fulfillment(prepare.data)
        if condition_for(fulfillment) != prepare.execution_condition:
            return builder.reject("F99")
        if prepare.amount == 0:
            return builder.fulfill(fulfillment)
        return IncomingMoney(prepare, request, connection, fulfillment, builder)
