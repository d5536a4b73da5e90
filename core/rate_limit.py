"""Each issued key's request rate: a token bucket in Redis, shared by every replica."""

from __future__ import annotations

from importlib import resources

import redis.asyncio as aioredis

from core import keys


class KeyRate:
    """``take`` spends one token of a key's bucket; refused, it says how long to wait."""

    def __init__(self, redis: aioredis.Redis, rate_per_s: int, burst: int) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        text = resources.files("core").joinpath("lua", "key_rate.lua").read_text()
        self._take = redis.register_script(text)

    async def take(self, key_id: str, rate_per_s: int | None = None) -> int:
        """0 when the request may go on; else the whole seconds until it may (at least 1)."""
        rate = rate_per_s or self.rate_per_s
        # A key's own rate raises its burst with it: two seconds' worth at least.
        burst = max(self.burst, 2 * rate) if rate_per_s else self.burst
        allowed, wait_ms = await self._take(keys=[keys.api_key_rate(key_id)], args=[rate, burst])
        if int(allowed):
            return 0
        return max(1, -(-int(wait_ms) // 1000))
