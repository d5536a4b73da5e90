"""Background tasks that are never lost: a reference is kept and a failure is logged."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

log = logging.getLogger("wafleet.tasks")


class TaskGroup:
    """A bag of fire-and-forget tasks with an owner that can cancel them all."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("background task %s failed", task.get_name(), exc_info=exc)

    async def join(self) -> None:
        """Wait for what is running now (tests and graceful shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def cancel(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)


async def every(interval_s: float, action: Callable[[], Awaitable[object]], what: str) -> None:
    """Run ``action`` every ``interval_s`` until cancelled; a failed pass is logged, and the
    next one comes as usual (one bad Redis answer must not stop the watchdog for good)."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await action()
        except Exception:
            log.exception("%s failed; trying again in %.1f s", what, interval_s)
