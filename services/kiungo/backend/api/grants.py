"""GNAP grants in the admin API, as Rafiki's auth service names them: ``grants`` (a page,
filtered by state or by the wallet address an access item names), ``grant(id)``, and
``revokeGrant`` (the grant FINALIZED as REVOKED, its access tokens revoked at once)."""

from __future__ import annotations

import enum
import uuid
from typing import Any

import asyncpg
import strawberry
from sqlalchemy import ARRAY, String, any_, bindparam, column, exists, func, literal, select
from sqlalchemy.dialects.postgresql import JSONB

from kiungo.backend.api.common import (
    Amount,
    FilterString,
    PageInfo,
    iso,
    parse_uuid,
)
from kiungo.backend.api.pagination import Listing, PageRequest, connection, fetch_listing, paged
from kiungo.backend.context import Context
from kiungo.backend.errors import ApiError, ErrorCode, bad_input
from kiungo.models import Grant as GrantModel
from kiungo.models import GrantState
from kiungo.models.sql import Statement, stored_json, table
from kiungo.openpayments.grants import revoke_grant

__all__ = ["GrantMutation", "GrantQuery"]

_grants = table(GrantModel)
# A grant's access items, one row each (``jsonb_array_elements``).
_items = (
    func.jsonb_array_elements(_grants.c.access)
    .table_valued(column("value", JSONB))
    .render_derived(name="item")
)
_COLUMNS = (
    _grants.c.id,
    _grants.c.client,
    _grants.c.access,
    _grants.c.state,
    _grants.c.finalization_reason,
    _grants.c.created_at,
)
_GRANTS = Listing(
    select(*_COLUMNS),
    {
        "states": _grants.c.state == any_(bindparam("states", type_=ARRAY(String))),
        # Grants with an access item naming one of these wallet addresses.
        "identifiers": exists(
            select(literal(1))
            .select_from(_items)
            .where(
                _items.c.value.op("->>")("identifier")
                == any_(bindparam("identifiers", type_=ARRAY(String)))
            )
        ),
    },
)
_GRANT = Statement(select(*_COLUMNS).where(_grants.c.id == bindparam("id")))


# The models' states, as the schema's GrantState.
strawberry.enum(GrantState, name="GrantState")


@strawberry.enum
class GrantFinalization(enum.Enum):
    ISSUED = "ISSUED"
    REVOKED = "REVOKED"
    REJECTED = "REJECTED"


@strawberry.type
class LimitData:
    receiver: str | None
    debit_amount: Amount | None
    receive_amount: Amount | None
    interval: str | None


@strawberry.type
class Access:
    id: strawberry.ID
    identifier: str | None
    type: str
    actions: list[str]
    limits: LimitData | None
    created_at: str


def _amount(raw: Any) -> Amount | None:
    if not isinstance(raw, dict):
        return None
    return Amount(
        value=int(raw["value"]), asset_code=raw["assetCode"], asset_scale=raw["assetScale"]
    )


@strawberry.type
class Grant:
    id: strawberry.ID
    client: str
    access: list[Access]
    state: GrantState
    finalization_reason: GrantFinalization | None
    created_at: str

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Grant:
        raw = row["access"]
        items = stored_json(raw)
        created = iso(row["created_at"])
        access = []
        for index, item in enumerate(items):
            limits = item.get("limits")
            access.append(
                Access(
                    # Access items are stored in their grant; each is named by its place there.
                    id=strawberry.ID(str(uuid.uuid5(row["id"], str(index)))),
                    identifier=item.get("identifier"),
                    type=item["type"],
                    actions=list(item["actions"]),
                    limits=None
                    if limits is None
                    else LimitData(
                        receiver=limits.get("receiver"),
                        debit_amount=_amount(limits.get("debitAmount")),
                        receive_amount=_amount(limits.get("receiveAmount")),
                        interval=limits.get("interval"),
                    ),
                    created_at=created,
                )
            )
        reason = row["finalization_reason"]
        return cls(
            id=strawberry.ID(str(row["id"])),
            client=row["client"],
            access=access,
            state=GrantState(row["state"]),
            finalization_reason=None if reason is None else GrantFinalization(reason),
            created_at=created,
        )


@strawberry.type
class GrantEdge:
    node: Grant
    cursor: str


@strawberry.type
class GrantsConnection:
    page_info: PageInfo
    edges: list[GrantEdge]


@strawberry.input
class FilterGrantState:
    in_: list[GrantState] | None = strawberry.field(name="in", default=None)


@strawberry.input
class GrantFilter:
    identifier: FilterString | None = None
    state: FilterGrantState | None = None


@strawberry.input
class RevokeGrantInput:
    grant_id: str


@strawberry.type
class RevokeGrantMutationResponse:
    id: strawberry.ID


@strawberry.type
class GrantQuery:
    @strawberry.field(description="A page of GNAP grants, newest first unless sortOrder is ASC.")
    @paged
    async def grants(
        self,
        info: strawberry.Info[Context, None],
        page: PageRequest,
        filter: GrantFilter | None = None,
    ) -> GrantsConnection:
        binds: dict[str, Any] = {}
        if filter is not None and filter.identifier is not None:
            if filter.identifier.not_in:
                raise bad_input("filter.identifier takes in, not notIn")
            if filter.identifier.in_ is not None:
                binds["identifiers"] = list(filter.identifier.in_)
        if filter is not None and filter.state is not None and filter.state.in_ is not None:
            binds["states"] = [s.value for s in filter.state.in_]
        rows, page_info, cursors = await fetch_listing(info.context.pool, _GRANTS, page, binds)
        return connection(GrantsConnection, GrantEdge, Grant.from_row, rows, page_info, cursors)

    @strawberry.field(description="A GNAP grant by its id.")
    async def grant(self, info: strawberry.Info[Context, None], id: str) -> Grant:
        row = await _GRANT.fetchrow(info.context.pool, id=parse_uuid(id, "id"))
        if row is None:
            raise ApiError(ErrorCode.NOT_FOUND, "grant not found")
        return Grant.from_row(row)


@strawberry.type
class GrantMutation:
    @strawberry.mutation(
        description="Revoke a grant: it ends (FINALIZED, REVOKED) and its access tokens stop "
        "authorizing at once."
    )
    async def revoke_grant(
        self, info: strawberry.Info[Context, None], input: RevokeGrantInput
    ) -> RevokeGrantMutationResponse:
        grant_id = parse_uuid(input.grant_id, "grantId")
        if not await revoke_grant(info.context.pool, grant_id):
            raise ApiError(ErrorCode.NOT_FOUND, "no grant to revoke: unknown or already ended")
        return RevokeGrantMutationResponse(id=strawberry.ID(str(grant_id)))
