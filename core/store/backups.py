"""All a backup or restore reads from or writes to Redis: sticky maps, sessions' own limits,
a restored session on its slot, and the whole fleet's keys (owners included) as a snapshot
to put back."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

from core import keys
from core.store.base import StorePart
from core.store.scripts import load_script


class BackupRecords(StorePart):
    async def sticky_maps(self) -> tuple[dict[str, str], dict[str, str]]:
        """Every phone's sticky proxy and sticky session, for a backup's manifest."""
        sticky: dict[str, str] = {}
        owners: dict[str, str] = {}
        async for key in self.redis.scan_iter(match=keys.PHONE_PROXY_PATTERN, count=500):
            phone = keys.phone_of_proxy_key(str(key))
            pair = [keys.phone_proxy(phone), keys.phone_session(phone)]
            proxy, owner = await self.redis.mget(pair)
            if proxy:
                sticky[phone] = str(proxy)
            if owner:
                owners[phone] = str(owner)
        return dict(sorted(sticky.items())), dict(sorted(owners.items()))

    async def set_sticky_proxies(self, sticky: dict[str, str]) -> None:
        """Restore: each phone's sticky proxy (validated by the caller), in one transaction."""
        pipe = self.redis.pipeline(transaction=True)
        for phone, url in sticky.items():
            pipe.set(keys.phone_proxy(phone), url)
        await pipe.execute()

    async def set_sticky_sessions(self, owners: dict[str, str]) -> None:
        pipe = self.redis.pipeline(transaction=True)
        for phone, session_id in owners.items():
            pipe.set(keys.phone_session(phone), session_id)
        await pipe.execute()

    async def restore_session(
        self,
        session_id: str,
        phone: str | None,
        proxy: str,
        cap: int,
        created: int,
        now: int,
        stopped: bool = False,
        events_webhook_url: str | None = None,
    ) -> tuple[str, str]:
        """Write one restored session on a slot: ``(outcome, proxy)``, outcome one of
        ``ok``, ``moved``, ``parked``, ``err`` (see ``lua/restore_session.lua``). ``stopped``:
        the operator had stopped it, so it comes back ``stopped`` (on its slot, no worker)."""
        script_keys = [
            keys.SESSIONS,
            keys.SESSION_SEQ,
            *(keys.session(session_id, f) for f in _RESTORED_FIELDS),
            *(
                (keys.phone_sessions(phone), keys.phone_session(phone), keys.phone_proxy(phone))
                if phone
                else ()
            ),
        ]
        outcome, url = await self._restore_script(
            keys=script_keys,
            args=[
                session_id,
                phone or "",
                proxy,
                cap,
                created,
                now,
                "1" if stopped else "0",
                events_webhook_url or "",
            ],
        )
        return str(outcome), str(url)

    async def own_limits(self, session_ids: list[str]) -> dict[str, dict[str, int]]:
        """Each session's own careful-sending limits (none: absent), for a backup."""
        pipe = self.redis.pipeline(transaction=False)
        for sid in session_ids:
            pipe.hgetall(keys.send_limits(sid))
        found = await pipe.execute()
        return {
            sid: {str(k): int(v) for k, v in own.items()}
            for sid, own in zip(session_ids, found, strict=True)
            if own
        }

    async def set_own_limits(self, session_id: str, limits: dict[str, int]) -> None:
        """Restore: exactly these limits for the session ({}: none of its own)."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(keys.send_limits(session_id))
        if limits:
            pipe.hset(keys.send_limits(session_id), mapping=limits)  # type: ignore[arg-type]
        await pipe.execute()

    @functools.cached_property
    def _restore_script(self) -> AsyncScript:
        """Registered on a restore's first use: most runs of serve never restore."""
        return self.redis.register_script(load_script("restore_session.lua"))

    async def fleet_snapshot(self) -> FleetSnapshot:
        """Every fleet key, serialised: what a failed restore puts back."""
        raw = self._bytes_client()
        try:
            names: set[bytes] = set()
            for pattern in _SNAPSHOT_PATTERNS:
                names.update([k async for k in raw.scan_iter(match=pattern, count=1000)])
            names.update(k.encode() for k in _SNAPSHOT_KEYS)
            ordered = sorted(names)
            pipe = raw.pipeline(transaction=True)
            for name in ordered:
                pipe.dump(name)
                pipe.pttl(name)
            replies = await pipe.execute()
        finally:
            await raw.aclose()
        found = []
        for i, name in enumerate(ordered):
            dumped, ttl = replies[2 * i], replies[2 * i + 1]
            if dumped is not None:
                found.append((name, bytes(dumped), max(int(ttl), 0)))
        return FleetSnapshot(tuple(found))

    async def restore_fleet(self, snapshot: FleetSnapshot) -> None:
        """Replace every fleet key with ``snapshot``'s, in one transaction."""
        raw = self._bytes_client()
        try:
            current: set[bytes] = set()
            for pattern in _SNAPSHOT_PATTERNS:
                current.update([k async for k in raw.scan_iter(match=pattern, count=1000)])
            pipe = raw.pipeline(transaction=True)
            for name in sorted(current):
                pipe.delete(name)
            for index in _SNAPSHOT_KEYS:
                pipe.delete(index)
            for name, dumped, ttl in snapshot.keys:
                pipe.restore(name, ttl, dumped, replace=True)
            await pipe.execute()
        finally:
            await raw.aclose()

    def _bytes_client(self) -> aioredis.Redis:
        """A client on the same server that does not decode: ``DUMP`` payloads are binary."""
        pool = self.redis.connection_pool
        kwargs = {**pool.connection_kwargs, "decode_responses": False}
        # from_pool: the client owns the pool, so ``aclose`` closes its connections too.
        return aioredis.Redis.from_pool(
            aioredis.ConnectionPool(connection_class=pool.connection_class, **kwargs)
        )


# Restore: the session fields ``lua/restore_session.lua`` writes.
_RESTORED_FIELDS = (
    "created",
    "lastPing",
    "proxy",
    "status",
    "reason",
    "phone",
    "eventsWebhookUrl",
)
# What a failed restore puts back: the fleet's keys, and what a restore writes from the
# archive beside them: the sessions' own limits and owners (the issued keys it adds are taken
# out by name, and the audit trail is merged only once nothing else can fail).
_SNAPSHOT_PATTERNS = (*keys.FLEET_PATTERNS, keys.send_limits("*"), keys.owner_sessions("*"))
_SNAPSHOT_KEYS = (*keys.FLEET_INDEXES, keys.SESSION_OWNERS)


@dataclass(frozen=True)
class FleetSnapshot:
    """Every fleet key as Redis serialises it (``DUMP``) with its remaining TTL in ms (0:
    none): what a failed restore puts back, byte for byte."""

    keys: tuple[tuple[bytes, bytes, int], ...]
