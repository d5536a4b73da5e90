"""The Redis store: the fleet's keys, and every invariant kept by a Lua script.

``Store`` is the one object callers use. It is made of one part per kind of record, each in
its own module: ``sessions`` (records, the order index, slots), ``events`` (a session's
event stream, worker events applied once), ``proxies`` (the pool) and ``backups`` (what a
backup reads and a restore writes, and the fleet's snapshot). Nothing here decides policy
(that is the session service); the store only guarantees that what it writes is consistent
even when many coroutines or processes write at once.
"""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from core.store.backups import BackupRecords, FleetSnapshot
from core.store.events import EVENTS_KEPT, SessionEvents
from core.store.proxies import ProxyRecords, proxy_status_of
from core.store.scripts import load_script, lua_constants
from core.store.sessions import (
    Liveness,
    NoSuchSession,
    ReservationRefused,
    SessionRecords,
    id_order,
)

__all__ = [
    "EVENTS_KEPT",
    "FleetSnapshot",
    "Liveness",
    "NoSuchSession",
    "ReservationRefused",
    "Store",
    "id_order",
    "load_script",
    "lua_constants",
    "proxy_status_of",
]

# After a Redis restart every pooled connection is dead: a call that meets one reconnects and
# tries again (0.05 s, 0.1 s, 0.2 s, 0.4 s, 0.5 s apart) instead of failing the request; while
# Redis stays down the caller gets the error after about 1.3 s and the API answers 503.
REDIS_RETRIES = 5
REDIS_BACKOFF = ExponentialBackoff(cap=0.5, base=0.05)
# At once; more callers wait up to REDIS_POOL_WAIT_S for one. A burst of 200 provisions with
# their workers' events and polls exhausted 100 connections and a 5 s wait (503s in
# bench/fleet_bench.py); Redis takes 10,000 clients.
REDIS_CONNECTIONS = 400
REDIS_POOL_WAIT_S = 20.0


class Store(SessionRecords, SessionEvents, ProxyRecords, BackupRecords):
    @classmethod
    def connect(cls, url: str) -> Store:
        """A client that survives a Redis restart.

        A retry resends a command when its connection failed, perhaps after Redis ran it.
        Every write here is a ``SET``/``DEL`` of a whole value or an atomic script that checks
        its own precondition: a resent provision answers from its receipt, a resent failover
        finds the session moved, a resent release or proxy status change finds the work done.
        """
        # A burst (hundreds of messages, their workers' events and polls at once) needs more
        # than the pool's connections at a time: wait for a free one rather than fail.
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=REDIS_CONNECTIONS,
            timeout=REDIS_POOL_WAIT_S,
            decode_responses=True,
            retry=Retry(REDIS_BACKOFF, REDIS_RETRIES),
            retry_on_error=[RedisConnectionError, RedisTimeoutError],
            health_check_interval=10,  # a connection idle that long is pinged before use
            socket_keepalive=True,
            socket_connect_timeout=2,
        )
        return cls(aioredis.Redis.from_pool(pool))  # closing the client closes the pool

    async def close(self) -> None:
        await self.redis.aclose()
