"""A session's recent crashes, counted in Redis so every replica sees the same count.

Held in one process, the count started again from nought each time another replica took
the lead: a worker that crashes every minute was restarted forever across take-overs, and
never parked as a crash loop. A sorted set of exit times per session (wall clock, since
the replicas share no monotonic clock), trimmed to the window and expiring with it.
"""

from __future__ import annotations

import secrets

from redis.asyncio import Redis

from core import keys


class CrashCounts:
    def __init__(self, redis: Redis, window_s: int) -> None:
        self.redis = redis
        self.window_ms = window_s * 1000

    async def add(self, session_id: str, now_ms: int) -> int:
        """Count one exit now; how many fell within the window, this one included."""
        key = keys.session_crashes(session_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zadd(key, {f"{now_ms}:{secrets.token_hex(4)}": now_ms})
            pipe.zremrangebyscore(key, "-inf", now_ms - self.window_ms - 1)
            pipe.zcard(key)
            pipe.pexpire(key, self.window_ms)
            found = await pipe.execute()
        return int(found[2])

    async def clear(self, session_id: str) -> None:
        """Connected, or deleted: its story of crashes is over."""
        await self.redis.delete(keys.session_crashes(session_id))
