"""STREAM (RFC 29), sans-IO: crypto, packets and frames, receipts, the receiver and the sender."""

from kiungo.stream.crypto import DecryptionError, StreamKeys
from kiungo.stream.packet import StreamPacket, decode_stream_packet, encode_stream_packet
from kiungo.stream.receipt import Receipt, ReceiptError, create_receipt, verify_receipt
from kiungo.stream.receiver import IncomingMoney, StreamReceiver
from kiungo.stream.server import Asset, ConnectionDetails, Credentials, ReceiptSetup, StreamServer

__all__ = [
    "Asset",
    "ConnectionDetails",
    "Credentials",
    "DecryptionError",
    "IncomingMoney",
    "Receipt",
    "ReceiptError",
    "ReceiptSetup",
    "StreamKeys",
    "StreamPacket",
    "StreamReceiver",
    "StreamServer",
    "create_receipt",
    "decode_stream_packet",
    "encode_stream_packet",
    "verify_receipt",
]
