"""A child process's output, read while it runs.

A pipe nobody reads holds 64 KiB; then the child's next write blocks, and with it the child's
event loop: a connector that logs a rejected packet per line stops answering, and never exits on
SIGTERM. Every pipe a test gives a long-running `kiungo` process is read by one of these."""

from __future__ import annotations

import asyncio
import contextlib
import sys

__all__ = ["CapturedOutput"]


class CapturedOutput:
    """Reads ``stream`` to its end in a task, keeping the last ``limit`` bytes."""

    def __init__(self, stream: asyncio.StreamReader | None, *, limit: int = 1 << 20) -> None:
        self._kept = bytearray()
        self._limit = limit
        self._task = None if stream is None else asyncio.create_task(self._read(stream))

    async def _read(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(65536):
            self._kept += chunk
            if len(self._kept) > self._limit:
                del self._kept[: len(self._kept) - self._limit]

    def text(self, last: int = 4000) -> str:
        """The last ``last`` characters read so far."""
        return self._kept.decode(errors="replace")[-last:]

    async def finish(self) -> str:
        """Wait (up to 5 s) for the end of the stream, once the process has exited; the whole
        kept text."""
        if self._task is not None:
            await asyncio.wait([self._task], timeout=5)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        return self._kept.decode(errors="replace")

    def show(self, title: str, last: int = 4000) -> None:
        """Print the tail to stderr, where pytest's report of a failed test shows it."""
        print(f"--- {title} (last {last} characters) ---\n{self.text(last)}", file=sys.stderr)
