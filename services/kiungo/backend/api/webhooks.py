"""Webhook events: the outbox the delivery worker sends, as Rafiki's ``webhookEvents`` lists it."""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import strawberry

from kiungo.backend.api.common import FilterString, JSONObject, PageInfo, SortOrder, iso
from kiungo.backend.api.pagination import PageRequest, fetch_page, filter_in
from kiungo.backend.context import Context

__all__ = [
    "WebhookEvent",
    "WebhookEventFilter",
    "WebhookEventsConnection",
    "WebhookEventsEdge",
    "WebhookQuery",
]

_COLUMNS = "id, type, data, created_at"
# Built from the constant column list only.
_EVENTS = f"SELECT {_COLUMNS} FROM webhook_events"


def _object(value: Any) -> dict[str, Any]:
    data = json.loads(value) if isinstance(value, str) else value
    return data if isinstance(data, dict) else {}


@strawberry.type
class WebhookEvent:
    id: strawberry.ID
    type: str
    data: JSONObject
    created_at: str

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> WebhookEvent:
        return cls(
            id=strawberry.ID(str(row["id"])),
            type=row["type"],
            data=_object(row["data"]),
            created_at=iso(row["created_at"]),
        )


@strawberry.type
class WebhookEventsEdge:
    node: WebhookEvent
    cursor: str


@strawberry.type
class WebhookEventsConnection:
    page_info: PageInfo
    edges: list[WebhookEventsEdge]


@strawberry.input
class WebhookEventFilter:
    type: FilterString | None = None


@strawberry.type
class WebhookQuery:
    @strawberry.field(description="A page of webhook events, newest first unless sortOrder is ASC.")
    async def webhook_events(
        self,
        info: strawberry.Info[Context, None],
        after: str | None = None,
        before: str | None = None,
        first: int | None = None,
        last: int | None = None,
        sort_order: SortOrder | None = None,
        filter: WebhookEventFilter | None = None,
    ) -> WebhookEventsConnection:
        where: list[str] = []
        params: list[Any] = []
        if filter is not None and filter.type is not None:
            filter_in(where, params, "type", filter.type.in_, "text")
        rows, page_info, cursors = await fetch_page(
            info.context.pool,
            _EVENTS,
            where,
            params,
            PageRequest(first, last, after, before, sort_order),
        )
        return WebhookEventsConnection(
            page_info=page_info,
            edges=[
                WebhookEventsEdge(node=WebhookEvent.from_row(r), cursor=c)
                for r, c in zip(rows, cursors, strict=True)
            ],
        )
