"""The bot's alert outbox: a Redis stream, so an alert raised just before ``serve`` dies is
sent after it comes back instead of being lost with the process's memory.

Delivery is at least once: an entry is read through a consumer group, and only after its
message reached Telegram is the alert id marked sent and the entry acknowledged and deleted.
A crash between the two sends it again after the restart, unless it was already marked: so
a repeat is dropped by its alert id (an alert raised twice is dropped the same way).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from core import keys
from core.notifier import Alert

log = logging.getLogger("wafleet.bot.outbox")

GROUP = "telegram"
CONSUMER = "serve"  # one consumer: after a restart it owns, and re-reads, what was unsent
SENT_TTL_S = 24 * 3600  # how long a sent alert id is remembered, to drop its repeats
MAX_ENTRIES = 10_000  # an outbox never grows without bound while Telegram is away


@dataclass(frozen=True)
class Entry:
    stream_id: str
    alert: Alert | None  # None: an entry that cannot be read (dropped, and logged)


class AlertOutbox:
    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self.key = keys.bot_outbox()
        # First read this consumer's unacknowledged entries (left by a crash), then new ones;
        # the cursor walks the unacknowledged ones so each is read once per recovery.
        self._recovering = True
        self._cursor = "0"

    async def ready(self) -> None:
        """Create the stream and its group once; an existing group keeps its place."""
        try:
            await self.redis.xgroup_create(self.key, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def put(self, alert: Alert) -> None:
        await self.redis.xadd(
            self.key, {"alert": alert.to_json()}, maxlen=MAX_ENTRIES, approximate=True
        )

    def recover(self) -> None:
        """Read the unacknowledged entries again (after a failed send)."""
        self._recovering = True
        self._cursor = "0"

    async def take(self, block_ms: int, count: int = 100) -> list[Entry]:
        """Entries not yet sent: first those this consumer read before and never finished."""
        if self._recovering:
            got = await self.redis.xreadgroup(
                GROUP, CONSUMER, {self.key: self._cursor}, count=count
            )
            entries = _entries(got)
            if entries:
                self._cursor = entries[-1].stream_id
                return entries
            self._recovering = False
        got = await self.redis.xreadgroup(
            GROUP, CONSUMER, {self.key: ">"}, count=count, block=max(1, block_ms)
        )
        return _entries(got)

    async def unsent(self, entries: Iterable[Entry]) -> list[Entry]:
        """Drop entries whose alert already reached the chat, or repeats within ``entries``."""
        fresh: list[Entry] = []
        seen: set[str] = set()
        for entry in entries:
            if entry.alert is None or entry.alert.id in seen:
                continue
            seen.add(entry.alert.id)
            if await self.redis.exists(keys.bot_alert_sent(entry.alert.id)):
                log.info("alert %s was already sent; dropping the repeat", entry.alert.id)
                continue
            fresh.append(entry)
        return fresh

    async def done(self, entries: Iterable[Entry]) -> None:
        """Mark the alerts sent, then acknowledge and delete their entries, in one step."""
        entries = list(entries)
        if not entries:
            return
        ids = [e.stream_id for e in entries]
        pipe = self.redis.pipeline(transaction=True)
        for entry in entries:
            if entry.alert is not None:
                pipe.set(keys.bot_alert_sent(entry.alert.id), 1, ex=SENT_TTL_S)
        pipe.xack(self.key, GROUP, *ids)
        pipe.xdel(self.key, *ids)
        await pipe.execute()

    async def waiting(self) -> int:
        """Entries not yet sent (read or not)."""
        return int(await self.redis.xlen(self.key))


def _entries(got: object) -> list[Entry]:
    entries: list[Entry] = []
    for _stream, items in got or []:  # type: ignore[attr-defined]
        for stream_id, fields in items:
            raw = (fields or {}).get("alert")
            try:
                alert = Alert.from_json(raw) if raw else None
            except (ValueError, KeyError, TypeError):
                log.error("unreadable alert %s in the outbox; dropped", stream_id)
                alert = None
            entries.append(Entry(str(stream_id), alert))
    return entries
