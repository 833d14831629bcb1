"""The schema: migrations build it, match the models, and every model round-trips a row."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import async_sessionmaker

from kiungo.migrations.run import check, upgrade
from kiungo.models import (
    Asset,
    Fee,
    FeeType,
    IncomingPayment,
    OutgoingPayment,
    Peer,
    PeerIncomingToken,
    Quote,
    WalletAddress,
    WebhookDelivery,
    WebhookEvent,
)
from kiungo.runtime.db import create_engine

KIUNGO = str(Path(sys.executable).parent / "kiungo")


async def test_migrations_build_an_empty_database_and_match_the_models(database_url: str) -> None:
    await upgrade(database_url)
    await check(database_url)  # raises when autogenerate would find a difference


def test_kiungo_migrate_is_idempotent(database_url: str) -> None:
    env = {**os.environ, "DATABASE_URL": database_url}
    for _ in range(2):
        done = subprocess.run(
            [KIUNGO, "migrate"], env=env, capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stderr
        assert "up to date" in done.stdout


async def test_every_model_round_trips_a_row(database_url: str) -> None:
    await upgrade(database_url)
    engine = create_engine(database_url)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    now = datetime.now(UTC)
    try:
        async with sessions() as session, session.begin():
            asset = Asset(code="USD", scale=2, liquidity_threshold_low=Decimal(100))
            session.add(asset)
            await session.flush()
            peer = Peer(
                asset_id=asset.id,
                static_ilp_address="test.peer",
                http_endpoint="http://127.0.0.1:3002/ilp",
                http_outgoing_token="secret",
                max_packet_amount=Decimal(2**64 - 1),
                routes=["test.peer", "test.other"],
            )
            wallet = WalletAddress(url="https://wallet.example/alice", asset_id=asset.id)
            fee = Fee(
                asset_id=asset.id, type=FeeType.SENDING, fixed_fee=Decimal(1), basis_point_fee=50
            )
            session.add_all([peer, wallet, fee])
            await session.flush()
            session.add(PeerIncomingToken(peer_id=peer.id, token_hash=bytes(32)))
            incoming = IncomingPayment(
                wallet_address_id=wallet.id,
                asset_id=asset.id,
                incoming_amount=Decimal(500),
                expires_at=now + timedelta(days=1),
                metadata_={"description": "invoice 7"},
            )
            quote = Quote(
                wallet_address_id=wallet.id,
                asset_id=asset.id,
                receiver="https://wallet.example/bob",
                debit_amount=Decimal(101),
                receive_amount=Decimal(100),
                receive_asset_code="USD",
                receive_asset_scale=2,
                estimated_exchange_rate=Decimal("0.99009900990099009901"),
                fee_id=fee.id,
                expires_at=now + timedelta(minutes=5),
            )
            session.add_all([incoming, quote])
            await session.flush()
            session.add(OutgoingPayment(wallet_address_id=wallet.id, quote_id=quote.id))
            event = WebhookEvent(type="incoming_payment.created", data={"id": str(incoming.id)})
            session.add(event)
            await session.flush()
            session.add(WebhookDelivery(event_id=event.id, attempt=1, status_code=200))

        async with sessions() as session:
            stored_peer = (await session.execute(select(Peer))).scalar_one()
            assert stored_peer.routes == ["test.peer", "test.other"]
            assert stored_peer.max_packet_amount == 2**64 - 1
            stored_quote = (await session.execute(select(Quote))).scalar_one()
            assert stored_quote.estimated_exchange_rate == Decimal("0.99009900990099009901")
            stored_incoming = (await session.execute(select(IncomingPayment))).scalar_one()
            assert stored_incoming.state == "PENDING"
            assert stored_incoming.metadata_ == {"description": "invoice 7"}
            payment = (await session.execute(select(OutgoingPayment))).scalar_one()
            assert payment.state == "FUNDING"
            assert payment.sent_amount == 0
            assert (await session.execute(select(WebhookDelivery))).scalar_one().attempt == 1
            assert stored_incoming.created_at.tzinfo is not None
    finally:
        await engine.dispose()


async def test_an_asset_code_and_scale_exist_once_until_deleted(database_url: str) -> None:
    await upgrade(database_url)
    engine = create_engine(database_url)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    try:
        async with sessions() as session, session.begin():
            session.add(Asset(code="EUR", scale=2))
        with pytest.raises(IntegrityError):
            async with sessions() as session, session.begin():
                session.add(Asset(code="EUR", scale=2))
        async with sessions() as session, session.begin():
            first = (await session.execute(select(Asset))).scalar_one()
            first.deleted_at = datetime.now(UTC)
        async with sessions() as session, session.begin():
            session.add(Asset(id=uuid.uuid4(), code="EUR", scale=2))
    finally:
        await engine.dispose()
