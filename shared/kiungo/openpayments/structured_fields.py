"""The part of RFC 8941 (Structured Field Values for HTTP) that HTTP Message Signatures need.

``Signature-Input`` is a dictionary of inner lists of strings with parameters, ``Signature`` and
``Content-Digest`` are dictionaries of byte sequences. This parser reads dictionaries whose members
are items or inner lists, with integer, string, token, byte sequence and boolean bare items;
decimals are refused (nothing we read carries one). It is strict where RFC 8941 lets a parser
choose: a key repeated in one dictionary or parameter list is refused rather than "last wins",
so that a signer and a verifier can never read different values from the same field. Sizes are
bounded; every refusal is a :class:`StructuredFieldError`.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "MAX_FIELD_LENGTH",
    "MAX_INNER_LIST_ITEMS",
    "MAX_MEMBERS",
    "MAX_PARAMETERS",
    "BareItem",
    "InnerList",
    "Item",
    "StructuredFieldError",
    "Token",
    "parse_dictionary",
    "serialize_bare_item",
    "serialize_inner_list",
    "serialize_parameters",
]

MAX_FIELD_LENGTH = 8192
MAX_MEMBERS = 16
MAX_INNER_LIST_ITEMS = 32
MAX_PARAMETERS = 16
# RFC 8941 §3.3.1: integers have at most 15 digits.
_MAX_INTEGER_DIGITS = 15

_KEY = re.compile(r"[a-z*][a-z0-9_\-.*]*")
_TOKEN = re.compile(r"[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*")
_INTEGER = re.compile(r"-?[0-9]+")
_BASE64 = re.compile(r"[A-Za-z0-9+/=]*")


class StructuredFieldError(ValueError):
    """The field is not a structured field of the expected shape."""


@dataclass(frozen=True)
class Token:
    """An RFC 8941 token (an unquoted identifier such as ``sha-512`` or ``foo/bar``)."""

    value: str


BareItem = int | str | bytes | bool | Token
Parameters = tuple[tuple[str, BareItem], ...]


@dataclass(frozen=True)
class Item:
    value: BareItem
    params: Parameters


@dataclass(frozen=True)
class InnerList:
    items: tuple[Item, ...]
    params: Parameters


# Printable ASCII but the quote and the backslash: what a string holds unescaped.
_STRING_RUN = re.compile(r"[ !#-\[\]-~]*")


class _Reader:
    def __init__(self, text: str) -> None:
        self.text = text
        self.at = 0

    def peek(self) -> str:
        return self.text[self.at] if self.at < len(self.text) else ""

    def take(self, char: str) -> bool:
        if self.peek() == char:
            self.at += 1
            return True
        return False

    def expect(self, char: str) -> None:
        if not self.take(char):
            raise StructuredFieldError(f"expected {char!r} at offset {self.at}")

    def skip(self, chars: str) -> None:
        while self.peek() != "" and self.peek() in chars:
            self.at += 1

    def match(self, pattern: re.Pattern[str]) -> str:
        found = pattern.match(self.text, self.at)
        if found is None or found.end() == self.at:
            raise StructuredFieldError(f"unexpected character at offset {self.at}")
        self.at = found.end()
        return found.group()

    def done(self) -> bool:
        return self.at >= len(self.text)


def parse_dictionary(text: str) -> dict[str, Item | InnerList]:
    """Parse a dictionary field (RFC 8941 §4.2.2); join several field lines with ", " first."""
    if len(text) > MAX_FIELD_LENGTH:
        raise StructuredFieldError(f"field longer than {MAX_FIELD_LENGTH} characters")
    if not text.isascii():
        raise StructuredFieldError("field is not ASCII")
    reader = _Reader(text.strip(" "))
    members: dict[str, Item | InnerList] = {}
    if reader.done():
        return members
    while True:
        key = reader.match(_KEY)
        if key in members:
            raise StructuredFieldError(f"dictionary key {key!r} repeated")
        if len(members) == MAX_MEMBERS:
            raise StructuredFieldError(f"more than {MAX_MEMBERS} dictionary members")
        if reader.take("="):
            members[key] = _parse_item_or_inner_list(reader)
        else:
            members[key] = Item(True, _parse_parameters(reader))
        reader.skip(" \t")
        if reader.done():
            return members
        reader.expect(",")
        reader.skip(" \t")
        if reader.done():
            raise StructuredFieldError("dictionary ends with a comma")


def _parse_item_or_inner_list(reader: _Reader) -> Item | InnerList:
    if reader.peek() != "(":
        return Item(_parse_bare_item(reader), _parse_parameters(reader))
    reader.expect("(")
    items: list[Item] = []
    while True:
        reader.skip(" ")
        if reader.take(")"):
            return InnerList(tuple(items), _parse_parameters(reader))
        if len(items) == MAX_INNER_LIST_ITEMS:
            raise StructuredFieldError(f"more than {MAX_INNER_LIST_ITEMS} inner list items")
        items.append(Item(_parse_bare_item(reader), _parse_parameters(reader)))
        if reader.peek() not in (" ", ")"):
            raise StructuredFieldError(f"inner list items not separated at offset {reader.at}")


def _parse_parameters(reader: _Reader) -> Parameters:
    params: list[tuple[str, BareItem]] = []
    while reader.take(";"):
        reader.skip(" ")
        key = reader.match(_KEY)
        if any(key == seen for seen, _ in params):
            raise StructuredFieldError(f"parameter {key!r} repeated")
        if len(params) == MAX_PARAMETERS:
            raise StructuredFieldError(f"more than {MAX_PARAMETERS} parameters")
        params.append((key, _parse_bare_item(reader) if reader.take("=") else True))
    return tuple(params)


def _parse_bare_item(reader: _Reader) -> BareItem:
    char = reader.peek()
    if char == '"':
        return _parse_string(reader)
    if char == ":":
        return _parse_byte_sequence(reader)
    if char == "?":
        reader.expect("?")
        if reader.take("1"):
            return True
        reader.expect("0")
        return False
    if char == "-" or char.isdigit():
        digits = reader.match(_INTEGER)
        if reader.peek() == ".":
            raise StructuredFieldError("decimals are not supported")
        if len(digits.lstrip("-")) > _MAX_INTEGER_DIGITS:
            raise StructuredFieldError("integer longer than 15 digits")
        return int(digits)
    if char != "" and (char.isalpha() or char == "*"):
        return Token(reader.match(_TOKEN))
    raise StructuredFieldError(f"expected an item at offset {reader.at}")


def _parse_string(reader: _Reader) -> str:
    reader.expect('"')
    out: list[str] = []
    while True:
        # A run of plain characters at once; then the quote, an escape or a refusal.
        run = _STRING_RUN.match(reader.text, reader.at)
        assert run is not None  # the pattern matches the empty string
        out.append(run.group())
        reader.at = run.end()
        char = reader.peek()
        if char == "":
            raise StructuredFieldError("unterminated string")
        reader.at += 1
        if char == '"':
            return "".join(out)
        if char == "\\":
            escaped = reader.peek()
            if escaped not in ('"', "\\") or escaped == "":
                raise StructuredFieldError("bad escape in string")
            reader.at += 1
            out.append(escaped)
        else:
            raise StructuredFieldError("control character in string")


def _parse_byte_sequence(reader: _Reader) -> bytes:
    reader.expect(":")
    encoded = _BASE64.match(reader.text, reader.at)
    assert encoded is not None  # the pattern matches the empty string
    reader.at = encoded.end()
    reader.expect(":")
    try:
        return base64.b64decode(encoded.group(), validate=True)
    except binascii.Error as exc:
        raise StructuredFieldError("byte sequence is not base64") from exc


def serialize_bare_item(value: BareItem) -> str:
    """Serialize a bare item (RFC 8941 §4.1.3); strings must be printable ASCII."""
    if isinstance(value, bool):
        return "?1" if value else "?0"
    if isinstance(value, int):
        if len(str(abs(value))) > _MAX_INTEGER_DIGITS:
            raise StructuredFieldError("integer longer than 15 digits")
        return str(value)
    if isinstance(value, str):
        if not all(" " <= char <= "~" for char in value):
            raise StructuredFieldError("string holds a character outside printable ASCII")
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, bytes):
        return ":" + base64.b64encode(value).decode() + ":"
    if _TOKEN.fullmatch(value.value) is None:
        raise StructuredFieldError(f"{value.value!r} is not a token")
    return value.value


def serialize_parameters(params: Sequence[tuple[str, BareItem]]) -> str:
    out = []
    for key, value in params:
        if _KEY.fullmatch(key) is None:
            raise StructuredFieldError(f"{key!r} is not a key")
        out.append(f";{key}" if value is True else f";{key}={serialize_bare_item(value)}")
    return "".join(out)


def serialize_inner_list(inner: InnerList) -> str:
    """Serialize an inner list with its parameters (RFC 8941 §4.1.1.1)."""
    items = " ".join(
        serialize_bare_item(item.value) + serialize_parameters(item.params) for item in inner.items
    )
    return f"({items}){serialize_parameters(inner.params)}"
