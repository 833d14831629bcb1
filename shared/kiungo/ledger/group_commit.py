"""Group commit as both ledgers do it: callers queue requests, writer tasks take whatever has
queued up and commit it as one batch, and each caller gets its own result.

The ledger (Postgres or TigerBeetle) decides what a request is, how many a batch takes and how
it is committed; this is the queue, the writer tasks' lifetime and the handing of results.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Generic, Protocol, TypeVar

from kiungo.ledger.rules import Transfer
from kiungo.runtime.tasks import stop_tasks

__all__ = ["GroupCommit", "Queued", "settle"]


class Queued(Protocol):
    """A queued request: its caller awaits ``future``."""

    @property
    def future(self) -> asyncio.Future[list[Transfer]]: ...


_R = TypeVar("_R", bound=Queued)


class GroupCommit(Generic[_R]):
    """The queue of requests and the writer tasks that take them; ``writers`` tasks named
    ``name-0``, ``name-1``…, each running the writer it is started with."""

    def __init__(self, name: str, writers: int) -> None:
        self.queue: list[_R] = []
        self._name = name
        self._writer_count = writers
        self._wakeup = asyncio.Event()
        self._writers: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self.idle = 0  # writers waiting for a request

    @property
    def running(self) -> bool:
        return bool(self._writers)

    def start(self, writer: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Start the writers (each one ``writer()``) unless they run."""
        if not self._writers:
            # Kept: asking for the running loop on every submit was a getpid() system call each.
            self._loop = asyncio.get_running_loop()
            self._writers = [
                asyncio.create_task(writer(), name=f"{self._name}-{i}")
                for i in range(self._writer_count)
            ]

    async def close(self) -> None:
        """Let the writers take what is queued, then stop them."""
        if not self._writers:
            return
        while self.queue:
            self._wakeup.set()
            await asyncio.sleep(0.001)
        await stop_tasks(self._writers)
        self._writers = []

    def future(self) -> asyncio.Future[list[Transfer]]:
        """A future for a request's result; the ledger must be started."""
        loop = self._loop
        if loop is None or not self._writers:
            raise RuntimeError("the ledger is not started")
        return loop.create_future()

    def put(self, request: _R) -> None:
        """Queue ``request`` for the next batch."""
        self.queue.append(request)
        self._wakeup.set()

    async def wait(self) -> None:
        """Return once something is queued (a writer's wait for its next batch)."""
        while not self.queue:
            self._wakeup.clear()
            self.idle += 1
            try:
                await self._wakeup.wait()
            finally:
                self.idle -= 1


def settle(request: Queued, result: list[Transfer] | Exception) -> None:
    """Give ``request``'s caller its result (an exception is raised there), unless the caller
    has stopped waiting."""
    if request.future.done():
        return
    if isinstance(result, Exception):
        request.future.set_exception(result)
    else:
        request.future.set_result(result)
