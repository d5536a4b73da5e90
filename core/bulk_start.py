"""Starting many workers at once (after a host reboot or a restore): bounded, ordered, counted.

Hundreds of workers started together would each spend a second of CPU importing their
client; all at once, two cores thrash and every one of them misses its first pings. One
after the other, the last phone waits minutes. A small pool of starters (the setting
``WORKER_START_CONCURRENCY``) takes sessions from one ordered queue: those that were
connected before come back first, so the numbers that were working are working again
before the ones that never were. ``BulkStart`` is what REST and the chat show meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from core.models import SessionRecord, Status

log = logging.getLogger("wafleet.bulk_start")


@dataclass
class BulkStart:
    """The progress of one bulk start: how many workers it has, started and still to go."""

    total: int
    started: int = 0
    failed: int = 0

    @property
    def pending(self) -> int:
        return self.total - self.started - self.failed


def start_order(records: Sequence[SessionRecord]) -> list[SessionRecord]:
    """Connected sessions first (most recently connected first), then those connected once,
    then the rest (never linked yet): the numbers that were working come back first."""

    def rank(record: SessionRecord) -> tuple[int, int]:
        if record.status == Status.CONNECTED:
            return 0, -(record.connected_at or 0)
        if record.connected_at:
            return 1, -record.connected_at
        return 2, 0

    return sorted(records, key=rank)  # stable: equal ranks keep the store's order


async def run(
    records: Sequence[SessionRecord],
    start: Callable[[SessionRecord], Awaitable[None]],
    concurrency: int,
    progress: BulkStart,
) -> None:
    """Start ``records`` in ``start_order`` with at most ``concurrency`` starts in flight.

    A session ``start`` skips (deleted or parked meanwhile) counts as done; an exception
    counts as failed and is logged, so one bad session never stops the rest.
    """
    queue = list(reversed(start_order(records)))  # pop() from the end: the first goes first

    async def starter() -> None:
        while queue:
            record = queue.pop()
            try:
                await start(record)
            except Exception:
                progress.failed += 1
                log.exception("could not start the worker of %s", record.id)
            else:
                progress.started += 1

    await asyncio.gather(*(starter() for _ in range(max(1, min(concurrency, len(queue))))))
