"""Media ids in Redis: which stored file (by hash) a message's media is, and what it is.

A record (``wafleet:media:<id>``: sha256, kind, mime, size, filename, session, direction,
created) outlives nothing it names: it is given the message's retention once the message is
final (``expire``), and the sweep (``live_hashes``) keeps exactly the files some record still
names, so a file goes when the last message that carried it is past its retention.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, cast

from redis.asyncio import Redis

from core import keys

MEDIA_KEY = keys.MEDIA
MEDIA_PATTERN = "wafleet:media:md_*"
KINDS = ("image", "document", "audio", "voice", "video")


# One step, so two replicas adding the same id (an event delivered to both) agree on one.
_ADD = """
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('HGETALL', KEYS[1]) end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
if tonumber(ARGV[1]) > 0 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return {}
"""


def media_key(media_id: str) -> str:
    return MEDIA_KEY.format(id=media_id)


@dataclass(frozen=True)
class MediaRecord:
    id: str
    sha256: str
    kind: str
    mime: str
    size: int
    session: str
    direction: str  # "out" (sent by the operator) or "in" (received)
    created: int  # epoch ms
    filename: str | None = None

    def public(self) -> dict[str, Any]:
        """What a message's JSON shows of it (no session, no direction: the message says)."""
        shown: dict[str, Any] = {
            "kind": self.kind,
            "mime": self.mime,
            "size": self.size,
            "sha256": self.sha256,
        }
        if self.filename:
            shown["filename"] = self.filename
        return shown


def record_fields(record: MediaRecord) -> list[str]:
    """The record as a hash's field, value, ... (a script that writes it with a message)."""
    return [
        str(x) for k, v in asdict(record).items() if v is not None and k != "id" for x in (k, v)
    ]


def _record(media_id: str, fields: Mapping[str, str]) -> MediaRecord:
    return MediaRecord(
        id=media_id,
        sha256=fields["sha256"],
        kind=fields["kind"],
        mime=fields["mime"],
        size=int(fields["size"]),
        session=fields["session"],
        direction=fields["direction"],
        created=int(fields["created"]),
        filename=fields.get("filename") or None,
    )


class MediaRegistry:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def add(self, record: MediaRecord, ttl_s: int = 0) -> MediaRecord:
        """Name a stored file; idempotent: a record already under this id is kept as it is
        (an event delivered twice names its media once) and returned. ``ttl_s`` 0: no
        expiry yet (the message is not final)."""
        fields = record_fields(record)
        found = await self.redis.eval(_ADD, 1, media_key(record.id), ttl_s, *fields)
        if not found:
            return record
        return _record(
            record.id, {str(k): str(v) for k, v in zip(found[::2], found[1::2], strict=True)}
        )

    async def get(self, media_id: str) -> MediaRecord | None:
        fields = cast("dict[str, str]", await self.redis.hgetall(media_key(media_id)))
        if "kind" not in fields:
            return None
        return _record(media_id, fields)

    async def expire(self, media_id: str, ttl_s: int) -> None:
        """The message is final: its media lives as long as its record."""
        await self.redis.expire(media_key(media_id), ttl_s)

    async def live_hashes(self) -> set[str]:
        """The hashes some record still names (SCAN: a sweep, not a hot path; each batch of
        keys read in one pipelined round trip)."""
        live: set[str] = set()
        batch: list[str] = []
        async for key in self.redis.scan_iter(match=MEDIA_PATTERN, count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                live |= await self._hashes(batch)
                batch = []
        if batch:
            live |= await self._hashes(batch)
        return live

    async def _hashes(self, keys: list[str]) -> set[str]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hget(key, "sha256")
            found = await pipe.execute()
        return {str(sha) for sha in found if sha}
