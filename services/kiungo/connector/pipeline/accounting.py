"""The ledger side of a packet: the legs that move its money, and ledger errors as ILP codes.

A packet from peer P debits P's liquidity account (what P may still send us); one from an
internal source debits that source's account (an outgoing payment's). Same asset: the
credit goes straight to the receiving account. Across assets it goes through the two assets'
liquidity accounts, so each ledger balances on its own.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from kiungo.connector.peers import PeerInfo
from kiungo.ilp.errors import InsufficientLiquidityError, InternalError
from kiungo.ledger import (
    AccountKind,
    CreditLimitExceeded,
    InsufficientBalance,
    LedgerError,
    Leg,
    account_id_for,
)

__all__ = ["ledger_errors_as_ilp", "packet_legs"]

log = logging.getLogger("kiungo.connector.accounting")


def packet_legs(
    source: PeerInfo,
    source_amount: int,
    destination_account: uuid.UUID,
    destination_asset: uuid.UUID,
    destination_amount: int,
    *,
    credit_limit: int | None = None,
    credit_until: datetime | None = None,
) -> list[Leg]:
    source_account = source.account_id
    if source_account is None:
        raise InternalError("a source without an account cannot pay")
    if source.asset_id == destination_asset:
        return [
            Leg(
                uuid.uuid4(),
                source_account,
                destination_account,
                source_amount,
                credit_limit,
                credit_until,
            )
        ]
    return [
        Leg(
            uuid.uuid4(),
            source_account,
            account_id_for(AccountKind.ASSET_LIQUIDITY, source.asset_id),
            source_amount,
        ),
        Leg(
            uuid.uuid4(),
            account_id_for(AccountKind.ASSET_LIQUIDITY, destination_asset),
            destination_account,
            destination_amount,
            credit_limit,
            credit_until,
        ),
    ]


@contextmanager
def ledger_errors_as_ilp() -> Iterator[None]:
    """Shortfalls are T04 (retry later); a credit limit (an incoming payment's amount or expiry)
    passes through for the receiver to answer; anything else the ledger refuses is our fault,
    T00."""
    try:
        yield
    except CreditLimitExceeded:
        raise  # the receiver's answer to give (a final decline), not the ledger's failure
    except InsufficientBalance as exc:
        raise InsufficientLiquidityError(str(exc)) from None
    except LedgerError as exc:
        log.error("ledger refused a packet transfer: %r", exc)
        raise InternalError("ledger unavailable") from None
