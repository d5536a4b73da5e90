"""What every part of the store stands on: the client, and its replies narrowed to types."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

RECORDS_PER_MGET = 500  # sessions per MGET (x 12 keys) when records are read in bulk


class StorePart:
    """One kind of record the store keeps (sessions, their events, proxies, backups).

    ``Store`` is all of them on one client; each part's ``__init__`` registers its own
    scripts and hands the client on, so the parts need not know of each other.
    """

    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis


def as_str(value: Any) -> str | None:
    """redis-py types every reply as ``bytes | str``; this client decodes, so narrow it."""
    return None if value is None else str(value)


def as_strs(values: Any) -> list[str]:
    return [str(v) for v in values]


def as_int(value: Any) -> int | None:
    return int(value) if value not in (None, b"", "") else None
