"""Octet Encoding Rules as Interledger uses them (RFC 30).

Length determinants, variable-length octet strings and unsigned integers, and fixed-length
UInts. Decoding is strict about lengths: a long-form length below 128, an indefinite length
(0x80), a length of length over 8 or bytes that run past the buffer raise :class:`DecodeError`,
the one error type every decoder in :mod:`kiungo.ilp` and :mod:`kiungo.stream` raises.
Encoding always emits the canonical form.
"""

from __future__ import annotations

__all__ = [
    "MAX_UINT64",
    "DecodeError",
    "Reader",
    "encode_length",
    "encode_var_octets",
    "encode_var_uint",
    "read_length",
    "read_var_octets",
]

MAX_UINT64 = (1 << 64) - 1


class DecodeError(ValueError):
    """Bytes that are not a valid encoding of what was asked for."""


def read_length(buf: bytes, pos: int) -> tuple[int, int]:
    """Read a length determinant at ``pos``; return ``(length, position after it)``."""
    try:
        first = buf[pos]
    except IndexError:
        raise DecodeError("unexpected end of data: length determinant expected") from None
    if first < 0x80:
        return first, pos + 1
    n = first & 0x7F
    if n == 0:
        raise DecodeError("indefinite length (0x80) is not allowed")
    if n > 8:
        raise DecodeError(f"length of length {n} is more than 8 bytes")
    end = pos + 1 + n
    if end > len(buf):
        raise DecodeError("unexpected end of data inside a length determinant")
    length = int.from_bytes(buf[pos + 1 : end], "big")
    if length < 0x80:
        raise DecodeError(f"non-canonical length determinant: {length} in long form")
    return length, end


def read_var_octets(buf: bytes, pos: int) -> tuple[bytes, int]:
    """Read a variable-length octet string at ``pos``; return ``(content, position after)``."""
    length, start = read_length(buf, pos)
    end = start + length
    if end > len(buf):
        raise DecodeError(f"octet string of {length} bytes runs past the end of the data")
    return bytes(buf[start:end]), end


def encode_length(length: int) -> bytes:
    """The canonical length determinant for ``length``."""
    if length < 0x80:
        if length < 0:
            raise ValueError("a length cannot be negative")
        return bytes((length,))
    body = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(body),)) + body


def encode_var_octets(value: bytes) -> bytes:
    """``value`` prefixed with its length determinant."""
    n = len(value)
    if n < 0x80:
        return bytes((n,)) + value
    return encode_length(n) + value


def encode_var_uint(value: int) -> bytes:
    """A VarUInt: minimal big-endian bytes (one 0x00 byte for zero), length-prefixed."""
    if value < 0:
        raise ValueError("a VarUInt cannot be negative")
    if value > MAX_UINT64:
        raise ValueError("a VarUInt above 2^64-1 is not supported")
    if value < 0x100:
        return bytes((1, value))
    size = (value.bit_length() + 7) // 8
    return bytes((size,)) + value.to_bytes(size, "big")


class Reader:
    """A cursor over a byte string for the compound structures (STREAM frames, IL-DCP, CCP)."""

    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes, pos: int = 0) -> None:
        self.buf = buf
        self.pos = pos

    @property
    def remaining(self) -> int:
        return len(self.buf) - self.pos

    def read(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.buf):
            raise DecodeError(f"unexpected end of data: {n} bytes expected")
        out = bytes(self.buf[self.pos : end])
        self.pos = end
        return out

    def read_uint8(self) -> int:
        try:
            value = self.buf[self.pos]
        except IndexError:
            raise DecodeError("unexpected end of data: UInt8 expected") from None
        self.pos += 1
        return value

    def read_uint(self, size: int) -> int:
        return int.from_bytes(self.read(size), "big")

    def read_length(self) -> int:
        length, self.pos = read_length(self.buf, self.pos)
        return length

    def read_var_octets(self) -> bytes:
        buf = self.buf
        pos = self.pos
        if pos < len(buf) and buf[pos] < 0x80:  # short form: the common case, inline
            end = pos + 1 + buf[pos]
            if end > len(buf):
                raise DecodeError("octet string runs past the end of the data")
            self.pos = end
            return bytes(buf[pos + 1 : end])
        value, self.pos = read_var_octets(buf, pos)
        return value

    def read_var_uint(self) -> int:
        buf = self.buf
        pos = self.pos
        if pos >= len(buf):
            raise DecodeError("unexpected end of data: VarUInt expected")
        n = buf[pos]
        if n == 0:
            raise DecodeError("a VarUInt cannot be empty")
        if n > 8:
            raise DecodeError("VarUInt larger than 2^64-1")
        end = pos + 1 + n
        if end > len(buf):
            raise DecodeError("VarUInt runs past the end of the data")
        self.pos = end
        return int.from_bytes(buf[pos + 1 : end], "big")

    def read_var_uint_saturating(self) -> int:
        """A VarUInt where 9+ bytes mean 2^64-1 (RFC 29 §5.1.4, receiveMax and sendMax)."""
        content = self.read_var_octets()
        if not content:
            raise DecodeError("a VarUInt cannot be empty")
        if len(content) > 8:
            return MAX_UINT64
        return int.from_bytes(content, "big")

    def read_ascii(self) -> str:
        raw = self.read_var_octets()
        if not raw.isascii():
            raise DecodeError("expected an ASCII string")
        return raw.decode("ascii")

    def read_utf8(self) -> str:
        raw = self.read_var_octets()
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise DecodeError("expected a UTF-8 string") from None
