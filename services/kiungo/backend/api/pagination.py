"""Relay connections over any table with ``created_at`` and ``id``: opaque keyset cursors.

Pages are ordered by ``(created_at, id)``, which never ties, so a page boundary is exact even
while rows are inserted; a cursor is that pair, base64url-encoded. ``first``/``last`` are at most
100 (20 when neither is given).
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from kiungo.backend.api.common import PageInfo, SortOrder
from kiungo.backend.errors import bad_input

__all__ = [
    "MAX_PAGE",
    "PageRequest",
    "decode_cursor",
    "encode_cursor",
    "fetch_page",
    "filter_in",
]

MAX_PAGE = 100
DEFAULT_PAGE = 20


def encode_cursor(created_at: datetime, row_id: uuid.UUID) -> str:
    raw = f"{created_at.isoformat()}|{row_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created, _, row_id = base64.urlsafe_b64decode(padded).decode().partition("|")
        moment = datetime.fromisoformat(created)
        if moment.tzinfo is None:
            raise ValueError("naive")
        return moment, uuid.UUID(row_id)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise bad_input(f"{cursor!r} is not a cursor this API gave out") from None


def filter_in(
    where: list[str], params: list[Any], column: str, values: Sequence[Any], sql_type: str
) -> None:
    """Add ``column = ANY($n::sql_type[])`` with ``values`` to a page's conditions (a
    ``FilterString``'s ``in``)."""
    params.append(list(values))
    where.append(f"{column} = ANY(${len(params)}::{sql_type}[])")


@dataclass(frozen=True, slots=True)
class PageRequest:
    first: int | None = None
    last: int | None = None
    after: str | None = None
    before: str | None = None
    sort_order: SortOrder | None = None


async def fetch_page(
    conn: asyncpg.Connection | asyncpg.Pool,
    select: str,
    where: Sequence[str],
    params: Sequence[Any],
    page: PageRequest,
    *,
    alias: str = "",
    default_order: SortOrder = SortOrder.DESC,
) -> tuple[list[asyncpg.Record], PageInfo, list[str]]:
    """Run ``select`` (``SELECT ... FROM ...``, placeholders ``$1``.. for ``params``) under the
    ``where`` conditions, one page of it. Returns the rows, the page info and each row's cursor.
    """
    if page.first is not None and page.last is not None:
        raise bad_input("give first or last, not both")
    for name, value in (("first", page.first), ("last", page.last)):
        if value is not None and not 0 <= value <= MAX_PAGE:
            raise bad_input(f"{name} must be from 0 to {MAX_PAGE}", field=name)
    backward = page.last is not None or (page.before is not None and page.first is None)
    size = (page.last if backward else page.first) or DEFAULT_PAGE
    if (page.last if backward else page.first) == 0:
        size = 0
    ascending = (page.sort_order or default_order) is SortOrder.ASC
    # Walking backward reads the other way and reverses the rows afterward.
    read_ascending = ascending != backward
    column = f"{alias}." if alias else ""
    conditions = list(where)
    arguments = list(params)
    cursor = page.before if backward else page.after
    if cursor is not None:
        created_at, row_id = decode_cursor(cursor)
        arguments += [created_at, row_id]
        op = ">" if read_ascending else "<"
        conditions.append(
            f"({column}created_at, {column}id) {op} (${len(arguments) - 1}, ${len(arguments)})"
        )
    direction = "ASC" if read_ascending else "DESC"
    sql = select
    if conditions:
        sql += " WHERE " + " AND ".join(f"({c})" for c in conditions)
    sql += f" ORDER BY {column}created_at {direction}, {column}id {direction} LIMIT {size + 1}"
    rows = list(await conn.fetch(sql, *arguments))
    more = len(rows) > size
    rows = rows[:size]
    if backward:
        rows.reverse()
    cursors = [encode_cursor(r["created_at"], r["id"]) for r in rows]
    info = PageInfo(
        start_cursor=cursors[0] if cursors else None,
        end_cursor=cursors[-1] if cursors else None,
        has_next_page=more if not backward else page.before is not None,
        has_previous_page=more if backward else page.after is not None,
    )
    return rows, info, cursors
