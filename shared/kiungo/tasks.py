"""Stopping background tasks: cancelled, and cancelled again until they have stopped."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

__all__ = ["stop_tasks"]

log = logging.getLogger("kiungo.tasks")


async def stop_tasks(
    tasks: Iterable[asyncio.Task[Any]], *, every: float = 2.0, limit: float = 20.0
) -> None:
    """Cancel ``tasks`` and wait until they have finished.

    A task still running ``every`` seconds later is cancelled again: a cancellation can be
    swallowed on its way through library code (redis-py's asyncio client, cancelled in the
    middle of reading a reply, was seen to carry on and read the next one), which leaves a
    loop waiting for its next round instead of stopping, and a service that never exits on
    SIGTERM. After ``limit`` seconds the tasks still running are logged by name and left, so
    that the stop goes on. What the tasks raised is not re-raised (they are being stopped)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    tasks = list(tasks)
    pending = {task for task in tasks if not task.done()}
    stopped = [task for task in tasks if task.done()]
    while pending:
        for task in pending:
            task.cancel()
        left = deadline - loop.time()
        if left <= 0:
            names = sorted(task.get_name() for task in pending)
            log.error("tasks still running %.0f s after being cancelled: %s", limit, names)
            break
        done, pending = await asyncio.wait(pending, timeout=min(every, left))
        stopped.extend(done)
    for task in stopped:
        if not task.cancelled():
            task.exception()  # retrieved, so that asyncio does not warn of it at exit
