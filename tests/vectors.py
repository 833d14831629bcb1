"""Loads the public Interledger test vectors (``tests/fixtures/vectors``, see its README).

They are a copy of the workspace's ``../shared/vectors`` (data only, each file naming its
sources), kept in the repository so that a clone anywhere runs the same tests.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["VECTORS_DIR", "load_vector"]

VECTORS_DIR = Path(__file__).resolve().parent / "fixtures" / "vectors"


def load_vector(name: str) -> Any:
    """The parsed JSON of the vector file ``name`` (e.g. ``"oer.json"``)."""
    with (VECTORS_DIR / name).open(encoding="utf-8") as f:
        return json.load(f)
