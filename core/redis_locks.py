"""Locks that hold across ``serve`` replicas: one session's work never interleaves anywhere.

A restart sent to one replica and a delete sent to another at the same moment must run one
after the other, as they do inside one process. Each lock is a Redis key set with ``NX``, a
random token and an expiry, renewed while held and deleted only by its holder (a script
compares the token): a replica that dies holding one frees it within ``ttl``, and a holder
that outlived its expiry never deletes the next holder's lock.

Inside one process an ``asyncio.Lock`` per name is taken first: waiters of the same replica
queue in order without polling Redis, and only one of them at a time contends across
replicas. Waiting for another replica's lock polls with a short, growing pause: contention
between replicas is rare (one session, two operators), so a pub/sub wake is not worth it.

Leader-only work (``core.leadership.acting_as_leader``) takes its locks fenced: refused when
its token is no longer the leader's, so a leader frozen past its lease cannot act on a
session again after it thaws.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
from collections import defaultdict
from collections.abc import AsyncIterator

import redis.asyncio as aioredis

from core import keys
from core.leadership import LostLeadership, acting_value
from core.store import load_script

log = logging.getLogger("wafleet.locks")

TTL_MS = 15_000  # a dead holder's lock frees itself after this; renewed every third of it
POLL_S = (0.005, 0.1)  # the pause between tries while another replica holds it, growing


class RedisLocks:
    """Named locks of one ``kind`` (``session``, ``proxy``); ``locks[name]`` is the async
    context manager, as with a ``defaultdict(asyncio.Lock)``."""

    def __init__(self, redis: aioredis.Redis, kind: str, ttl_ms: int = TTL_MS) -> None:
        self.redis = redis
        self.kind = kind
        self.ttl_ms = ttl_ms
        self._local: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._acquire = redis.register_script(load_script("lock_acquire.lua"))
        self._renew = redis.register_script(load_script("lease_renew.lua"))
        self._release = redis.register_script(load_script("lease_release.lua"))

    def __getitem__(self, name: str) -> contextlib.AbstractAsyncContextManager[None]:
        return self.hold(name)

    def pop(self, name: str, default: object = None) -> object:
        """Forget the in-process lock of a name that is gone (a deleted session)."""
        return self._local.pop(name, default)

    def key(self, name: str) -> str:
        # A proxy is named by its URL, which holds its password: the key carries a digest.
        part = name if self.kind == "session" else hashlib.sha256(name.encode()).hexdigest()[:24]
        return keys.lock(self.kind, part)

    @contextlib.asynccontextmanager
    async def hold(self, name: str) -> AsyncIterator[None]:
        async with self._local[name]:
            key = self.key(name)
            token = secrets.token_hex(12)
            await self._take(key, token)
            # Most holds end long before a third of the ttl: a renewing task is made only
            # for one that lasts that long (a failover, a worker slow to stop).
            renewer: list[asyncio.Task[None]] = []
            later = asyncio.get_running_loop().call_later(
                self.ttl_ms / 3000,
                lambda: renewer.append(asyncio.create_task(self._keep(key, token))),
            )
            try:
                yield
            finally:
                later.cancel()
                for task in renewer:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                try:
                    await asyncio.shield(self._release(keys=[key], args=[token]))
                except Exception:  # Redis away: the lock frees itself at its expiry
                    log.warning("could not release %s; it expires by itself", key)

    async def _take(self, key: str, token: str) -> None:
        pause = POLL_S[0]
        while True:
            leader = acting_value() or ""
            got = int(
                await self._acquire(keys=[key, keys.LEADER], args=[token, self.ttl_ms, leader])
            )
            if got == 1:
                return
            if got < 0:
                raise LostLeadership("the leader's fencing token is stale: lock refused")
            await asyncio.sleep(pause)
            pause = min(pause * 2, POLL_S[1])

    async def _keep(self, key: str, token: str) -> None:
        """Renew while held: a failover or a bulk start may hold a session's lock for long."""
        while True:
            try:
                if not await self._renew(keys=[key], args=[token, self.ttl_ms]):
                    log.error("lock %s expired while held (the holder was stalled)", key)
                    return
            except Exception:
                log.warning("could not renew %s; trying again", key)
            await asyncio.sleep(self.ttl_ms / 3000)
