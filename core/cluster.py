"""Who is in the cluster: each replica's heartbeat in Redis, and the view of the whole.

Every replica writes its ``SERVE_ID`` with the time into a sorted set every third of a
lease, and its own base URL into a hash. ``GET /api/v1/cluster`` reads them: a replica not
seen for three leases is gone (and pruned), whoever the leader is.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import redis.asyncio as aioredis

from core import keys, redis_client
from core.clock import Clock
from core.leadership import Leadership

log = logging.getLogger("wafleet.cluster")

GONE_AFTER_LEASES = 3


@dataclass(frozen=True)
class Replica:
    id: str
    url: str
    leader: bool
    seen_at: int  # epoch ms of its last heartbeat


class Cluster:
    def __init__(
        self, redis: aioredis.Redis, leadership: Leadership, url: str, clock: Clock
    ) -> None:
        self.redis = redis
        self.leadership = leadership
        self.serve_id = leadership.serve_id
        self.url = url
        self.clock = clock
        # Set by serve: True while this replica has not settled (see LeaderWork.settling).
        self.settling: Callable[[], bool] = lambda: False

    @property
    def gone_after_ms(self) -> int:
        return GONE_AFTER_LEASES * self.leadership.lease_ms

    async def beat(self) -> None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.zadd(keys.REPLICAS, {self.serve_id: self.clock.now_ms()})
        pipe.hset(keys.REPLICA_URLS, self.serve_id, self.url)
        await pipe.execute()

    async def run(self) -> None:
        """Heartbeat until cancelled; a failed beat is retried at the next one."""
        while True:
            try:
                await self.beat()
            except Exception as exc:
                log.warning("heartbeat failed: %s", type(exc).__name__)
            await asyncio.sleep(self.leadership.lease_ms / 3000)

    async def leave(self) -> None:
        """A clean stop: listed no more at once."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.zrem(keys.REPLICAS, self.serve_id)
        pipe.hdel(keys.REPLICA_URLS, self.serve_id)
        await pipe.execute()

    async def replicas(self) -> tuple[str | None, list[Replica]]:
        """The leader's id (None: none right now) and every replica seen lately."""
        cutoff = self.clock.now_ms() - self.gone_after_ms
        gone = await self.redis.zrangebyscore(keys.REPLICAS, "-inf", f"({cutoff}")
        if gone:
            pipe = self.redis.pipeline(transaction=True)
            pipe.zremrangebyscore(keys.REPLICAS, "-inf", f"({cutoff}")
            pipe.hdel(keys.REPLICA_URLS, *gone)
            await pipe.execute()
        seen = cast(
            "list[tuple[object, float]]",
            await self.redis.zrangebyscore(keys.REPLICAS, cutoff, "+inf", withscores=True),
        )
        urls = {
            _text(k): _text(v) for k, v in (await self.redis.hgetall(keys.REPLICA_URLS)).items()
        }
        leader = await self.leadership.current()
        listed = [
            Replica(_text(rid), urls.get(_text(rid), ""), _text(rid) == leader, int(at))
            for rid, at in seen
        ]
        return leader, sorted(listed, key=lambda r: r.id)

    async def redis_view(self) -> dict[str, Any]:
        """The Redis primary this replica writes to (through Sentinel, the one the Sentinels
        named last), and how many replicas it has."""
        primary, replicas = await redis_client.primary_view(self.redis)
        return {"primary": primary, "replicas": replicas}

    async def view(self) -> dict[str, Any]:
        """``GET /api/v1/cluster``'s answer."""
        leader, listed = await self.replicas()
        return {
            "leader": leader,
            "replicas": [
                {"id": r.id, "url": r.url, "leader": r.leader, "seenAt": r.seen_at} for r in listed
            ],
            "redis": await self.redis_view(),
        }


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
