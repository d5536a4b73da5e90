"""A session's events in Redis: the stream the operator reads, and each worker event's
applied-once mark."""

from __future__ import annotations

import json
from typing import Any

from core import keys
from core.store.base import StorePart

EVENTS_KEPT = 200  # per session: enough to explain the last day without growing forever


class SessionEvents(StorePart):
    async def add_event(self, session_id: str, kind: str, data: dict[str, Any], now: int) -> None:
        await self.redis.xadd(
            keys.session_events(session_id),
            {"type": kind, "data": json.dumps(data, ensure_ascii=False), "at": now},
            maxlen=EVENTS_KEPT,
            approximate=True,
        )

    async def events(self, session_id: str, count: int = 50) -> list[dict[str, Any]]:
        rows: Any = await self.redis.xrevrange(keys.session_events(session_id), count=count)
        return [
            {"type": f["type"], "data": json.loads(f["data"]), "at": int(f["at"])} for _, f in rows
        ]

    # worker events: each applied once ------------------------------------------------------

    async def claim_event(self, session_id: str, event_id: str, now: int, ttl_ms: int) -> bool:
        """True for the first delivery of an event id, False for a repeat: SET NX, so of two
        deliveries racing each other exactly one gets through."""
        key = keys.event_applied(session_id, event_id)
        return bool(await self.redis.set(key, now, nx=True, px=ttl_ms))

    async def unclaim_event(self, session_id: str, event_id: str) -> None:
        """The event could not be applied after all: its retry must get through."""
        await self.redis.delete(keys.event_applied(session_id, event_id))
