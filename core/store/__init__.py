"""The Redis store: the fleet's keys, and every invariant kept by a Lua script.

``Store`` is the one object callers use. It is made of one part per kind of record, each in
its own module: ``sessions`` (records, the order index, slots), ``events`` (a session's
event stream, worker events applied once), ``proxies`` (the pool) and ``backups`` (what a
backup reads and a restore writes, and the fleet's snapshot). Nothing here decides policy
(that is the session service); the store only guarantees that what it writes is consistent
even when many coroutines or processes write at once.
"""

from __future__ import annotations

from core import redis_client
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


class Store(SessionRecords, SessionEvents, ProxyRecords, BackupRecords):
    @classmethod
    def connect(cls, url: str) -> Store:
        """A store on one Redis at ``url`` that survives its restart (core/redis_client.py);
        ``serve`` builds its client with ``redis_client.connect`` (Sentinel too)."""
        return cls(redis_client.from_url(url))

    async def close(self) -> None:
        await self.redis.aclose()
