"""What may not interleave: the work on one session, and the failover off one proxy.

A failover, a restart, a delete and a worker's event of the same session never run at the
same time; every room of the session service takes its locks here and nowhere else, so a
lock that several ``serve`` processes share can take the place of these in-process ones
without any room changing.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager

import redis.asyncio as aioredis

from core.redis_locks import RedisLocks


class Locks:
    """One lock per session and one per proxy, held in Redis (``core/redis_locks.py``), so a
    restart sent to one ``serve`` replica and a delete sent to another run one after the
    other, as they do inside one process."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._sessions = RedisLocks(redis, "session")
        self._proxies = RedisLocks(redis, "proxy")

    def session(self, session_id: str) -> AbstractAsyncContextManager[None]:
        """Held while anything reads a session to decide what to do with it, and does it."""
        return self._sessions[session_id]

    def proxy(self, url: str) -> AbstractAsyncContextManager[None]:
        """Held while one failover confirms a proxy dead and moves its sessions off it."""
        return self._proxies[url]

    def forget(self, session_id: str) -> None:
        """The session is deleted: its in-process lock goes with it."""
        self._sessions.pop(session_id, None)
