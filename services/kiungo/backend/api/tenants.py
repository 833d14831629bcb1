"""Rafiki's tenants on a single-tenant node: the one tenant is the operator's, named by
OPERATOR_TENANT_ID. The admin API takes that id wherever Rafiki takes a tenant id (a query's
``tenantId``, a create input's ``tenantId``, the ``tenant-id`` header) and refuses any other as
Rafiki refuses a tenant it does not know; ``whoami`` answers for the operator."""

from __future__ import annotations

import uuid

import strawberry

from kiungo.backend.context import Context
from kiungo.backend.errors import ApiError, ErrorCode

__all__ = ["TenantQuery", "WhoamiResponse", "check_tenant", "is_operator_tenant"]


def is_operator_tenant(operator_tenant_id: str, given: str) -> bool:
    """Whether ``given`` names the operator's tenant (a UUID in any case or form)."""
    try:
        return uuid.UUID(given) == uuid.UUID(operator_tenant_id)
    except ValueError:
        return False


def check_tenant(ctx: Context, tenant_id: str | None) -> None:
    """Nothing for no tenant id or the operator's; NOT_FOUND ``tenant does not exist`` (Rafiki's
    answer for a tenant it does not have) for any other."""
    if tenant_id is not None and not is_operator_tenant(
        ctx.backend.settings.operator_tenant_id, tenant_id
    ):
        raise ApiError(ErrorCode.NOT_FOUND, "tenant does not exist")


@strawberry.type
class WhoamiResponse:
    id: str
    is_operator: bool


@strawberry.type
class TenantQuery:
    @strawberry.field(description="The tenant this request acts for: always the operator here.")
    def whoami(self, info: strawberry.Info[Context, None]) -> WhoamiResponse:
        return WhoamiResponse(id=info.context.backend.settings.operator_tenant_id, is_operator=True)
