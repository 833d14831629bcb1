"""Relay connections over any table with ``created_at`` and ``id``: opaque keyset cursors.

Pages are ordered by ``(created_at, id)``, which never ties, so a page boundary is exact even
while rows are inserted; a cursor is that pair, base64url-encoded. A row's id is a cursor too
(Rafiki's cursors are row ids, and its clients page with ``after: <last node's id>``): it
stands for that row's pair, read when the page is. ``first``/``last`` are at most
100 (20 when neither is given).
"""

from __future__ import annotations

import base64
import binascii
import functools
import inspect
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

import asyncpg
from sqlalchemy import (
    ARRAY,
    DateTime,
    Integer,
    Select,
    Uuid,
    all_,
    any_,
    bindparam,
    select,
    tuple_,
)
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import TypeEngine

from kiungo.backend.api.common import PageInfo, SortOrder
from kiungo.backend.errors import bad_input
from kiungo.models.sql import Statement

__all__ = [
    "MAX_PAGE",
    "ConnectionType",
    "EdgeType",
    "Listing",
    "PageRequest",
    "connection",
    "decode_cursor",
    "encode_cursor",
    "fetch_listing",
    "in_filter",
    "paged",
]

MAX_PAGE = 100
DEFAULT_PAGE = 20
T = TypeVar("T")
N = TypeVar("N")
E = TypeVar("E")
C = TypeVar("C")
N_contra = TypeVar("N_contra", contravariant=True)
E_co = TypeVar("E_co", covariant=True)
C_co = TypeVar("C_co", covariant=True)


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


@dataclass(frozen=True, slots=True)
class PageRequest:
    first: int | None = None
    last: int | None = None
    after: str | None = None
    before: str | None = None
    sort_order: SortOrder | None = None


_PAGE_ARGUMENTS = tuple(
    inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)
    for name, annotation in (
        ("after", str | None),
        ("before", str | None),
        ("first", int | None),
        ("last", int | None),
        ("sort_order", SortOrder | None),
    )
)


def paged(resolver: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """A connection's resolver, written with a ``page: PageRequest`` parameter, as GraphQL sees
    it: that parameter becomes the Relay arguments ``after``, ``before``, ``first``, ``last`` and
    ``sortOrder`` (in that order, where ``page`` stands), which the resolver gets as one
    :class:`PageRequest`. Put it under ``@strawberry.field``."""
    signature = inspect.signature(resolver)
    parameters = list(signature.parameters.values())
    at = [parameter.name for parameter in parameters].index("page")
    own = [
        parameter.replace(kind=inspect.Parameter.KEYWORD_ONLY) for parameter in parameters[at + 1 :]
    ]

    @functools.wraps(resolver)
    async def resolve(
        *args: Any,
        after: str | None = None,
        before: str | None = None,
        first: int | None = None,
        last: int | None = None,
        sort_order: SortOrder | None = None,
        **kwargs: Any,
    ) -> T:
        page = PageRequest(first, last, after, before, sort_order)
        return await resolver(*args, page=page, **kwargs)

    resolve.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[*parameters[:at], *_PAGE_ARGUMENTS, *own]
    )
    return resolve


@dataclass(frozen=True, slots=True)
class _Plan:
    """How a page request reads: which way, how many, from which cursor (a row id to look
    up, or a keyset pair)."""

    backward: bool
    size: int
    read_ascending: bool
    cursor: tuple[datetime, uuid.UUID] | uuid.UUID | None


def _plan(page: PageRequest, default_order: SortOrder) -> _Plan:
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
    cursor = page.before if backward else page.after
    return _Plan(
        backward=backward,
        size=size,
        read_ascending=ascending != backward,
        cursor=None if cursor is None else _cursor(cursor),
    )


def _cursor(cursor: str) -> tuple[datetime, uuid.UUID] | uuid.UUID:
    """A row id (as Rafiki's cursors are), else one of this API's keyset cursors."""
    if len(cursor) == 36:
        try:
            return uuid.UUID(cursor)
        except ValueError:
            pass
    return decode_cursor(cursor)


def _page(
    rows: list[asyncpg.Record], plan: _Plan, page: PageRequest
) -> tuple[list[asyncpg.Record], PageInfo, list[str]]:
    """The page of the ``size + 1`` rows read: the rows in order, the page info, the cursors."""
    more = len(rows) > plan.size
    rows = rows[: plan.size]
    if plan.backward:
        rows.reverse()
    cursors = [encode_cursor(r["created_at"], r["id"]) for r in rows]
    info = PageInfo(
        start_cursor=cursors[0] if cursors else None,
        end_cursor=cursors[-1] if cursors else None,
        has_next_page=more if not plan.backward else page.before is not None,
        has_previous_page=more if plan.backward else page.after is not None,
    )
    return rows, info, cursors


def in_filter(
    name: str, column: ColumnElement[Any], item_type: TypeEngine[Any]
) -> dict[str, ColumnElement[bool]]:
    """A listing's filters for a FilterString on ``column``: ``name`` (one of the bind's
    values, ``in``) and ``name_not`` (none of them, ``notIn``), as
    :func:`~kiungo.backend.api.common.filter_binds` gives their binds."""
    return {
        name: column == any_(bindparam(name, type_=ARRAY(item_type))),
        f"{name}_not": column != all_(bindparam(f"{name}_not", type_=ARRAY(item_type))),
    }


class Listing:
    """A select to page through (its rows have ``created_at`` and ``id``), with the filters a
    caller may apply, each a condition on named binds (``col == any_(bindparam("ids"))``).

    Each shape of page (the filters given, whether there is a cursor, which way it reads) is
    one :class:`Statement`, built the first time it is asked for; the page size is a bind.
    """

    def __init__(
        self, query: Select[Any], filters: Mapping[str, ColumnElement[bool]] | None = None
    ) -> None:
        self._query = query
        self._filters = dict(filters or {})
        self._created_at = query.selected_columns["created_at"]
        self._id = query.selected_columns["id"]
        self._statements: dict[tuple[frozenset[str], bool, bool], Statement] = {}
        rows = query.subquery()
        self._row_cursor = Statement(
            select(rows.c.created_at, rows.c.id).where(
                rows.c.id == bindparam("cursor_row", type_=Uuid)
            )
        )

    async def row_cursor(
        self, conn: asyncpg.Connection | asyncpg.Pool, row_id: uuid.UUID, values: Mapping[str, Any]
    ) -> tuple[datetime, uuid.UUID]:
        """The keyset pair of the row ``row_id`` names (one of the query's, given its binds
        among ``values``); BAD_USER_INPUT when there is none."""
        binds = {k: v for k, v in values.items() if k in self._row_cursor.names}
        row = await self._row_cursor.fetchrow(conn, cursor_row=row_id, **binds)
        if row is None:
            raise bad_input(f"{row_id} is not a cursor this API gave out: no such row")
        return row["created_at"], row["id"]

    def statement(self, filters: frozenset[str], cursor: bool, ascending: bool) -> Statement:
        """The statement of one shape: the query's binds, each filter's (those of ``filters``
        it has), ``cursor_created_at`` and ``cursor_id`` with a cursor, ``limit``."""
        filters = filters & frozenset(self._filters)
        key = (filters, cursor, ascending)
        statement = self._statements.get(key)
        if statement is None:
            query = self._query.where(*(self._filters[name] for name in sorted(filters)))
            if cursor:
                keys = tuple_(self._created_at, self._id)
                after = tuple_(
                    bindparam("cursor_created_at", type_=DateTime(timezone=True)),
                    bindparam("cursor_id", type_=Uuid),
                )
                query = query.where(keys > after if ascending else keys < after)
            order = (
                (self._created_at.asc(), self._id.asc())
                if ascending
                else (self._created_at.desc(), self._id.desc())
            )
            statement = Statement(query.order_by(*order).limit(bindparam("limit", type_=Integer)))
            self._statements[key] = statement
        return statement


async def fetch_listing(
    conn: asyncpg.Connection | asyncpg.Pool,
    listing: Listing,
    page: PageRequest,
    values: Mapping[str, Any] | None = None,
    *,
    default_order: SortOrder = SortOrder.DESC,
) -> tuple[list[asyncpg.Record], PageInfo, list[str]]:
    """One page of ``listing``: ``values`` are its query's binds and those of the filters to
    apply (a filter not given is not applied). Returns the rows, the page info and each row's
    cursor."""
    plan = _plan(page, default_order)
    binds = dict(values or {})
    statement = listing.statement(frozenset(binds), plan.cursor is not None, plan.read_ascending)
    if isinstance(plan.cursor, uuid.UUID):
        binds["cursor_created_at"], binds["cursor_id"] = await listing.row_cursor(
            conn, plan.cursor, binds
        )
    elif plan.cursor is not None:
        binds["cursor_created_at"], binds["cursor_id"] = plan.cursor
    rows = await statement.fetch(conn, limit=plan.size + 1, **binds)
    return _page(rows, plan, page)


class EdgeType(Protocol[N_contra, E_co]):
    """A Relay edge's class: made from its node and its cursor."""

    def __call__(self, *, node: N_contra, cursor: str) -> E_co: ...


class ConnectionType(Protocol[E, C_co]):
    """A Relay connection's class: made from its page info and its edges."""

    def __call__(self, *, page_info: PageInfo, edges: list[E]) -> C_co: ...


def connection(
    connection_type: ConnectionType[E, C],
    edge_type: EdgeType[N, E],
    node: Callable[[asyncpg.Record], N],
    rows: Sequence[asyncpg.Record],
    page_info: PageInfo,
    cursors: Sequence[str],
) -> C:
    """The connection of a page :func:`fetch_listing` read: an edge of each row (its node
    made by ``node``) with that row's cursor, in order."""
    return connection_type(
        page_info=page_info,
        edges=[edge_type(node=node(r), cursor=c) for r, c in zip(rows, cursors, strict=True)],
    )
