"""What happened since the last daily digest: a few counters in one Redis hash.

The digest reads and resets them in one transaction (``take``), so nothing counted between
the read and the reset is lost and nothing is told twice. Counting is hooked where each
thing is already told: the alerts every failover, restart, logout and backup raise go
through the notifier (``JournalNotifier`` is one more notifier in the fan-out); sessions
added and removed are counted by the session service, which is the one place for both.
The hash lives in Redis, not in ``serve``'s memory, so a restart of ``serve`` loses no count.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import redis.asyncio as aioredis

from core import keys
from core.clock import Clock
from core.notifier import Alert, AlertKind

SINCE = "since"  # the hash field holding when counting started (ms)


class Happened(StrEnum):
    """The counters of the digest (hash fields)."""

    FAILOVERS = "failovers"  # sessions moved to another proxy
    WATCHDOG_RESTARTS = "watchdog_restarts"
    CRASHES = "crashes"  # workers that exited by themselves (restarted, or parked)
    LOGOUTS = "logouts"
    BACKUPS = "backups"
    SESSIONS_ADDED = "sessions_added"
    SESSIONS_REMOVED = "sessions_removed"


@dataclass(frozen=True)
class Tally:
    """The counters taken at one digest, and since when they ran (None: never reset)."""

    counts: Mapping[Happened, int]
    since_ms: int | None

    def __getitem__(self, what: Happened) -> int:
        return self.counts.get(what, 0)

    @property
    def empty(self) -> bool:
        return not any(self.counts.values())


class Journal:
    def __init__(self, redis: aioredis.Redis, clock: Clock) -> None:
        self.redis = redis
        self.clock = clock

    async def count(self, what: Happened, n: int = 1) -> None:
        if n:
            await self.redis.hincrby(keys.digest_journal(), what.value, n)

    async def peek(self) -> Tally:
        """The counters as they stand, without resetting them."""
        return _tally(await self.redis.hgetall(keys.digest_journal()))

    async def take(self) -> Tally:
        """Read every counter and start counting afresh from now, atomically."""
        key = keys.digest_journal()
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(key)
            pipe.delete(key)
            pipe.hset(key, SINCE, self.clock.now_ms())
            raw, _, _ = await pipe.execute()
        return _tally(raw)

    async def give_back(self, tally: Tally) -> None:
        """Put taken counts back (the digest could not be sent): the next one tells them."""
        async with self.redis.pipeline(transaction=True) as pipe:
            for what, n in tally.counts.items():
                if n:
                    pipe.hincrby(keys.digest_journal(), what.value, n)
            if tally.since_ms is not None:
                pipe.hset(keys.digest_journal(), SINCE, tally.since_ms)
            await pipe.execute()


def _tally(raw: Mapping[Any, Any]) -> Tally:
    """The hash as read (strings: the store's client decodes answers)."""
    counts: dict[Happened, int] = {}
    for what in Happened:
        try:
            counts[what] = int(raw.get(what.value, 0))
        except ValueError:
            counts[what] = 0
    since = str(raw.get(SINCE, ""))
    return Tally(counts, int(since) if since.isdigit() else None)


class JournalNotifier:
    """Counts what the alerts tell, as one more notifier beside the log and the bot."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    async def notify(self, alert: Alert) -> None:
        kind = alert.kind
        if kind is AlertKind.PROXY_BAD:
            moved = sum(m.new_proxy is not None for m in alert.moves)
            await self.journal.count(Happened.FAILOVERS, moved)
        elif kind is AlertKind.WATCHDOG_RESTART:
            await self.journal.count(Happened.WATCHDOG_RESTARTS)
        elif kind in (AlertKind.WORKER_CRASHED, AlertKind.CRASH_LOOP):
            await self.journal.count(Happened.CRASHES)
        elif kind is AlertKind.LOGGED_OUT:
            await self.journal.count(Happened.LOGOUTS)
        elif kind is AlertKind.BACKUP_DONE:
            await self.journal.count(Happened.BACKUPS)
