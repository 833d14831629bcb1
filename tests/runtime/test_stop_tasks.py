"""stop_tasks: background tasks stop even when a cancellation is swallowed on the way."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import pytest
from redis.asyncio import Redis

from kiungo.runtime.tasks import raise_if_cancelled, stop_tasks


async def _swallows_first_cancel(rounds: list[int]) -> None:
    """A loop whose first cancellation is caught and dropped (as library code mid-read was
    seen to do), after which it waits for its next round as if nothing had happened."""
    swallowed = False
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            if swallowed:
                raise
            swallowed = True
        rounds.append(1)


async def test_a_task_that_swallowed_its_cancellation_is_cancelled_again() -> None:
    rounds: list[int] = []
    task = asyncio.create_task(_swallows_first_cancel(rounds), name="swallower")
    await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await stop_tasks([task], every=0.05, limit=30)
    assert task.cancelled()
    assert rounds == [1]  # it did carry on after the first cancellation
    assert loop.time() - started < 10  # at its second cancellation, not at the limit


async def test_tasks_that_stop_at_once_are_not_waited_for_and_their_errors_are_kept_quiet() -> None:
    async def fails() -> None:
        raise RuntimeError("boom")

    failed = asyncio.create_task(fails())
    await asyncio.sleep(0)
    sleeping = asyncio.create_task(asyncio.sleep(3600))
    finished = asyncio.create_task(asyncio.sleep(0))
    await asyncio.sleep(0.01)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await stop_tasks([failed, sleeping, finished], every=30, limit=60)
    assert loop.time() - started < 10  # not a round of 30 s
    assert sleeping.cancelled() and finished.done() and not finished.cancelled()
    assert isinstance(failed.exception(), RuntimeError)


async def test_a_task_that_never_stops_is_named_and_left_after_the_limit(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stop = asyncio.Event()

    async def stubborn() -> None:
        while not stop.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(3600)

    task = asyncio.create_task(stubborn(), name="stubborn")
    await asyncio.sleep(0)
    with caplog.at_level(logging.ERROR, logger="kiungo.runtime.tasks"):
        await stop_tasks([task], every=0.05, limit=0.3)
    assert not task.done()
    assert "stubborn" in caplog.text and "still running" in caplog.text
    stop.set()
    task.cancel()
    await asyncio.wait([task], timeout=1)
    assert task.done()


async def test_a_loop_of_redis_commands_stops_at_its_next_round(
    redis_server_url: str, redis_prefix: str
) -> None:
    """The case that hung a connector on SIGTERM: a task sending Redis commands one after the
    other. On Python 3.11 most cancellations of it are lost inside redis-py (see
    kiungo.runtime.tasks): such a loop checks at every round, and stops at the first try."""
    redis = Redis.from_url(redis_server_url)
    loop = asyncio.get_running_loop()
    try:
        for _ in range(20):

            async def poll() -> None:
                while True:
                    raise_if_cancelled()
                    await redis.llen(redis_prefix + "list")

            task = asyncio.create_task(poll())
            await asyncio.sleep(0.01)
            started = loop.time()
            await stop_tasks([task], every=30, limit=60)
            assert task.cancelled()
            assert loop.time() - started < 10  # not the 30 s of a second try
    finally:
        await redis.aclose()
