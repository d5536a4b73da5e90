"""PING coalescing: the webhook's hottest path without a Redis write per ping.

Every worker pings every 15 s; with hundreds of sessions a Redis round trip per ping
would be the orchestrator's main cost. The watchdog only needs ``lastPing`` to within a
fraction of a second, so pings of sessions known to exist are collected in memory and
written in one pipeline per flush. A ping from an unknown id is still checked against
Redis at once, so it gets its 404.
"""

from __future__ import annotations

from core import keys
from core.store import Store
from core.tasks import every

FLUSH_INTERVAL_S = 0.25


class PingBuffer:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._known: set[str] = set()
        self._pending: dict[str, int] = {}

    async def record(self, session_id: str, now: int) -> bool:
        """False when no such session exists."""
        if session_id in self._known:
            self._pending[session_id] = now
            return True
        if await self.store.touch_ping(session_id, now):
            self._known.add(session_id)
            return True
        return False

    def forget(self, session_id: str) -> None:
        self._known.discard(session_id)
        self._pending.pop(session_id, None)

    async def flush(self) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, {}
        pipe = self.store.redis.pipeline(transaction=False)
        for session_id, at in batch.items():
            pipe.set(keys.session(session_id, "lastPing"), at, xx=True)
        for session_id, written in zip(batch, await pipe.execute(), strict=True):
            if not written:  # deleted meanwhile: the next ping is checked again
                self._known.discard(session_id)

    async def run(self, interval_s: float = FLUSH_INTERVAL_S) -> None:
        try:
            await every(interval_s, self.flush, "ping flush")
        finally:
            await self.flush()  # the last pings before shutdown still reach Redis
