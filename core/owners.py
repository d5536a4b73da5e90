"""Which client key owns a session: a hash beside the sessions, and each key's own ids.

Kept outside the fleet's ``session:*`` keys on purpose: a restart, failover, stop/start or a
restore rewrites those, and none of them changes who a session belongs to. A provision writes
(or clears) the new id's owner in the same script as the session's record
(``lua/provision.lua``), so no reader sees a session without its owner, and an id used again
after a restore does not inherit an old owner.
"""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from core import keys
from core.models import SessionRecord
from core.store import Store
from core.store.sessions import id_order


class Owners:
    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis

    async def set(self, session_id: str, key_id: str | None) -> None:
        old = await self.of(session_id)
        pipe = self.redis.pipeline(transaction=True)
        if old is not None:
            pipe.zrem(keys.owner_sessions(old), session_id)
        if key_id is None:
            pipe.hdel(keys.SESSION_OWNERS, session_id)
        else:
            pipe.hset(keys.SESSION_OWNERS, session_id, key_id)
            pipe.zadd(keys.owner_sessions(key_id), {session_id: id_order(session_id)[0]})
        await pipe.execute()

    async def of(self, session_id: str) -> str | None:
        found = await self.redis.hget(keys.SESSION_OWNERS, session_id)
        return None if found is None else str(found)

    async def of_many(self, session_ids: list[str]) -> dict[str, str]:
        """The owners of those of ``session_ids`` that have one."""
        if not session_ids:
            return {}
        found = await self.redis.hmget(keys.SESSION_OWNERS, session_ids)
        return {i: str(o) for i, o in zip(session_ids, found, strict=True) if o is not None}

    async def owned(self, key_id: str) -> list[str]:
        """The key's session ids in id order (a deleted session's may linger: callers read
        the records, which leaves them out)."""
        found = await self.redis.zrange(keys.owner_sessions(key_id), 0, -1)
        return sorted((str(i) for i in found), key=id_order)

    async def records(self, store: Store, key_id: str) -> list[SessionRecord]:
        found = await asyncio.gather(*(store.get_session(i) for i in await self.owned(key_id)))
        return [r for r in found if r is not None]
