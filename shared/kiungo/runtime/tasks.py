"""Stopping background tasks: cancelled, and cancelled again until they have stopped."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

__all__ = ["raise_if_cancelled", "stop_tasks"]

log = logging.getLogger("kiungo.runtime.tasks")


async def stop_tasks(
    tasks: Iterable[asyncio.Task[Any]], *, every: float = 2.0, limit: float = 20.0
) -> None:
    """Cancel ``tasks`` and wait until they have finished.

    A task still running ``every`` seconds later is cancelled again: a cancellation can be
    lost on its way through library code, which leaves a loop waiting for its next round
    instead of stopping, and a service that never exits on SIGTERM. redis-py's asyncio client
    sends every command under ``asyncio.wait_for`` (its socket timeout, 5 s by default), and
    Python 3.11's ``wait_for`` returns the result and drops the cancellation when both arrive
    in one turn of the loop (fixed in 3.12): most cancellations that land while a command is
    being sent are lost that way. After ``limit`` seconds the tasks still running are logged by
    name and left, so that the stop goes on. What the tasks raised is not re-raised (they are
    being stopped)."""
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


def raise_if_cancelled() -> None:
    """Raise ``CancelledError`` if the current task was cancelled and is still running: the
    cancellation was lost on its way (see :func:`stop_tasks`). Called at the top of every
    round of a background loop that runs Redis commands, so that the loop stops at its next
    round rather than at :func:`stop_tasks`' next try (which a loop that is always sending a
    command would mostly lose too)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
