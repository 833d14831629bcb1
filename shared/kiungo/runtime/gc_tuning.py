"""The garbage collector's settings for a serving process.

CPython's defaults (a young-generation collection every 700 allocations, a full one whenever a
quarter more objects have survived) suit short scripts, not a server with thousands of
operations in flight: every operation's objects are alive across many young collections (it
waits on a ledger round trip), so they are promoted and each soon triggers a full collection
that walks every object of the process. The ledger benchmark on TigerBeetle spent half of its
CPU there (1,024 callers: 113 µs per two-phase transfer, 59 with the collector off).

:func:`tune_gc` freezes what exists once a process has started (modules, the app: never
garbage, never walked again) and collects the young generation every 50,000 allocations.
Reference counting still frees almost everything at once; only cycles wait for a collection.
"""

from __future__ import annotations

import gc

__all__ = ["THRESHOLDS", "tune_gc"]

THRESHOLDS = (50_000, 20, 100)


def tune_gc() -> None:
    """Freeze the objects that exist now and set :data:`THRESHOLDS` (module docstring); call
    once a process has started, before it serves."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
