"""Alembic migrations of the node's schema (``kiungo migrate``)."""
