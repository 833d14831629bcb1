"""Loads the shared Interledger test vectors (``/work/shared/vectors``, see its README)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["VECTORS_DIR", "load_vector"]

# The vectors live next to the repository, in the workspace's shared folder.
VECTORS_DIR = Path(__file__).resolve().parent.parent.parent / "shared" / "vectors"


def load_vector(name: str) -> Any:
    """The parsed JSON of the vector file ``name`` (e.g. ``"oer.json"``)."""
    with (VECTORS_DIR / name).open(encoding="utf-8") as f:
        return json.load(f)
