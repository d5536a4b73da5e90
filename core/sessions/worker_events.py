"""Taking a worker's event in: checked before any write, applied once, in order.

How an event is applied (deduplicated, under the session's lock, written to the session's
history) is decided here; what each kind means is core/sessions/event_rules.py.
"""

from __future__ import annotations

from typing import Any

from core.errors import InvalidInput
from core.events import APPLIED_TTL_MS, MESSAGE_EVENTS, EventKind, check_id
from core.models import Status
from core.sessions.context import Context, session_log
from core.sessions.event_rules import EventRules, check, loggable


class WorkerEvents:
    def __init__(self, ctx: Context, rules: EventRules) -> None:
        self.ctx = ctx
        self.rules = rules

    async def handle_event(
        self, session_id: str, kind: object, data: object, event_id: object = None
    ) -> None:
        """Apply one authenticated worker event once; a malformed one raises before any write.

        Workers deliver at least once (a POST cut off mid-answer is sent again), so an event
        carrying an ``id`` is applied only the first time that id arrives. A ``PING`` is not
        deduplicated: it only says "alive now", and the hot path stays one round trip.
        """
        ctx = self.ctx
        kind, data = check(kind, data)
        eid = check_id(event_id)
        now = ctx.clock.now_ms()
        if kind in MESSAGE_EVENTS:
            if eid is None:
                raise InvalidInput(f"a {kind} event needs an id, so a resend is stored once")
            await self._message_event(session_id, kind, data, eid, now)
            return
        if kind == EventKind.PING:
            await self.rules.on_ping(session_id, now)
            ctx.metrics.events.labels(kind).inc()
            return
        async with ctx.locks.session(session_id):
            # Under the lock, so a failover, restart or delete of this session is either
            # wholly before the event or wholly after it.
            record = await ctx.get(session_id)
            if record.status == Status.STOPPED:
                # A stopped worker's last words on its way out: the session stays stopped.
                session_log(session_id).info("ignoring %s: the session is stopped", kind)
                return
            if eid and not await ctx.store.claim_event(session_id, eid, now, APPLIED_TTL_MS):
                session_log(session_id).info("ignoring %s event %s: already applied", kind, eid)
                return
            try:
                ctx.metrics.events.labels(kind).inc()
                await ctx.store.add_event(session_id, kind, loggable(kind, data), now)
                await self.rules.life_cycle[kind](record, data, now)
            except Exception:
                if eid:
                    await ctx.store.unclaim_event(session_id, eid)
                raise

    async def _message_event(
        self, session_id: str, kind: EventKind, data: dict[str, Any], eid: str, now: int
    ) -> None:
        """Messages in and receipts: not the session's life, so no session lock and no entry
        in its history; applied once per event id all the same.

        Not claimed before it is applied (as a life-cycle event is): a claim that outlived a
        failure half-way (Redis or serve killed between the claim and the write, the unclaim
        failing too) made the worker's retry "already applied", and a receipt was lost. Each
        step is idempotent instead: the operator's stream is written once per event id (it
        tells whether this was the first time), and a status only moves forward. Each script
        checks that the session is still in the fleet (``NotFound`` otherwise), so an event
        racing a delete cannot bring back a key of it.
        """
        ctx = self.ctx
        if kind == EventKind.MESSAGE_IN and "media" in data:
            # Its file named before the event is stored: nothing in the stream names a file
            # without a record. ``MediaMissing`` (not uploaded yet) writes nothing.
            await ctx.incoming_media.register(session_id, eid, data["media"], now)
        # Kept for the operator first (their own stream, not the history: a busy number's
        # messages would push its lifecycle out of the capped history).
        first = await ctx.operator_events.append(session_id, eid, kind, data, now)
        # A status again changes nothing; an incoming message is counted once (a crash right
        # here leaves the count one short, never the message lost).
        if kind == EventKind.MESSAGE_STATUS or first:
            await self.rules.message[kind](session_id, data)
        if first:
            ctx.metrics.events.labels(kind).inc()
