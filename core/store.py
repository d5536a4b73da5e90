"""The Redis store: SPEC.md's keys, and every invariant kept by a Lua script.

Nothing here decides policy (that is the session service); this module only guarantees
that what it writes is consistent even when many coroutines or processes write at once.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

from core import keys, redis_client
from core.models import ProxyRecord, ProxyStatus, SessionRecord

EVENTS_KEPT = 200  # per session: enough to explain the last day without growing forever


class NoSuchSession(Exception):  # noqa: N818
    """The session was deleted while an event about it was on its way."""


class ReservationRefused(Exception):  # noqa: N818 - a domain outcome, mapped by the service
    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


def load_script(name: str) -> str:
    """The script behind the key formats of ``core.keys`` and the shared helpers.

    The formats travel in the script's text rather than in ``ARGV`` so every script, however
    its arguments are laid out, names keys the way ``keys.py`` does and never spells one.
    """
    lua = resources.files("core").joinpath("lua")
    return "\n".join(
        (lua_constants(), lua.joinpath("common.lua").read_text(), lua.joinpath(name).read_text())
    )


def lua_constants() -> str:
    formats = ",\n".join(f"  {name} = {_lua_string(f)}" for name, f in keys.LUA_FORMATS.items())
    return f"local FORMAT = {{\n{formats}\n}}\nlocal ACTIVE = {_lua_string(ProxyStatus.ACTIVE)}\n"


def _lua_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _str(value: Any) -> str | None:
    """redis-py types every reply as ``bytes | str``; this client decodes, so narrow it."""
    return None if value is None else str(value)


def _strs(values: Any) -> list[str]:
    return [str(v) for v in values]


def _int(value: Any) -> int | None:
    return int(value) if value not in (None, b"", "") else None


class Store:
    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self._provision = redis.register_script(load_script("provision.lua"))
        self._failover = redis.register_script(load_script("failover.lua"))
        self._release = redis.register_script(load_script("release.lua"))
        self._remove_proxy = redis.register_script(load_script("remove_proxy.lua"))
        self._add_proxy = redis.register_script(load_script("add_proxy.lua"))
        self._recount = redis.register_script(load_script("recount.lua"))
        self._claim = redis.register_script(load_script("claim.lua"))
        self._connected = redis.register_script(load_script("connected.lua"))
        self._proxy_status = redis.register_script(load_script("proxy_status.lua"))
        self._session_order = redis.register_script(load_script("session_order.lua"))
        self._status_counts = redis.register_script(load_script("status_counts.lua"))
        self._ping_overdue = redis.register_script(load_script("ping_overdue.lua"))

    @classmethod
    def connect(cls, url: str) -> Store:
        """A store on one Redis at ``url`` that survives its restart (core/redis_client.py);
        ``serve`` builds its client with ``redis_client.connect`` (Sentinel too)."""
        return cls(redis_client.from_url(url))

    async def close(self) -> None:
        await self.redis.aclose()

    # sessions ---------------------------------------------------------------------------

    async def reserve(
        self, phone: str, requested: str, cap: int, phone_cap: int, now: int
    ) -> tuple[str, str]:
        """Create a session on a proxy slot and return ``(id, proxy)``.

        ``ReservationRefused.why`` names the rule that refused it; nothing is written then.
        """
        result = await self._provision(
            keys=[
                keys.PROXIES,
                keys.SESSIONS,
                keys.SESSION_SEQ,
                keys.phone_sessions(phone),
                keys.phone_proxy(phone),
                keys.proxy_status(requested),
                keys.proxy_sessions(requested),
                keys.provision_receipt(uuid.uuid4().hex),
            ],
            args=[phone, requested, cap, phone_cap, now],
        )
        if result[0] != "ok":
            raise ReservationRefused(result[1])
        return str(result[1]), str(result[2])

    async def get_session(self, session_id: str) -> SessionRecord | None:
        fields = keys.SESSION_FIELDS + keys.EXTRA_SESSION_FIELDS
        pipe = self.redis.pipeline(transaction=False)
        pipe.sismember(keys.SESSIONS, session_id)
        pipe.mget([keys.session(session_id, f) for f in fields])
        member, values = await pipe.execute()
        if not member:
            return None
        return _record(session_id, dict(zip(fields, values, strict=True)))

    async def session_ids(self) -> list[str]:
        """Every session id in ``id_order``, read from the order index (sorted already)."""
        ids, _ = await self._read_ordered(lambda pipe: pipe.zrange(keys.SESSION_ORDER, 0, -1))
        return _strs(ids[0])

    async def _read_ordered(self, reads: Callable[[Any], object]) -> tuple[list[Any], int]:
        """The replies of ``reads`` (reads of the order index, queued on a transaction) and
        how many sessions there are, checked against the sessions set: an index that
        disagrees (data from before it existed, a restore of such data) is rebuilt and the
        reads run again.

        The check is two O(1) counts in the same transaction as the reads, so it never sees
        a half-made change: every script that adds or removes a session keeps both at once.
        """
        for attempt in range(2):
            pipe = self.redis.pipeline(transaction=True)
            reads(pipe)
            pipe.zcard(keys.SESSION_ORDER)
            pipe.scard(keys.SESSIONS)
            *replies, indexed, total = await pipe.execute()
            if indexed == total:
                break
            if attempt == 0:
                await self.index_sessions()
        return replies, int(indexed)

    async def index_sessions(self) -> bool:
        """Build the order index if it disagrees with the sessions set (see
        ``lua/session_order.lua``): True when it was rebuilt, False when it was right."""
        return bool(await self._session_order(keys=[keys.SESSIONS, keys.SESSION_ORDER]))

    async def list_sessions(self) -> list[SessionRecord]:
        return await self._records(await self.session_ids())

    async def session_page(
        self, after: str | None, limit: int
    ) -> tuple[list[SessionRecord], str | None, int]:
        """Up to ``limit`` sessions in id order after the id ``after``: ``(records, the id to
        pass as ``after`` for the next page or None, how many sessions there are)``.

        Only the page's ids and records are read: a range of the order index (a sorted set
        scored by the id's number), so a page costs the same at 10,000 sessions as at 10.
        The cursor is an id, not an offset, so a session created or deleted between two
        pages neither repeats one nor skips one; a cursor whose session is gone still
        finds its place by its number.
        """

        def reads(pipe: Any) -> None:
            if after is None:
                pipe.zrange(keys.SESSION_ORDER, 0, limit)  # one more than a page: is there more?
                return
            score = id_order(after)[0]
            # Ids of the cursor's own number (more than one only for ids without the
            # ``worker_<n>`` shape) follow it in name order, as in ``id_order``.
            pipe.zrangebyscore(keys.SESSION_ORDER, score, score)
            pipe.zrangebyscore(keys.SESSION_ORDER, f"({score}", "+inf", start=0, num=limit + 1)

        replies, total = await self._read_ordered(reads)
        if after is None:
            ids = _strs(replies[0])
        else:
            ids = [i for i in _strs(replies[0]) if i > after] + _strs(replies[1])
        page = ids[:limit]
        more = len(ids) > limit
        return await self._records(page), page[-1] if more and page else None, total

    async def _records(self, ids: list[str]) -> list[SessionRecord]:
        """The records of ``ids`` in one round trip; ids deleted meanwhile are left out.

        One ``MGET`` per chunk of sessions, not one per session: at 10,000 sessions, 10,000
        pipelined commands cost a second of parsing in redis-py, 20 ``MGET`` a tenth of it.
        A chunk keeps each command short, so Redis serves others in between.
        """
        fields = keys.SESSION_FIELDS + keys.EXTRA_SESSION_FIELDS
        width = len(fields)
        names = [keys.session("{}", f) for f in fields]  # formats: key building is hot here
        pipe = self.redis.pipeline(transaction=False)
        for at in range(0, len(ids), RECORDS_PER_MGET):
            chunk = ids[at : at + RECORDS_PER_MGET]
            pipe.mget([name.format(sid) for sid in chunk for name in names])
        values = [v for part in await pipe.execute() for v in part]
        records = []
        for i, sid in enumerate(ids):
            row = values[i * width : (i + 1) * width]
            if row[0] is not None:
                records.append(_record(sid, dict(zip(fields, row, strict=True))))
        return records

    async def liveness(self, cutoff: int) -> list[Liveness]:
        """What the watchdog pass needs of each session that has not pinged since ``cutoff``
        (ms; with no ping, that was created before it), and of no other: any other session
        pinged within the timeout and cannot be stale. The cut is made in Redis
        (``lua/ping_overdue.lua``), so at 10,000 healthy sessions the pass reads no values
        at all instead of 40,000 (redis-py's parsing is the cost there); the caller applies
        the whole rule (parked, stopped) to the few it gets."""
        found = _strs(await self._ping_overdue(keys=[keys.SESSIONS], args=[cutoff]))
        rows = sorted((found[at : at + 5] for at in range(0, len(found), 5)), key=_first_id)
        return [
            Liveness(sid, status, reason or None, _int(last_ping), _int(created) or 0)
            for sid, status, reason, last_ping, created in rows
        ]

    async def status_counts(self) -> dict[str, int]:
        """How many sessions have each status, counted inside Redis (``lua/status_counts.lua``):
        exact, and a few values over the wire instead of every record. A session without a
        status is not counted, as ``list_sessions`` leaves it out."""
        flat = _strs(await self._status_counts(keys=[keys.SESSIONS]))
        return {flat[at]: int(flat[at + 1]) for at in range(0, len(flat), 2)}

    async def set_fields(self, session_id: str, **values: str | int | None) -> None:
        """Set (or, for ``None``, delete) session fields in one transaction."""
        pipe = self.redis.pipeline(transaction=True)
        for name, value in values.items():
            key = keys.session(session_id, name)
            if value is None:
                pipe.delete(key)
            else:
                pipe.set(key, value)
        await pipe.execute()

    async def touch_ping(self, session_id: str, now: int) -> bool:
        """The webhook's hot path: one round trip, and only for a session that exists."""
        return bool(await self.redis.set(keys.session(session_id, "lastPing"), now, xx=True))

    async def set_qr(self, session_id: str, qr: str, expires: int, ttl_ms: int) -> None:
        pipe = self.redis.pipeline(transaction=True)
        # SPEC.md calls the QR temporary: it disappears when it can no longer be scanned.
        pipe.set(keys.session(session_id, "qr"), qr, px=max(ttl_ms, 1))
        pipe.set(keys.session(session_id, "qrExpires"), expires, px=max(ttl_ms, 1))
        pipe.set(keys.session(session_id, "status"), "qr_ready")
        pipe.delete(keys.session(session_id, "reason"))
        await pipe.execute()

    async def mark_connected(self, session_id: str, phone: str, now: int) -> str | None:
        """Record the linked phone and write the sticky keys (Flow 1, step 8).

        Returns the phone the session was provisioned for when the operator linked a
        different one, so the caller can warn. ``NoSuchSession`` when it was deleted.
        """
        fields = ("phone", "status", "connectedAt", "proxy", "qr", "qrExpires", "reason")
        result = await self._connected(
            keys=[
                keys.SESSIONS,
                *(keys.session(session_id, f) for f in (*fields, "pairingCode")),
                keys.phone_sessions(phone),
                keys.phone_proxy(phone),
                keys.phone_session(phone),
            ],
            args=[session_id, phone, now],
        )
        if result is None:
            raise NoSuchSession(session_id)
        return str(result) or None

    async def claim(self, session_id: str, cap: int) -> str | None:
        """A real slot for a parked session (its own proxy, or the least loaded)."""
        proxy = await self._claim(
            keys=[keys.SESSIONS, keys.session(session_id, "proxy")], args=[session_id, cap]
        )
        return str(proxy) if proxy else None

    async def failover(self, session_id: str, cap: int) -> str | None:
        """Move the session off the proxy it is on now; a resend of the script moves nothing."""
        own = keys.session(session_id, "proxy")
        current = _str(await self.redis.get(own)) or ""
        new = await self._failover(keys=[keys.SESSIONS, own], args=[session_id, cap, current])
        return str(new) if new else None

    async def release(self, session_id: str) -> bool:
        fields = keys.SESSION_FIELDS + keys.EXTRA_SESSION_FIELDS
        doomed = [keys.session(session_id, f) for f in fields] + [keys.session_events(session_id)]
        named = [keys.session(session_id, "proxy"), keys.session(session_id, "phone")]
        return bool(await self._release(keys=[keys.SESSIONS, *named, *doomed], args=[session_id]))

    async def sessions_on(self, url: str) -> list[str]:
        return sorted(_strs(await self.redis.smembers(keys.proxy_members(url))), key=id_order)

    # events -----------------------------------------------------------------------------

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

    # proxies ----------------------------------------------------------------------------

    async def add_proxy(self, url: str) -> bool:
        """Add to the pool; an existing proxy keeps its status and count."""
        named = [keys.proxy_status(url), keys.proxy_sessions(url)]
        return bool(await self._add_proxy(keys=[keys.PROXIES, *named], args=[url]))

    async def remove_proxy(self, url: str) -> int:
        named = [keys.proxy_status(url), keys.proxy_sessions(url), keys.proxy_members(url)]
        return int(await self._remove_proxy(keys=[keys.PROXIES, *named], args=[url]))

    async def set_proxy_status(self, url: str, status: ProxyStatus) -> bool:
        """Returns True when the status changed (so callers alert once, not per report)."""
        return bool(
            await self._proxy_status(
                keys=[keys.PROXIES, keys.proxy_status(url)], args=[url, str(status)]
            )
        )

    async def proxies(self) -> list[ProxyRecord]:
        """Every pooled proxy, by URL. Read with one ``MGET`` per chunk of proxies rather than
        one command each: at 2,500 proxies (10,000 sessions) the commands cost more in
        redis-py than the values, and stats and ``/metrics`` read this on every call."""
        urls = sorted(_strs(await self.redis.smembers(keys.PROXIES)))
        pipe = self.redis.pipeline(transaction=False)
        for at in range(0, len(urls), RECORDS_PER_MGET):
            chunk = urls[at : at + RECORDS_PER_MGET]
            pipe.mget(
                [k for url in chunk for k in (keys.proxy_status(url), keys.proxy_sessions(url))]
            )
        values = [v for part in await pipe.execute() for v in part]
        return [
            ProxyRecord(
                url=url,
                status=proxy_status_of(values[2 * i]),
                sessions=int(values[2 * i + 1] or 0),
            )
            for i, url in enumerate(urls)
        ]

    async def proxy_status(self, url: str) -> ProxyStatus | None:
        status = _str(await self.redis.get(keys.proxy_status(url)))
        return None if status is None else proxy_status_of(status)

    async def recount(self) -> int:
        return int(await self._recount(keys=[keys.PROXIES, keys.SESSIONS]))

    # worker events: each applied once ------------------------------------------------------

    async def claim_event(self, session_id: str, event_id: str, now: int, ttl_ms: int) -> bool:
        """True for the first delivery of an event id, False for a repeat: SET NX, so of two
        deliveries racing each other exactly one gets through."""
        key = keys.event_applied(session_id, event_id)
        return bool(await self.redis.set(key, now, nx=True, px=ttl_ms))

    async def unclaim_event(self, session_id: str, event_id: str) -> None:
        """The event could not be applied after all: its retry must get through."""
        await self.redis.delete(keys.event_applied(session_id, event_id))

    # backups: all a backup or restore reads from or writes to Redis ----------------------

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
            names.update(k.encode() for k in keys.FLEET_INDEXES)
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
            for index in keys.FLEET_INDEXES:
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


def proxy_status_of(stored: str | None) -> ProxyStatus:
    """A missing status reads as active (``add_proxy`` writes it); one this version does not
    know reads as bad, since the scripts only ever place sessions on ``active`` proxies."""
    if stored is None:
        return ProxyStatus.ACTIVE
    try:
        return ProxyStatus(stored)
    except ValueError:
        return ProxyStatus.BAD


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
# What a failed restore puts back: the fleet's keys, and the sessions' own limits (a restore
# writes them from the archive).
_SNAPSHOT_PATTERNS = (*keys.FLEET_PATTERNS, keys.send_limits("*"))


@dataclass(frozen=True)
class FleetSnapshot:
    """Every fleet key as Redis serialises it (``DUMP``) with its remaining TTL in ms (0:
    none): what a failed restore puts back, byte for byte."""

    keys: tuple[tuple[bytes, bytes, int], ...]


@dataclass(frozen=True)
class Liveness:
    """A session as the watchdog sees it: is it parked, and when did it last ping."""

    id: str
    status: str
    reason: str | None
    last_ping: int | None
    created: int


RECORDS_PER_MGET = 500  # sessions per MGET (x 12 keys) when records are read in bulk


def id_order(session_id: str) -> tuple[int, str]:
    """``worker_2`` before ``worker_10``."""
    _, _, n = session_id.rpartition("_")
    return (int(n), session_id) if n.isdigit() else (1 << 62, session_id)


def _first_id(row: list[str]) -> tuple[int, str]:
    """Rows of the watchdog's script in id order, as the pass has always gone."""
    return id_order(row[0])


def _record(session_id: str, f: dict[str, Any]) -> SessionRecord:
    return SessionRecord(
        id=session_id,
        status=f["status"] or "pending",
        phone=f["phone"],
        proxy=f["proxy"] or "",
        created=_int(f["created"]) or 0,
        last_ping=_int(f["lastPing"]),
        qr=f["qr"],
        lock=f["lock"],
        reason=f["reason"],
        qr_expires=_int(f["qrExpires"]),
        pairing_code=f["pairingCode"],
        connected_at=_int(f["connectedAt"]),
        boot_id=f["bootId"],
        events_webhook_url=f["eventsWebhookUrl"],
    )
