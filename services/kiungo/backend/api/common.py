"""Scalars, shared types and input checks of the admin API."""

from __future__ import annotations

import enum
import json
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, NewType

import strawberry
from graphql import IntValueNode, StringValueNode, ValueNode

from kiungo.backend.errors import bad_input
from kiungo.events import iso_time
from kiungo.models.sql import stored_json

__all__ = [
    "SCALARS",
    "U64_MAX",
    "Amount",
    "AmountInput",
    "FilterString",
    "JSONObject",
    "PageInfo",
    "SortOrder",
    "UInt8",
    "UInt64",
    "filter_binds",
    "iso",
    "parse_uuid",
    "positive_amount",
    "state_values",
    "uuid_values",
]

U64_MAX = 2**64 - 1


def _parse_u64(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("UInt64 must be a whole number from 0 to 2^64 - 1")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 20:
        number = int(value)
    else:
        raise ValueError("UInt64 must be a whole number from 0 to 2^64 - 1, as a string")
    if not 0 <= number <= U64_MAX:
        raise ValueError("UInt64 must be a whole number from 0 to 2^64 - 1")
    return number


def _parse_u64_literal(node: ValueNode, _variables: dict[str, Any] | None = None) -> int:
    if isinstance(node, IntValueNode | StringValueNode):
        return _parse_u64(node.value if isinstance(node, StringValueNode) else int(node.value))
    raise ValueError("UInt64 must be a whole number from 0 to 2^64 - 1")


if TYPE_CHECKING:
    # For mypy the scalars are what they hold; at run time distinct types the schema maps.
    UInt64 = int
    UInt8 = int
    JSONObject = dict[str, Any]
else:
    UInt64 = NewType("UInt64", int)
    UInt8 = NewType("UInt8", int)
    JSONObject = NewType("JSONObject", object)

_UINT64 = strawberry.scalar(
    name="UInt64",
    description="An unsigned 64-bit whole number (0 to 2^64 - 1), written as a string.",
    serialize=lambda value: str(int(value)),
    parse_value=_parse_u64,
    parse_literal=_parse_u64_literal,
)


def _parse_u8(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 255:
        raise ValueError("UInt8 must be a whole number from 0 to 255")
    return value


def _parse_u8_literal(node: ValueNode, _variables: dict[str, Any] | None = None) -> int:
    if isinstance(node, IntValueNode):
        return _parse_u8(int(node.value))
    raise ValueError("UInt8 must be a whole number from 0 to 255")


_UINT8 = strawberry.scalar(
    name="UInt8",
    description="An unsigned 8-bit whole number (0 to 255).",
    serialize=int,
    parse_value=_parse_u8,
    parse_literal=_parse_u8_literal,
)


def _parse_object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError("JSONObject must be a JSON object")
    return value


_JSON_OBJECT = strawberry.scalar(
    name="JSONObject",
    description="A JSON object (ECMA-404).",
    serialize=lambda value: value,
    parse_value=_parse_object,
)


# Given to the schema as scalar_overrides: the NewTypes stay plain types for mypy.
SCALARS: dict[object, Any] = {UInt64: _UINT64, UInt8: _UINT8, JSONObject: _JSON_OBJECT}


@strawberry.enum
class SortOrder(enum.Enum):
    ASC = "ASC"
    DESC = "DESC"


@strawberry.type
class PageInfo:
    end_cursor: str | None
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None


@strawberry.type
class Amount:
    value: UInt64
    asset_code: str
    asset_scale: UInt8


@strawberry.input
class AmountInput:
    value: UInt64
    asset_code: str
    asset_scale: UInt8


@strawberry.input(
    description="Strings a field must be one of (`in`) and must not be (`notIn`); either or both."
)
class FilterString:
    in_: list[str] | None = strawberry.field(
        name="in", default=None, description="Array of strings to include."
    )
    not_in: list[str] | None = strawberry.field(
        default=None, description="Array of strings to exclude."
    )


def filter_binds(
    values: FilterString | None, name: str, parse: Callable[[str], Any] | None = None
) -> dict[str, list[Any]]:
    """The binds of a listing's ``name`` filter (:func:`~kiungo.backend.api.pagination.
    in_filter`): ``name`` for ``in``, ``name_not`` for a non-empty ``notIn`` (as Rafiki, an
    empty ``notIn`` excludes nothing), each value through ``parse``; none when not given."""
    if values is None:
        return {}
    convert = parse or str
    binds: dict[str, list[Any]] = {}
    if values.in_ is not None:
        binds[name] = [convert(v) for v in values.in_]
    if values.not_in:
        binds[f"{name}_not"] = [convert(v) for v in values.not_in]
    return binds


def uuid_values(what: str) -> Callable[[str], uuid.UUID]:
    """A filter's parser of UUIDs: BAD_USER_INPUT naming ``what`` for one that is not."""
    return lambda value: parse_uuid(value, what)


def state_values(states: type[enum.Enum], what: str = "state") -> Callable[[str], str]:
    """A filter's parser of states, each one of ``states`` (else BAD_USER_INPUT)."""
    known = {s.value for s in states}

    def parse(value: str) -> str:
        if value not in known:
            raise bad_input(f"{what} must be one of {', '.join(sorted(known))}")
        return value

    return parse


def parse_uuid(value: str, what: str) -> uuid.UUID:
    """A UUID argument; anything else is BAD_USER_INPUT naming the argument."""
    try:
        return uuid.UUID(value)
    except (ValueError, TypeError, AttributeError):
        raise bad_input(f"{what} must be a UUID, not {value!r}", field=what) from None


def positive_amount(value: int, what: str = "amount") -> int:
    if value <= 0:
        raise bad_input(f"{what} must be above zero", field=what)
    return value


def iso(moment: datetime) -> str:
    """A timestamp as JavaScript's toISOString writes it (Rafiki's createdAt format)."""
    text = iso_time(moment)
    assert text is not None
    return text


MAX_METADATA_BYTES = 16 * 1024


def metadata_value(raw: Any) -> dict[str, Any] | None:
    """A payment's stored metadata (jsonb, or its text) as the API returns it."""
    if raw is None:
        return None
    value = stored_json(raw)
    return value if isinstance(value, dict) else None


def metadata_json(metadata: dict[str, Any] | None) -> str | None:
    """Metadata from a request as the JSON text Postgres stores; BAD_USER_INPUT when it is
    larger than MAX_METADATA_BYTES or not storable JSON (an infinite number such as 1e400,
    which JSON has no way to write)."""
    if metadata is None:
        return None
    try:
        text = json.dumps(metadata, allow_nan=False)
    except ValueError:
        raise bad_input("metadata must be JSON: no infinite numbers", field="metadata") from None
    if len(text.encode()) > MAX_METADATA_BYTES:
        raise bad_input(f"metadata is at most {MAX_METADATA_BYTES} bytes of JSON", field="metadata")
    return text
