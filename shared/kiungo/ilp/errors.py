"""ILP error codes (RFC 27 §3.3) as exception types.

Any layer may raise one of these; the edge turns it into a Reject with :meth:`IlpError.to_reject`,
putting our own address in ``triggeredBy`` (an empty triggeredBy makes a Reject unreadable to
interledger-rs). Codes we do not know are carried as :class:`IlpError` with their raw code and
classified by their first letter.
"""

from __future__ import annotations

from typing import ClassVar

from kiungo.ilp.oer import DecodeError
from kiungo.ilp.packet import Reject

__all__ = [
    "AmountTooLargeError",
    "BadRequestError",
    "CannotReceiveError",
    "ConnectorBusyError",
    "FinalApplicationError",
    "IlpError",
    "InsufficientDestinationAmountError",
    "InsufficientLiquidityError",
    "InsufficientSourceAmountError",
    "InsufficientTimeoutError",
    "InternalError",
    "InvalidAmountError",
    "InvalidPacketError",
    "PeerBusyError",
    "PeerUnreachableError",
    "RateLimitedError",
    "RelativeApplicationError",
    "TemporaryApplicationError",
    "TransferTimedOutError",
    "UnexpectedPaymentError",
    "UnreachableError",
    "WrongConditionError",
    "decode_amount_too_large_data",
    "encode_amount_too_large_data",
    "error_class_for_code",
]


class IlpError(Exception):
    """An ILP-level failure that becomes a Reject packet."""

    code: ClassVar[str] = "F00"
    name: ClassVar[str] = "Bad Request"

    def __init__(self, message: str = "", data: bytes = b"", *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data
        if code is not None:
            self.code = code  # type: ignore[misc]

    @property
    def is_final(self) -> bool:
        return self.code[0] == "F"

    @property
    def is_temporary(self) -> bool:
        return self.code[0] == "T"

    @property
    def is_relative(self) -> bool:
        return self.code[0] == "R"

    def to_reject(self, triggered_by: str) -> Reject:
        """The Reject packet for this error, triggered by the node at ``triggered_by``."""
        return Reject(self.code, triggered_by, self.message, self.data)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r})"


class BadRequestError(IlpError):
    code = "F00"
    name = "Bad Request"


class InvalidPacketError(IlpError):
    code = "F01"
    name = "Invalid Packet"


class UnreachableError(IlpError):
    code = "F02"
    name = "Unreachable"


class InvalidAmountError(IlpError):
    code = "F03"
    name = "Invalid Amount"


class InsufficientDestinationAmountError(IlpError):
    code = "F04"
    name = "Insufficient Destination Amount"


class WrongConditionError(IlpError):
    code = "F05"
    name = "Wrong Condition"


class UnexpectedPaymentError(IlpError):
    code = "F06"
    name = "Unexpected Payment"


class CannotReceiveError(IlpError):
    code = "F07"
    name = "Cannot Receive"


class AmountTooLargeError(IlpError):
    """F08, carrying ``receivedAmount || maximumAmount`` (two UInt64) as its data."""

    code = "F08"
    name = "Amount Too Large"

    def __init__(self, received_amount: int, maximum_amount: int, message: str = "") -> None:
        self.received_amount = received_amount
        self.maximum_amount = maximum_amount
        super().__init__(
            message or f"packet amount {received_amount} exceeds maximum {maximum_amount}",
            encode_amount_too_large_data(received_amount, maximum_amount),
        )


class FinalApplicationError(IlpError):
    code = "F99"
    name = "Application Error"


class InternalError(IlpError):
    code = "T00"
    name = "Internal Error"


class PeerUnreachableError(IlpError):
    code = "T01"
    name = "Peer Unreachable"


class PeerBusyError(IlpError):
    code = "T02"
    name = "Peer Busy"


class ConnectorBusyError(IlpError):
    code = "T03"
    name = "Connector Busy"


class InsufficientLiquidityError(IlpError):
    code = "T04"
    name = "Insufficient Liquidity"


class RateLimitedError(IlpError):
    code = "T05"
    name = "Rate Limited"


class TemporaryApplicationError(IlpError):
    code = "T99"
    name = "Application Error"


class TransferTimedOutError(IlpError):
    code = "R00"
    name = "Transfer Timed Out"


class InsufficientSourceAmountError(IlpError):
    code = "R01"
    name = "Insufficient Source Amount"


class InsufficientTimeoutError(IlpError):
    code = "R02"
    name = "Insufficient Timeout"


class RelativeApplicationError(IlpError):
    code = "R99"
    name = "Application Error"


_BY_CODE: dict[str, type[IlpError]] = {
    cls.code: cls
    for cls in (
        BadRequestError,
        InvalidPacketError,
        UnreachableError,
        InvalidAmountError,
        InsufficientDestinationAmountError,
        WrongConditionError,
        UnexpectedPaymentError,
        CannotReceiveError,
        AmountTooLargeError,
        FinalApplicationError,
        InternalError,
        PeerUnreachableError,
        PeerBusyError,
        ConnectorBusyError,
        InsufficientLiquidityError,
        RateLimitedError,
        TemporaryApplicationError,
        TransferTimedOutError,
        InsufficientSourceAmountError,
        InsufficientTimeoutError,
        RelativeApplicationError,
    )
}


def error_class_for_code(code: str) -> type[IlpError] | None:
    """The exception type for an RFC 27 code, or None for a code RFC 27 does not define."""
    return _BY_CODE.get(code)


def encode_amount_too_large_data(received_amount: int, maximum_amount: int) -> bytes:
    """F08 data: ``receivedAmount UInt64 || maximumAmount UInt64``."""
    return received_amount.to_bytes(8, "big") + maximum_amount.to_bytes(8, "big")


def decode_amount_too_large_data(data: bytes) -> tuple[int, int]:
    """``(receivedAmount, maximumAmount)`` from F08 data; extra trailing bytes are ignored."""
    if len(data) < 16:
        raise DecodeError(f"F08 data must be 16 bytes, got {len(data)}")
    return int.from_bytes(data[0:8], "big"), int.from_bytes(data[8:16], "big")
