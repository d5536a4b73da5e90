"""The proxy pool in Redis: each proxy's status and the count of sessions on it."""

from __future__ import annotations

import redis.asyncio as aioredis

from core import keys
from core.models import ProxyRecord, ProxyStatus
from core.store.base import RECORDS_PER_MGET, StorePart, as_str, as_strs
from core.store.scripts import load_script


class ProxyRecords(StorePart):
    def __init__(self, redis: aioredis.Redis) -> None:
        super().__init__(redis)
        self._remove_proxy = redis.register_script(load_script("remove_proxy.lua"))
        self._add_proxy = redis.register_script(load_script("add_proxy.lua"))
        self._recount = redis.register_script(load_script("recount.lua"))
        self._proxy_status = redis.register_script(load_script("proxy_status.lua"))

    async def add_proxy(self, url: str) -> bool:
        """Add to the pool; an existing proxy keeps its status and count."""
        named = [keys.proxy_status(url), keys.proxy_sessions(url)]
        return bool(await self._add_proxy(keys=[keys.PROXIES, *named], args=[url]))

    async def remove_proxy(self, url: str) -> int:
        named = [keys.proxy_status(url), keys.proxy_sessions(url), keys.proxy_members(url)]
        return int(await self._remove_proxy(keys=[keys.PROXIES, *named], args=[url]))

    async def set_proxy_status(self, url: str, status: ProxyStatus) -> bool:
        """Returns True when the status changed (so callers alert once, not per report)."""
        return bool(
            await self._proxy_status(
                keys=[keys.PROXIES, keys.proxy_status(url)], args=[url, str(status)]
            )
        )

    async def proxies(self) -> list[ProxyRecord]:
        """Every pooled proxy, by URL. Read with one ``MGET`` per chunk of proxies rather than
        one command each: at 2,500 proxies (10,000 sessions) the commands cost more in
        redis-py than the values, and stats and ``/metrics`` read this on every call."""
        urls = sorted(as_strs(await self.redis.smembers(keys.PROXIES)))
        pipe = self.redis.pipeline(transaction=False)
        for at in range(0, len(urls), RECORDS_PER_MGET):
            chunk = urls[at : at + RECORDS_PER_MGET]
            pipe.mget(
                [k for url in chunk for k in (keys.proxy_status(url), keys.proxy_sessions(url))]
            )
        values = [v for part in await pipe.execute() for v in part]
        return [
            ProxyRecord(
                url=url,
                status=proxy_status_of(values[2 * i]),
                sessions=int(values[2 * i + 1] or 0),
            )
            for i, url in enumerate(urls)
        ]

    async def proxy_status(self, url: str) -> ProxyStatus | None:
        status = as_str(await self.redis.get(keys.proxy_status(url)))
        return None if status is None else proxy_status_of(status)

    async def recount(self) -> int:
        return int(await self._recount(keys=[keys.PROXIES, keys.SESSIONS]))


def proxy_status_of(stored: str | None) -> ProxyStatus:
    """A missing status reads as active (``add_proxy`` writes it); one this version does not
    know reads as bad, since the scripts only ever place sessions on ``active`` proxies."""
    if stored is None:
        return ProxyStatus.ACTIVE
    try:
        return ProxyStatus(stored)
    except ValueError:
        return ProxyStatus.BAD
