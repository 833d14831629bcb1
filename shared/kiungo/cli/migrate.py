"""``kiungo migrate``: bring the database schema up to date (idempotent)."""

from __future__ import annotations

import argparse
import asyncio

from kiungo.cli.arguments import paragraphs
from kiungo.config import Settings

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "migrate",
        help="apply the database migrations",
        description=paragraphs(
            "Apply every migration not yet applied to DATABASE_URL, or to the embedded "
            "Postgres in KIUNGO_DATA_DIR (default ~/.local/share/kiungo) when it is unset. "
            "Running it again changes nothing."
        ),
    )
    parser.set_defaults(handler=_migrate)


def _migrate(args: argparse.Namespace) -> int:
    # Alembic and SQLAlchemy take a quarter of a second to import: only when migrating.
    from kiungo.migrations.run import upgrade  # noqa: PLC0415
    from kiungo.store.local import postgres_url  # noqa: PLC0415

    async def run() -> None:
        async with postgres_url(Settings.from_env(serving=False)) as url:
            await upgrade(url)

    asyncio.run(run())
    print("database is up to date")
    return 0
