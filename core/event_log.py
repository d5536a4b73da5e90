"""The durable per-session stream of events for the operator: incoming messages and receipts.

One Redis stream per session (``keys.operator_events``), written once per worker event id,
read in order by the delivery lane (``core/deliveries.py``) from a cursor kept beside it.
The retention policy, in one sentence: an event leaves the stream only once it has been
delivered or dead-lettered (the cursor is past it) *and* it is older than
``EVENTS_RETENTION_MS``; an event nobody has received yet is never trimmed, however long the
endpoint is away. A session with no endpoint at all is pull-only (``?since=``): its events are
kept for the retention and then trimmed.

Every write is a Lua script that checks its own precondition, so the client's retry of a
command whose answer was lost (``Store.connect``) never stores, moves or dead-letters twice.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from core import keys
from core.errors import InvalidInput, NotFound
from core.store import load_script

# How long "this worker event is stored as ..." is remembered: as long as the webhook's own
# applied-once marker (core/events.py), beyond any worker's buffering of unsent events.
WRITTEN_TTL_MS = 24 * 3600 * 1000
STREAM_ID = re.compile(r"(\d{1,20})(?:-(\d{1,20}))?", re.ASCII)
MAX_PAGE = 500
REDELIVER_BATCH = 1000


@dataclass(frozen=True)
class StoredEvent:
    """One event as the operator receives it; ``id`` is stable across every attempt and a
    redelivery, so the receiver deduplicates on it."""

    stream_id: str
    id: str
    session_id: str
    type: str
    data: dict[str, Any]
    at: int

    def body(self) -> dict[str, Any]:
        """The JSON the operator's endpoint gets (and ``?since=`` answers)."""
        return {
            "id": self.id,
            "sessionId": self.session_id,
            "type": self.type,
            "data": self.data,
            "timestamp": self.at,
            "streamId": self.stream_id,
        }


@dataclass(frozen=True)
class Head:
    """The next event a session's lane must deliver, with what is known about it."""

    event: StoredEvent | None
    attempts: int  # failed attempts so far (kept across restarts of serve)
    next_at: int  # when the next attempt may start (ms); 0: now
    session_exists: bool
    endpoint: str  # the session's own endpoint, '' when it has none
    # Deleted, its stream still draining: what was accepted before the delete is still
    # delivered (to ``endpoint`` as it was), then the stream goes (``forget``).
    deleted: bool = False


def stream_order(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


def after(stream_id: str) -> str:
    """The smallest stream id above ``stream_id``: ``XTRIM MINID`` with it removes that
    entry and everything before it, and nothing after."""
    ms, seq = stream_order(stream_id)
    return f"{ms}-{seq + 1}"


def parse_since(raw: str) -> str:
    """``since`` of the replay: ``0`` (from the start), ``<ms>`` or a full ``<ms>-<seq>``."""
    found = STREAM_ID.fullmatch(raw.strip())
    if found is None:
        raise InvalidInput("since must be a stream id (<ms>-<seq>, <ms>, or 0 for the start)")
    return f"{int(found.group(1))}-{int(found.group(2) or 0)}"


class EventLog:
    """Reads and writes the operator streams; ``on_append`` listeners learn of new events
    at once (the delivery loop), so a lane never has to poll Redis for work."""

    def __init__(self, redis: aioredis.Redis, retention_ms: int) -> None:
        self.redis = redis
        self.retention_ms = retention_ms
        self._listeners: list[Callable[[str], None]] = []
        self._append = redis.register_script(load_script("events_append.lua"))
        self._head = redis.register_script(load_script("events_head.lua"))
        self._done = redis.register_script(load_script("events_done.lua"))
        self._failed = redis.register_script(load_script("events_failed.lua"))
        self._redeliver = redis.register_script(load_script("events_redeliver.lua"))
        self._forget = redis.register_script(load_script("events_forget.lua"))

    def on_append(self, listener: Callable[[str], None]) -> None:
        self._listeners.append(listener)

    def _notify(self, session_id: str) -> None:
        for listener in self._listeners:
            listener(session_id)

    # writing ----------------------------------------------------------------------------

    async def append(
        self, session_id: str, worker_event_id: str, kind: str, data: dict[str, Any], now: int
    ) -> bool:
        """Store a worker event for the operator; False when this worker event id was stored
        already (a replay). The operator-facing id is ``<session>.<worker event id>``.
        ``NotFound`` (nothing written) when the session is not in the fleet (any more)."""
        answer = await self._append(
            keys=[
                keys.operator_written(session_id, worker_event_id),
                keys.operator_events(session_id),
                keys.DELIVERY_SESSIONS,
                keys.session(session_id, "status"),
            ],
            args=[
                WRITTEN_TTL_MS,
                session_id,
                f"{session_id}.{worker_event_id}",
                kind,
                json.dumps(data, ensure_ascii=False, separators=(",", ":")),
                now,
            ],
        )
        added = int(answer[0])
        if added < 0:
            raise NotFound(f"no session {session_id!r}")
        if added:
            self._notify(session_id)
        return bool(added)

    async def delivered(self, session_id: str, stream_id: str, now: int) -> None:
        await self._finish(session_id, stream_id, now, "")

    async def dead_letter(self, event: StoredEvent, attempts: int, error: str, now: int) -> None:
        letter = {
            "id": event.id,
            "type": event.type,
            "data": json.dumps(event.data, ensure_ascii=False, separators=(",", ":")),
            "at": str(event.at),  # a string: Lua's cjson would print a big number as 1.7e+12
            "streamId": event.stream_id,
            "attempts": attempts,
            "error": error,
            "deadAt": str(now),
        }
        await self._finish(event.session_id, event.stream_id, now, json.dumps(letter))

    async def _finish(self, session_id: str, stream_id: str, now: int, letter: str) -> None:
        cutoff = f"{max(now - self.retention_ms, 0)}-0"
        # Trim below the retention cutoff, but never past this event: what follows it is
        # not delivered yet.
        minid = min(cutoff, after(stream_id), key=stream_order)
        await self._done(
            keys=[
                keys.operator_events(session_id),
                keys.operator_cursor(session_id),
                keys.operator_retry(session_id),
                keys.operator_dead(session_id),
            ],
            args=[stream_id, minid, letter],
        )

    async def failed(
        self, session_id: str, stream_id: str, attempts: int, next_at: int, error: str
    ) -> None:
        await self._failed(
            keys=[keys.operator_events(session_id), keys.operator_retry(session_id)],
            args=[stream_id, attempts, next_at, error],
        )

    async def redeliver(self, session_id: str) -> tuple[int, int]:
        """Move the dead letters back onto the stream (at most a batch per call): how many
        went back, and how many are left for the next call."""
        moved, left = await self._redeliver(
            keys=[
                keys.operator_dead(session_id),
                keys.operator_events(session_id),
                keys.DELIVERY_SESSIONS,
            ],
            args=[session_id, REDELIVER_BATCH],
        )
        if moved:
            self._notify(session_id)
        return int(moved), int(left)

    async def trim(self, session_id: str, now: int, pull_only: bool) -> None:
        """The sweep's trim, for streams no delivery touches (idle, or with no endpoint)."""
        cutoff = f"{max(now - self.retention_ms, 0)}-0"
        if not pull_only:
            cursor = await self.redis.get(keys.operator_cursor(session_id))
            cutoff = min(cutoff, after(str(cursor or "0-0")), key=stream_order)
        await self.redis.xtrim(keys.operator_events(session_id), minid=cutoff)

    async def drain(self, session_id: str, endpoint: str) -> None:
        """The session is being deleted: what its stream holds undelivered is still
        delivered, to ``endpoint`` (its own, '' for ``EVENTS_WEBHOOK_URL``), then the lane
        removes the stream. Set before the session's keys go, so a lane never sees a
        session that is neither there nor draining."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.set(keys.operator_deleted(session_id), endpoint)
        pipe.sadd(keys.DELIVERY_SESSIONS, session_id)  # the sweep finds it after a restart
        await pipe.execute()

    def wake(self, session_id: str) -> None:
        """Tell the lanes to look at the session (a drain just began)."""
        self._notify(session_id)

    async def forget(self, session_id: str) -> bool:
        """A deleted session's stream is drained: it, its cursor, retry state, dead letters
        and mark go (kept if a restore brought the session back meanwhile)."""
        removed = await self._forget(
            keys=[
                keys.SESSIONS,
                keys.DELIVERY_SESSIONS,
                keys.operator_events(session_id),
                keys.operator_cursor(session_id),
                keys.operator_retry(session_id),
                keys.operator_dead(session_id),
                keys.operator_deleted(session_id),
            ],
            args=[session_id],
        )
        return bool(removed)

    # reading ----------------------------------------------------------------------------

    async def sessions(self) -> list[str]:
        return sorted(str(s) for s in await self.redis.smembers(keys.DELIVERY_SESSIONS))

    async def head(self, session_id: str) -> Head:
        entries, retry, exists, endpoint, deleted = await self._head(
            keys=[
                keys.operator_events(session_id),
                keys.operator_cursor(session_id),
                keys.operator_retry(session_id),
                keys.SESSIONS,
                keys.session(session_id, "eventsWebhookUrl"),
                keys.operator_deleted(session_id),
            ],
            args=[session_id],
        )
        event = _event(session_id, entries[0]) if entries else None
        state = dict(zip(retry[::2], retry[1::2], strict=True))
        same = event is not None and state.get("streamId") == event.stream_id
        return Head(
            event=event,
            attempts=int(state.get("attempts", 0)) if same else 0,
            next_at=int(state.get("nextAt", 0)) if same else 0,
            session_exists=bool(exists),
            endpoint=str(endpoint),
            deleted=bool(deleted),
        )

    async def since(self, session_id: str, since: str, limit: int) -> list[StoredEvent]:
        """What is stored after ``since`` (exclusive), oldest first, at most ``limit``."""
        rows: Any = await self.redis.xrange(
            keys.operator_events(session_id), min=f"({since}", count=min(limit, MAX_PAGE)
        )
        return [_event(session_id, row) for row in rows]

    async def cursor(self, session_id: str) -> str:
        return str(await self.redis.get(keys.operator_cursor(session_id)) or "0-0")

    async def dead_letters(
        self, session_id: str, offset: int, limit: int
    ) -> tuple[list[dict[str, Any]], int]:
        pipe = self.redis.pipeline(transaction=False)
        pipe.lrange(keys.operator_dead(session_id), offset, offset + min(limit, MAX_PAGE) - 1)
        pipe.llen(keys.operator_dead(session_id))
        rows, total = await pipe.execute()
        return [_letter(session_id, json.loads(raw)) for raw in rows], int(total)


def _event(session_id: str, row: Any) -> StoredEvent:
    stream_id, fields = row
    if isinstance(fields, list):  # a script's reply: a flat list of names and values
        fields = dict(zip(fields[::2], fields[1::2], strict=True))
    return StoredEvent(
        stream_id=str(stream_id),
        id=str(fields["id"]),
        session_id=session_id,
        type=str(fields["type"]),
        data=json.loads(fields["data"]),
        at=int(fields["at"]),
    )


def _letter(session_id: str, letter: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": letter["id"],
        "sessionId": session_id,
        "type": letter["type"],
        "data": json.loads(letter["data"]),
        "timestamp": int(letter["at"]),
        "streamId": letter["streamId"],
        "attempts": letter["attempts"],
        "error": letter["error"],
        "deadAt": int(letter["deadAt"]),
    }
