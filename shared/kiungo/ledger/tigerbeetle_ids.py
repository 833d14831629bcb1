"""The ids Kiungo gives TigerBeetle's accounts and transfers (used by kiungo.ledger.tigerbeetle
and its reads and writer, kiungo.ledger.tigerbeetle_reads and kiungo.ledger.tigerbeetle_writer).

A Kiungo uuid is its TigerBeetle u128 id (``uuid.int``: random or uuid5 ids are never 0 nor
2^128-1). Every other id is derived from one by a keyed hash (:func:`_derived`), so it is the
same whenever it is computed and no other transfer or account can take it:

- a try: TigerBeetle keeps the id of a transfer refused for a balance as failed for good, while
  Kiungo's callers retry such a transfer under its id (on Postgres nothing was written): so a
  create refused with ``id_already_failed`` is sent again under ids derived from the Kiungo ids
  and the try's number (:func:`attempt_id`, up to :data:`ATTEMPTS` tries), and a lookup by
  Kiungo id asks for all of them at once (:func:`attempt_ids`);
- the post and void of a pending transfer (:func:`post_id`, :func:`void_id`), so posting twice
  is TigerBeetle's ``exists`` (:class:`AlreadyPosted`) and nothing else can post it under
  another id;
- a credit limit's hidden limit leg (:func:`limit_leg_id`), its control account
  (:func:`control_id`) and the control's funding transfer (:func:`funding_id`) from the
  asset's sink account (:func:`sink_id`): kiungo.ledger.tigerbeetle, "Credit limits".
"""

from __future__ import annotations

import hashlib
import uuid

__all__ = [
    "ATTEMPTS",
    "attempt_id",
    "attempt_ids",
    "control_id",
    "funding_id",
    "limit_leg_id",
    "post_id",
    "sink_id",
    "void_id",
]

ATTEMPTS = 8


def _derived(tag: bytes, transfer_id: int) -> int:
    """The id of a transfer that belongs to ``transfer_id`` (its post, void or limit leg)."""
    digest = hashlib.blake2b(transfer_id.to_bytes(16, "big"), digest_size=16, person=tag).digest()
    return int.from_bytes(digest, "big") or 1


def post_id(transfer_id: int) -> int:
    return _derived(b"kiungo-post", transfer_id)


def void_id(transfer_id: int) -> int:
    return _derived(b"kiungo-void", transfer_id)


def attempt_id(transfer_id: int, attempt: int) -> int:
    """The TigerBeetle id of a Kiungo transfer id's ``attempt``-th try (module docstring)."""
    return transfer_id if attempt == 0 else _derived(b"kiungo-try-%d" % attempt, transfer_id)


def attempt_ids(transfer_id: int) -> list[int]:
    return [attempt_id(transfer_id, n) for n in range(ATTEMPTS)]


def limit_leg_id(transfer_id: int) -> int:
    return _derived(b"kiungo-limit", transfer_id)


def control_id(account_id: uuid.UUID) -> int:
    return _derived(b"kiungo-control", account_id.int)


def funding_id(account_id: uuid.UUID) -> int:
    return _derived(b"kiungo-funding", account_id.int)


def sink_id(asset_id: uuid.UUID) -> int:
    return _derived(b"kiungo-sink", asset_id.int)
