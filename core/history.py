"""Connected sessions over time, sampled by ``serve`` into Redis, for the chat's 24-hour chart.

A sample every ``SAMPLE_INTERVAL_S`` (five minutes) is plenty for a day's curve on a phone
and costs one Redis list of at most ``KEEP`` short entries, trimmed on every write, so it can
never grow. Redis holds it, not ``serve``'s memory: a restart of ``serve`` keeps the curve.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis

from core import keys
from core.clock import Clock
from core.models import Status
from core.store import Store
from core.tasks import every

SAMPLE_INTERVAL_S = 300.0
DAY_MS = 24 * 3600 * 1000
# A day of samples plus slack for a serve restarted mid-interval (which samples at start).
KEEP = 24 * 3600 // int(SAMPLE_INTERVAL_S) + 24


@dataclass(frozen=True)
class Sample:
    at_ms: int
    connected: int
    sessions: int


class ConnectedHistory:
    """Writes and reads the samples; the key and its cap live here and in ``core.keys``."""

    def __init__(self, redis: aioredis.Redis, clock: Clock, keep: int = KEEP) -> None:
        self.redis = redis
        self.clock = clock
        self.keep = keep

    async def record(self, connected: int, sessions: int) -> None:
        """Add one sample and drop the oldest beyond ``keep``, in one transaction."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.lpush(keys.connected_history(), f"{self.clock.now_ms()} {connected} {sessions}")
            pipe.ltrim(keys.connected_history(), 0, self.keep - 1)
            await pipe.execute()

    async def sample(self, store: Store) -> Sample:
        """Count the fleet now and record it: statuses counted inside Redis, not read record
        by record (at 10,000 sessions that read was more than a second, every sample)."""
        counts = await store.status_counts()
        connected, sessions = counts.get(Status.CONNECTED, 0), sum(counts.values())
        await self.record(connected, sessions)
        return Sample(self.clock.now_ms(), connected, sessions)

    async def since(self, window_ms: int = DAY_MS) -> list[Sample]:
        """The samples of the last ``window_ms``, oldest first."""
        oldest = self.clock.now_ms() - window_ms
        found = []
        for raw in await self.redis.lrange(keys.connected_history(), 0, -1):
            try:
                at, connected, sessions = (int(part) for part in str(raw).split())
            except ValueError:
                continue  # not ours: skip it rather than break the chart
            if at >= oldest:
                found.append(Sample(at, connected, sessions))
        return sorted(found, key=lambda s: s.at_ms)

    async def run(self, store: Store, interval_s: float = SAMPLE_INTERVAL_S) -> None:
        """``serve``'s sampler: one sample every ``interval_s`` (``serve`` takes the first
        before it listens, so the key exists before anyone can look)."""
        await every(interval_s, lambda: self.sample(store), "connected-sessions sample")
