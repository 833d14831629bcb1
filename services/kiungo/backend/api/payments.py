"""The combined list of payments (incoming and outgoing) and a ledger account's transfers."""

from __future__ import annotations

import enum
import uuid
from typing import Any

import asyncpg
import strawberry
from sqlalchemy import (
    ARRAY,
    Select,
    String,
    Table,
    Uuid,
    any_,
    bindparam,
    literal,
    select,
    union_all,
)

from kiungo.backend.api.common import (
    FilterString,
    JSONObject,
    PageInfo,
    UInt8,
    UInt64,
    filter_binds,
    iso,
    parse_uuid,
    uuid_values,
)
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
from kiungo.backend.errors import bad_input, not_found
from kiungo.ledger import AccountKind
from kiungo.ledger import reads as ledger_reads
from kiungo.ledger.service import TransferRecord
from kiungo.models import Asset, IncomingPayment, OutgoingPayment
from kiungo.models.sql import Statement, stored_json, table

__all__ = ["PaymentQuery"]

_incoming = table(IncomingPayment)
_outgoing = table(OutgoingPayment)
_assets = table(Asset)


def _of(payments: Table, kind: str) -> Select[Any]:
    return select(
        payments.c.id,
        literal(kind, String).label("type"),
        payments.c.wallet_address_id,
        payments.c.client,
        payments.c.state,
        payments.c.metadata,
        payments.c.created_at,
    )


_both = union_all(_of(_incoming, "INCOMING"), _of(_outgoing, "OUTGOING")).subquery("payments")
_PAYMENTS = Listing(
    select(_both),
    {
        **in_filter("types", _both.c.type, String()),
        **in_filter("wallets", _both.c.wallet_address_id, Uuid()),
    },
)
_LEDGERS = Statement(
    select(_assets.c.id, _assets.c.ledger).where(
        _assets.c.id == any_(bindparam("ids", type_=ARRAY(Uuid)))
    )
)


@strawberry.enum
class PaymentType(enum.Enum):
    INCOMING = "INCOMING"
    OUTGOING = "OUTGOING"


@strawberry.type
class Payment:
    id: strawberry.ID
    type: PaymentType
    wallet_address_id: strawberry.ID
    client: str | None
    state: str
    metadata: JSONObject | None
    created_at: str
    _uuid: strawberry.Private[uuid.UUID]

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Payment:
        metadata = row["metadata"]
        return cls(
            id=strawberry.ID(str(row["id"])),
            type=PaymentType(row["type"]),
            wallet_address_id=strawberry.ID(str(row["wallet_address_id"])),
            client=row["client"],
            state=row["state"],
            metadata=stored_json(metadata),
            created_at=iso(row["created_at"]),
            _uuid=row["id"],
        )

    @strawberry.field(description="Money held by the payment and not yet withdrawn.")
    async def liquidity(self, info: strawberry.Info[Context, None]) -> UInt64 | None:
        kind = (
            AccountKind.INCOMING_PAYMENT
            if self.type is PaymentType.INCOMING
            else AccountKind.OUTGOING_PAYMENT
        )
        return await info.context.backend.available(kind, self._uuid)


@strawberry.type
class PaymentEdge:
    node: Payment
    cursor: str


@strawberry.type
class PaymentConnection:
    page_info: PageInfo
    edges: list[PaymentEdge]


@strawberry.input
class PaymentFilter:
    type: FilterString | None = None
    wallet_address_id: FilterString | None = None


@strawberry.enum
class TransferType(enum.Enum):
    DEPOSIT = "DEPOSIT"
    WITHDRAWAL = "WITHDRAWAL"
    TRANSFER = "TRANSFER"


@strawberry.enum
class TransferState(enum.Enum):
    PENDING = "PENDING"
    POSTED = "POSTED"
    VOIDED = "VOIDED"


@strawberry.type
class AccountingTransfer:
    id: strawberry.ID
    debit_account_id: strawberry.ID
    credit_account_id: strawberry.ID
    amount: UInt64
    transfer_type: TransferType
    ledger: UInt8 = strawberry.field(
        description="The number of the asset's ledger (Rafiki's UInt8)."
    )
    created_at: str
    state: TransferState
    expires_at: str | None

    @classmethod
    def from_record(
        cls, record: TransferRecord, ledgers: dict[uuid.UUID, int]
    ) -> AccountingTransfer:
        transfer = record.transfer
        code = transfer.code
        state = transfer.state.value
        return cls(
            id=strawberry.ID(str(transfer.id)),
            debit_account_id=strawberry.ID(str(transfer.debit_account_id)),
            credit_account_id=strawberry.ID(str(transfer.credit_account_id)),
            amount=transfer.amount,
            transfer_type=TransferType(code)
            if code in ("DEPOSIT", "WITHDRAWAL")
            else (TransferType.TRANSFER),
            ledger=ledgers[transfer.asset_id],
            created_at=iso(record.created_at),
            # An expired hold released its money, as a void does.
            state=TransferState.VOIDED if state == "EXPIRED" else TransferState(state),
            expires_at=None if transfer.expires_at is None else iso(transfer.expires_at),
        )


@strawberry.type
class AccountingTransferConnection:
    debits: list[AccountingTransfer]
    credits: list[AccountingTransfer]


def _payment_type(value: str) -> str:
    if value not in ("INCOMING", "OUTGOING"):
        raise bad_input("type must be INCOMING or OUTGOING")
    return value


@strawberry.type
class PaymentQuery:
    @strawberry.field(description="A page of incoming and outgoing payments together.")
    @paged
    async def payments(
        self,
        info: strawberry.Info[Context, None],
        page: PageRequest,
        filter: PaymentFilter | None = None,
        tenant_id: str | None = None,
    ) -> PaymentConnection:
        check_tenant(info.context, tenant_id)
        filters: dict[str, Any] = {}
        if filter is not None:
            filters.update(filter_binds(filter.type, "types", _payment_type))
            filters.update(
                filter_binds(filter.wallet_address_id, "wallets", uuid_values("walletAddressId"))
            )
        rows, page_info, cursors = await fetch_listing(
            info.context.pool,
            _PAYMENTS,
            page,
            filters,
        )
        return connection(
            PaymentConnection, PaymentEdge, Payment.from_row, rows, page_info, cursors
        )

    @strawberry.field(
        description="The transfers of a ledger account, newest first: `id` is the account's "
        "id or that of its owner (asset, peer, wallet address or payment)."
    )
    async def accounting_transfers(
        self, info: strawberry.Info[Context, None], id: str, limit: int | None = None
    ) -> AccountingTransferConnection:
        owner = parse_uuid(id, "id")
        count = 20 if limit is None else limit
        if not 1 <= count <= 100:
            raise bad_input("limit must be from 1 to 100", field="limit")
        pool = info.context.pool
        accounts = await ledger_reads.accounts_of_owner(pool, owner)
        if not accounts:
            raise not_found("account")
        ledger = info.context.ledger
        debits = await ledger.history(accounts, debits=True, limit=count)
        credits = await ledger.history(accounts, debits=False, limit=count)
        assets = {r.transfer.asset_id for r in debits + credits}
        numbers = {r["id"]: r["ledger"] for r in await _LEDGERS.fetch(pool, ids=list(assets))}
        return AccountingTransferConnection(
            debits=[AccountingTransfer.from_record(r, numbers) for r in debits],
            credits=[AccountingTransfer.from_record(r, numbers) for r in credits],
        )
