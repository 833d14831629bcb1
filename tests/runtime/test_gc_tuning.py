"""A serving process tunes its garbage collector before it serves (kiungo.runtime.gc_tuning):
what exists at start is frozen, and young collections are rare."""

from __future__ import annotations

import json
import subprocess
import sys

from kiungo.runtime.gc_tuning import THRESHOLDS

# Run in a process of its own: the thresholds and the freeze are the whole interpreter's.
_PROBE = """
import gc, json
from kiungo.runtime.gc_tuning import tune_gc
before = (gc.get_threshold(), gc.get_freeze_count())
tune_gc()
print(json.dumps([before, [gc.get_threshold(), gc.get_freeze_count()]]))
"""


def test_tune_gc_freezes_what_exists_and_raises_the_thresholds() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True
    ).stdout
    [[threshold_before, frozen_before], [threshold_after, frozen_after]] = json.loads(out)
    assert threshold_before == [700, 10, 10]
    assert frozen_before == 0
    assert threshold_after == list(THRESHOLDS)
    assert frozen_after > 1000  # the modules imported so far, at least
