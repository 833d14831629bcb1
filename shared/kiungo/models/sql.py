"""SQL built from the models: SQLAlchemy Core statements, compiled once, run on asyncpg.

The runtime talks to Postgres through asyncpg (the packet path cannot afford an ORM session per
packet), but it does not spell tables, columns or states again: each statement is written as a
Core construct over the shared tables (``IncomingPayment.__table__`` and so on), wrapped in a
:class:`Statement`, and compiled on first use to the ``$1, $2, …`` SQL asyncpg prepares. After
that a call costs what a hand-written string does: the same SQL text (so asyncpg's statement
cache works as before) and a tuple built from keyword arguments.

Binds are named, never positional: ``bindparam("id")`` in the construct, ``id=…`` at the call.
A constant in the construct (a state, a limit written in code) is rendered into the SQL as a
literal, so ``state.in_([PENDING, PROCESSING])`` reads as ``state IN ('PENDING', 'PROCESSING')``
and needs no argument. A column default the models compute in Python (``id``'s ``uuid4``) is
filled when the call does not give one.

Every statement made here is recorded in :data:`ALL`; tests/models/test_sql_matches_models.py
compiles each and has Postgres prepare it against the schema the models create.

The ledger's batch statements stay raw SQL (``kiungo.ledger.batch_sql``): they are the measured
hot path (arrays unnested into one round trip per batch) and the same test checks them.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeAlias, cast

import asyncpg
from sqlalchemy import Column, Table
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.sql.expression import Executable

__all__ = ["ALL", "Statement", "compile_sql", "stored_json", "table"]


def stored_json(raw: Any) -> Any:
    """A JSON or JSONB column's value as read: asyncpg hands back its text (no codec is set on
    the pools), SQLAlchemy rows and Python callers the decoded value."""
    return json.loads(raw) if isinstance(raw, str) else raw


Executor: TypeAlias = "asyncpg.Pool | asyncpg.Connection"
"""Anything that runs a statement: a pool (one connection per call) or a connection."""


_BaseCompiler: Any = asyncpg_dialect.dialect.statement_compiler
_BaseDialect: Any = asyncpg_dialect.dialect


class _Compiler(_BaseCompiler):  # type: ignore[misc]
    """Renders values written in the construct as literals; only named binds become ``$n``."""

    def visit_bindparam(self, bindparam: BindParameter[Any], **kw: Any) -> str:
        # A bind with a value was written in the construct: render it. One without (and not
        # required) is the compiler's own for a column whose default Python computes per row.
        if not bindparam.required and bindparam.value is not None:
            kw["literal_binds"] = True
            kw["literal_execute"] = True
        result: str = super().visit_bindparam(bindparam, **kw)
        return result


class _Dialect(_BaseDialect):  # type: ignore[misc]
    statement_compiler = _Compiler


_DIALECT: Any = _Dialect(paramstyle="numeric_dollar")


def compile_sql(clause: Executable) -> tuple[str, tuple[str, ...], dict[str, Callable[[], Any]]]:
    """The construct as asyncpg SQL, its bind names in ``$n`` order, and the Python defaults."""
    compiled = clause.compile(dialect=_DIALECT)  # type: ignore[attr-defined]
    names = tuple(compiled.positiontup or ())
    defaults: dict[str, Callable[[], Any]] = {}
    prefetch: Iterable[Column[Any]] = list(compiled.insert_prefetch) + list(
        compiled.update_prefetch
    )
    for column in prefetch:
        default = column.default if column in compiled.insert_prefetch else column.onupdate
        if default is None or (not default.is_scalar and not default.is_callable):
            continue
        made: Any = getattr(default, "arg", None)
        defaults[column.key] = _default_maker(made, callable_=bool(default.is_callable))
    return compiled.string, names, defaults


def table(model: type[Any]) -> Table:
    """A model's table, typed as the Core :class:`Table` statements are built on."""
    return cast(Table, model.__table__)


def _default_maker(made: Any, *, callable_: bool) -> Callable[[], Any]:
    """A column default as a call: SQLAlchemy wraps a default function to take a context."""
    if callable_:
        return lambda: made(None)
    return lambda: made


ALL: list[Statement] = []
"""Every statement built, in the order modules made them (the SQL test prepares each)."""


class Statement:
    """One Core statement, compiled for asyncpg on first use, run with named arguments."""

    __slots__ = ("_clause", "_defaults", "_names", "_sql", "where")

    def __init__(self, clause: Executable) -> None:
        self._clause = clause
        self._sql: str | None = None
        self._names: tuple[str, ...] = ()
        self._defaults: dict[str, Callable[[], Any]] = {}
        self.where = _caller()
        ALL.append(self)

    def _compile(self) -> str:
        self._sql, self._names, self._defaults = compile_sql(self._clause)
        unique = set(self._names)
        if len(unique) != len(self._names):
            # numeric_dollar gives a name used twice one number; guard the assumption anyway.
            self._names = tuple(dict.fromkeys(self._names))
        return self._sql

    @property
    def sql(self) -> str:
        """The SQL text asyncpg prepares."""
        return self._sql if self._sql is not None else self._compile()

    @property
    def names(self) -> tuple[str, ...]:
        """The bind names, in the order of their ``$n``."""
        if self._sql is None:
            self._compile()
        return self._names

    def args(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        """The positional arguments for these named values; a missing or unknown name raises."""
        if self._sql is None:
            self._compile()
        extra = values.keys() - set(self._names)
        if extra:
            raise TypeError(f"{self.where}: no bind named {sorted(extra)} (binds: {self._names})")
        out = []
        for name in self._names:
            if name in values:
                out.append(values[name])
            elif name in self._defaults:
                out.append(self._defaults[name]())
            else:
                raise TypeError(f"{self.where}: bind {name!r} needs a value")
        return tuple(out)

    async def execute(self, conn: Executor, /, **values: Any) -> str:
        """Runs it; asyncpg's status line (``UPDATE 1``)."""
        status: str = await conn.execute(self.sql, *self.args(values))
        return status

    async def executemany(self, conn: Executor, rows: Iterable[Mapping[str, Any]], /) -> None:
        """Runs it once per row of named values, in one round trip."""
        await conn.executemany(self.sql, [self.args(row) for row in rows])

    async def fetch(self, conn: Executor, /, **values: Any) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await conn.fetch(self.sql, *self.args(values))
        return rows

    async def fetchrow(self, conn: Executor, /, **values: Any) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await conn.fetchrow(self.sql, *self.args(values))
        return row

    async def fetchval(self, conn: Executor, /, **values: Any) -> Any:
        return await conn.fetchval(self.sql, *self.args(values))

    def __repr__(self) -> str:
        return f"Statement({self.where}: {self.sql!r})"


def _caller() -> str:
    """Where the statement was built (module:line), for error messages and the SQL test."""
    frame = sys._getframe(2)
    return f"{frame.f_globals.get('__name__', '?')}:{frame.f_lineno}"
