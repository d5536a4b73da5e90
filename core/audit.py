"""The audit trail: who did what to the fleet, from where, and whether it was done.

One Redis stream, trimmed to ``AUDIT_RETENTION_DAYS``. An entry names the actor (an API
key's name, ``admin`` for ``API_KEY``, ``tg:<user id>`` from the chat), the action, the
session when there is one, and the result; never a secret or a message's text. Refused
attempts are entries too, but past ``FLOOD_LIMIT`` a minute for one actor a single
``flood`` entry counts the rest, so a loop of refused requests cannot flush the trail.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any, cast

import redis.asyncio as aioredis

from core import keys
from core.clock import Clock
from core.errors import InvalidInput

ACTIONS = (
    "provision",
    "delete",
    "restart",
    "stop",
    "start",
    "qr",
    "limits",
    "message",
    "proxy_add",
    "proxy_remove",
    "backup",
    "restore",
    "key_create",
    "key_revoke",
    "key_rotate",
)
FLOOD_LIMIT = 30
MAX_PAGE = 1000
DEFAULT_PAGE = 100
_FIELDS = ("at", "actor", "via", "from", "action", "session", "result", "reason")


@dataclass(frozen=True)
class Entry:
    actor: str
    via: str  # rest | chat
    action: str
    result: str  # done | refused
    session: str | None = None
    reason: str | None = None
    origin: str | None = None  # the client's address (``from``)


class Audit:
    def __init__(self, redis: aioredis.Redis, clock: Clock, retention_days: int) -> None:
        self.redis = redis
        self.clock = clock
        self.retention_ms = retention_days * 86_400_000
        text = resources.files("core").joinpath("lua", "audit_append.lua").read_text()
        self._append = redis.register_script(text)

    async def record(self, entry: Entry) -> str:
        now = self.clock.now_ms()
        pairs: list[str | int] = ["at", now, "actor", entry.actor, "via", entry.via]
        if entry.origin:
            pairs += ["from", entry.origin]
        pairs += ["action", entry.action]
        if entry.session:
            pairs += ["session", entry.session]
        pairs += ["result", entry.result]
        refused = entry.result == "refused"
        if refused:
            pairs += ["reason", entry.reason or "refused"]
        minute = now // 60_000
        found = await self._append(
            keys=[
                keys.AUDIT,
                keys.audit_refused(entry.actor, minute),
                keys.audit_flood(entry.actor, minute),
            ],
            args=[
                now - self.retention_ms,
                "1" if refused else "0",
                FLOOD_LIMIT,
                keys.audit_flood_count(""),
                self.retention_ms,
                *pairs,
            ],
        )
        return str(found)

    async def page(
        self,
        since: str = "0",
        limit: int = DEFAULT_PAGE,
        session: str | None = None,
        actor: str | None = None,
    ) -> tuple[list[dict[str, Any]], str]:
        """Entries after the stream id ``since`` (``0``: from the start), oldest first, at
        most ``limit`` matching ``session`` and ``actor``; and the ``since`` of the next page.
        A filtered page reads at most ten pages' worth of entries, so it may come back short
        with a ``next`` further on: call again with it."""
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidInput(f"limit must be a whole number from 1 to {MAX_PAGE}")
        start = "-" if since in ("0", "0-0") else f"({since}"
        found: list[dict[str, Any]] = []
        cursor = since
        budget = 10 * limit
        while len(found) < limit and budget > 0:
            batch = cast(
                "list[tuple[str, dict[str, str]]]",
                await self.redis.xrange(keys.AUDIT, start, "+", count=min(budget, 1000)),
            )
            if not batch:
                break
            budget -= len(batch)
            for entry_id, fields in batch:
                cursor = str(entry_id)
                if (session is None or fields.get("session") == session) and (
                    actor is None or fields.get("actor") == actor
                ):
                    found.append(_view(cursor, fields))
                    if len(found) == limit:
                        break
            start = f"({cursor}"
        await self._counts(found)
        return found, cursor

    async def latest(self, n: int) -> list[dict[str, Any]]:
        """The last ``n`` entries, oldest first (flood entries with their count)."""
        batch = cast(
            "list[tuple[str, dict[str, str]]]",
            await self.redis.xrevrange(keys.AUDIT, "+", "-", count=n),
        )
        found = [_view(str(i), f) for i, f in reversed(batch)]
        await self._counts(found)
        return found

    async def _counts(self, found: list[dict[str, Any]]) -> None:
        floods = [e for e in found if e.get("reason") == "flood"]
        if floods:
            counts = await self.redis.mget([keys.audit_flood_count(e["id"]) for e in floods])
            for e, n in zip(floods, counts, strict=True):
                e["count"] = int(n or 1)


def _view(entry_id: str, fields: dict[str, str]) -> dict[str, Any]:
    view: dict[str, Any] = {"id": entry_id}
    for name in _FIELDS:
        if name in fields:
            view[name] = int(fields[name]) if name == "at" else fields[name]
    return view
