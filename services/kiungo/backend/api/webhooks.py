"""Webhook events: the outbox the delivery worker sends, as Rafiki's ``webhookEvents`` lists it."""

from __future__ import annotations

import functools

import asyncpg
import strawberry
from sqlalchemy import String, select

from kiungo.backend.api.common import FilterString, JSONObject, PageInfo, filter_binds, iso
from kiungo.backend.api.pagination import (
    Listing,
    PageRequest,
    connection,
    fetch_listing,
    in_filter,
    paged,
)
from kiungo.backend.api.tenants import check_tenant
from kiungo.backend.context import Context
from kiungo.models import WebhookEvent as WebhookEventModel
from kiungo.models.sql import table
from kiungo.payments.receivers import shown_event_data

__all__ = [
    "WebhookEvent",
    "WebhookEventFilter",
    "WebhookEventsConnection",
    "WebhookEventsEdge",
    "WebhookQuery",
]

_events = table(WebhookEventModel)
_EVENTS = Listing(
    select(_events.c.id, _events.c.type, _events.c.data, _events.c.created_at),
    in_filter("types", _events.c.type, String()),
)


@strawberry.type
class WebhookEvent:
    id: strawberry.ID
    type: str
    data: JSONObject
    created_at: str

    @classmethod
    def from_row(cls, row: asyncpg.Record, open_payments_url: str) -> WebhookEvent:
        """The event as stored, its data as its webhook carries it."""
        return cls(
            id=strawberry.ID(str(row["id"])),
            type=row["type"],
            data=shown_event_data(open_payments_url, row["type"], row["data"]),
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
    @paged
    async def webhook_events(
        self,
        info: strawberry.Info[Context, None],
        page: PageRequest,
        filter: WebhookEventFilter | None = None,
        tenant_id: str | None = None,
    ) -> WebhookEventsConnection:
        check_tenant(info.context, tenant_id)
        rows, page_info, cursors = await fetch_listing(
            info.context.pool,
            _EVENTS,
            page,
            filter_binds(filter.type if filter else None, "types"),
        )
        return connection(
            WebhookEventsConnection,
            WebhookEventsEdge,
            functools.partial(
                WebhookEvent.from_row,
                open_payments_url=info.context.backend.settings.open_payments_url,
            ),
            rows,
            page_info,
            cursors,
        )
