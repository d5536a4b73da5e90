"""Sessions in Redis: their records, the order index, and every move of one between slots.

Nothing here decides policy (that is the session service); this part only guarantees that
what it writes is consistent even when many coroutines or processes write at once.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from core import keys
from core.models import SessionRecord
from core.store.base import RECORDS_PER_MGET, StorePart, as_int, as_str, as_strs
from core.store.scripts import load_script


class NoSuchSession(Exception):  # noqa: N818
    """The session was deleted while an event about it was on its way."""


class ReservationRefused(Exception):  # noqa: N818 - a domain outcome, mapped by the service
    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


class SessionRecords(StorePart):
    def __init__(self, redis: aioredis.Redis) -> None:
        super().__init__(redis)
        self._provision = redis.register_script(load_script("provision.lua"))
        self._failover = redis.register_script(load_script("failover.lua"))
        self._release = redis.register_script(load_script("release.lua"))
        self._claim = redis.register_script(load_script("claim.lua"))
        self._connected = redis.register_script(load_script("connected.lua"))
        self._session_order = redis.register_script(load_script("session_order.lua"))
        self._status_counts = redis.register_script(load_script("status_counts.lua"))
        self._ping_overdue = redis.register_script(load_script("ping_overdue.lua"))

    async def reserve(
        self,
        phone: str,
        requested: str,
        cap: int,
        phone_cap: int,
        now: int,
        owner: str | None = None,
    ) -> tuple[str, str]:
        """Create a session on a proxy slot and return ``(id, proxy)``; ``owner``: the client
        key it belongs to, written in the same script as the record (None: an admin's).

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
                keys.SESSION_OWNERS,
                keys.owner_sessions(owner or ""),
            ],
            args=[phone, requested, cap, phone_cap, now, owner or ""],
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
        return as_strs(ids[0])

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
            ids = as_strs(replies[0])
        else:
            ids = [i for i in as_strs(replies[0]) if i > after] + as_strs(replies[1])
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
        found = as_strs(await self._ping_overdue(keys=[keys.SESSIONS], args=[cutoff]))
        rows = sorted((found[at : at + 5] for at in range(0, len(found), 5)), key=_first_id)
        return [
            Liveness(sid, status, reason or None, as_int(last_ping), as_int(created) or 0)
            for sid, status, reason, last_ping, created in rows
        ]

    async def status_counts(self) -> dict[str, int]:
        """How many sessions have each status, counted inside Redis (``lua/status_counts.lua``):
        exact, and a few values over the wire instead of every record. A session without a
        status is not counted, as ``list_sessions`` leaves it out."""
        flat = as_strs(await self._status_counts(keys=[keys.SESSIONS]))
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
        # A QR is temporary: it disappears when it can no longer be scanned.
        pipe.set(keys.session(session_id, "qr"), qr, px=max(ttl_ms, 1))
        pipe.set(keys.session(session_id, "qrExpires"), expires, px=max(ttl_ms, 1))
        pipe.set(keys.session(session_id, "status"), "qr_ready")
        pipe.delete(keys.session(session_id, "reason"))
        await pipe.execute()

    async def mark_connected(self, session_id: str, phone: str, now: int) -> str | None:
        """Record the linked phone and write the sticky keys (the device linked).

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
        current = as_str(await self.redis.get(own)) or ""
        new = await self._failover(keys=[keys.SESSIONS, own], args=[session_id, cap, current])
        return str(new) if new else None

    async def release(self, session_id: str) -> bool:
        fields = keys.SESSION_FIELDS + keys.EXTRA_SESSION_FIELDS
        doomed = [keys.session(session_id, f) for f in fields] + [keys.session_events(session_id)]
        named = [keys.session(session_id, "proxy"), keys.session(session_id, "phone")]
        return bool(await self._release(keys=[keys.SESSIONS, *named, *doomed], args=[session_id]))

    async def sessions_on(self, url: str) -> list[str]:
        return sorted(as_strs(await self.redis.smembers(keys.proxy_members(url))), key=id_order)


@dataclass(frozen=True)
class Liveness:
    """A session as the watchdog sees it: is it parked, and when did it last ping."""

    id: str
    status: str
    reason: str | None
    last_ping: int | None
    created: int


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
        created=as_int(f["created"]) or 0,
        last_ping=as_int(f["lastPing"]),
        qr=f["qr"],
        lock=f["lock"],
        reason=f["reason"],
        qr_expires=as_int(f["qrExpires"]),
        pairing_code=f["pairingCode"],
        connected_at=as_int(f["connectedAt"]),
        boot_id=f["bootId"],
        events_webhook_url=f["eventsWebhookUrl"],
    )
