"""The audit trail: who did what to the fleet, from where, and whether it was done.

One Redis stream, trimmed to ``AUDIT_RETENTION_DAYS``. An entry names the actor (an API
key's name, ``admin`` for ``API_KEY``, ``tg:<user id>`` from the chat), the action, the
session when there is one, and the result; never a secret or a message's text. Refused
attempts are entries too, but past ``FLOOD_LIMIT`` a minute for one actor a single
``flood`` entry counts the rest, so a loop of refused requests cannot flush the trail.

A backup carries the entries still within the retention (``export``) and a restore merges
them back under their own stream ids (``merge``), so ``since=`` paging goes on across it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
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
        lua = resources.files("core").joinpath("lua")
        self._append = redis.register_script(lua.joinpath("audit_append.lua").read_text())
        self._merged = redis.register_script(lua.joinpath("audit_merge.lua").read_text())

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

    # backup and restore -------------------------------------------------------------------

    async def export(self) -> list[Archived]:
        """Every entry within the retention, oldest first, each flood entry with its count."""
        found: list[Archived] = []
        start = str(self.clock.now_ms() - self.retention_ms)
        while True:
            batch = cast(
                "list[tuple[str, dict[str, str]]]",
                await self.redis.xrange(keys.AUDIT, start, "+", count=1000),
            )
            if not batch:
                break
            floods = [str(i) for i, f in batch if f.get("reason") == "flood"]
            counts = dict(zip(floods, await self._flood_counts(floods), strict=True))
            found += [Archived(str(i), f, counts.get(str(i))) for i, f in batch]
            start = f"({batch[-1][0]}"
        return found

    async def _flood_counts(self, ids: list[str]) -> list[int | None]:
        if not ids:
            return []
        found = await self.redis.mget([keys.audit_flood_count(i) for i in ids])
        return [None if n is None else int(n) for n in found]

    async def merge(self, archived: Sequence[Archived]) -> int:
        """Put the archived entries (oldest first, checked by ``checked``) back among the
        live ones under their own ids; one already here (same id) is not written twice, one
        past the retention not at all. How many were added.

        A stream only appends above its last id, so the merged trail is written aside and
        renamed over the live one in one script, which first moves over any entry appended
        meanwhile: nothing recorded during a restore is lost, and a failure before the
        rename leaves the live trail as it was."""
        oldest = id_key(f"{self.clock.now_ms() - self.retention_ms}-0")
        wanted = [a for a in archived if id_key(a.id) >= oldest]
        if not wanted:
            return 0
        aside = f"{keys.AUDIT}:merging"
        await self.redis.delete(aside)
        writer = _Writer(self.redis, aside)
        added, i, start, last = 0, 0, "-", "0-0"
        while True:
            batch = cast(
                "list[tuple[str, dict[str, str]]]",
                await self.redis.xrange(keys.AUDIT, start, "+", count=1000),
            )
            for live_id, fields in batch:
                live_key = id_key(str(live_id))
                while i < len(wanted) and id_key(wanted[i].id) < live_key:
                    await writer.add(wanted[i], self.retention_ms)
                    added, i = added + 1, i + 1
                if i < len(wanted) and id_key(wanted[i].id) == live_key:
                    i += 1  # already here
                await writer.add(Archived(str(live_id), fields, None), self.retention_ms)
                last = str(live_id)
            if len(batch) < 1000:
                break
            start = f"({last}"
        for entry in wanted[i:]:
            await writer.add(entry, self.retention_ms)
            added += 1
        if not added:
            await self.redis.delete(aside)
            return 0
        await writer.flush()
        await self._merged(keys=[keys.AUDIT, aside], args=[last])
        return added


@dataclass(frozen=True)
class Archived:
    """One entry as a backup carries it: its stream id, its fields, a flood entry's count."""

    id: str
    fields: dict[str, str]
    count: int | None = None

    def as_json(self) -> dict[str, Any]:
        found: dict[str, Any] = {"id": self.id, "fields": self.fields}
        if self.count is not None:
            found["count"] = self.count
        return found


class _Writer:
    """Appends to the merged trail a thousand entries a round trip."""

    def __init__(self, redis: aioredis.Redis, stream: str) -> None:
        self.stream = stream
        self.pipe = redis.pipeline(transaction=False)
        self.pending = 0

    async def add(self, entry: Archived, retention_ms: int) -> None:
        self.pipe.xadd(self.stream, entry.fields, id=entry.id)  # type: ignore[arg-type]
        if entry.count is not None:
            count_key = keys.audit_flood_count(entry.id)
            self.pipe.set(count_key, entry.count, px=retention_ms, nx=True)
        self.pending += 1
        if self.pending >= 1000:
            await self.flush()

    async def flush(self) -> None:
        if self.pending:
            await self.pipe.execute()
            self.pending = 0


_STREAM_ID = re.compile(r"(\d{1,15})-(\d{1,15})")
_VALUES = {"via": ("rest", "chat"), "result": ("done", "refused"), "action": ACTIONS}
MAX_VALUE = 512


def id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def checked(raw: object) -> Archived:
    """One archived entry as ``Archived``, checked as ``record`` would have written it;
    raises ``InvalidInput`` naming the fault (an archive may have been crafted)."""
    if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
        raise InvalidInput("an audit entry is not an object with an id")
    entry_id = raw["id"]
    if not _STREAM_ID.fullmatch(entry_id) or entry_id == "0-0":
        raise InvalidInput(f"{entry_id[:40]!r} is not a stream id")
    fields = raw.get("fields")
    if not isinstance(fields, dict) or not fields:
        raise InvalidInput(f"audit entry {entry_id} has no fields")
    for name, value in fields.items():
        if name not in _FIELDS or not isinstance(value, str) or len(value) > MAX_VALUE:
            raise InvalidInput(f"audit entry {entry_id} has a field record never writes")
        allowed = _VALUES.get(name)
        if allowed is not None and value not in allowed:
            raise InvalidInput(f"audit entry {entry_id} has an unknown {name}")
    if not fields.get("at", "").isdigit() or not {"actor", "action", "result"} <= set(fields):
        raise InvalidInput(f"audit entry {entry_id} lacks its time, actor, action or result")
    count = raw.get("count")
    if count is not None and (not isinstance(count, int) or isinstance(count, bool) or count < 1):
        raise InvalidInput(f"audit entry {entry_id} has a count that is no whole number")
    return Archived(entry_id, fields, count)


def _view(entry_id: str, fields: dict[str, str]) -> dict[str, Any]:
    view: dict[str, Any] = {"id": entry_id}
    for name in _FIELDS:
        if name in fields:
            view[name] = int(fields[name]) if name == "at" else fields[name]
    return view
