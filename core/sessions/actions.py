"""The operator's commands, from REST or the chat: provision, restart, stop, start, a new QR
round, delete.

Each refuses while the fleet is in maintenance, checks what it is given before it writes
anything, and does its work under the session's lock.
"""

from __future__ import annotations

import asyncio

from core import endpoint_url, session_files
from core.errors import Conflict, InvalidInput, NoCapacity, PhoneLimit
from core.journal import Happened
from core.models import Reason, SessionRecord, Status
from core.owners import Owners
from core.phone import normalize as normalize_phone
from core.proxy_url import mask, parse_input
from core.send_limits import check_provision_limits
from core.sessions.context import Context, session_log
from core.sessions.failover import Failover
from core.sessions.workers import Workers
from core.store import ReservationRefused

_REFUSALS: dict[str, tuple[type[Exception], str]] = {
    "phone_limit": (PhoneLimit, "this phone already has the maximum number of sessions"),
    "unknown_proxy": (InvalidInput, "that proxy is not in the pool"),
    "proxy_bad": (NoCapacity, "that proxy is marked bad"),
    "proxy_full": (NoCapacity, "that proxy already has the maximum number of sessions"),
    "sticky_full": (
        NoCapacity,
        "this phone's sticky proxy is full; it keeps its IP, so free a slot there first",
    ),
    "no_capacity": (NoCapacity, "no proxy has a free slot: add a proxy or delete a session"),
}


class OperatorActions:
    def __init__(self, ctx: Context, workers: Workers, failover: Failover) -> None:
        """``failover``: a proxy that a provision adds to the pool may give parked sessions
        a slot."""
        self.ctx = ctx
        self.workers = workers
        self.failover = failover

    # provision ---------------------------------------------------------------------------

    async def provision(
        self,
        phone: object = None,
        proxy: object = None,
        events_webhook_url: object = None,
        limits: object = None,
        owner: str | None = None,
    ) -> SessionRecord:
        """``limits``: the session's own careful-sending limits from its first message (a
        new number is the one most at risk of a ban), checked before anything is written.
        ``owner``: the client key the session belongs to (None: an admin's), written with
        the record in one step and removed with it if the worker cannot start."""
        ctx = self.ctx
        ctx.refuse_during_maintenance()
        number = None if phone in (None, "") else normalize_phone(phone)
        requested = (
            None if proxy in (None, "") else parse_input(proxy, policy=ctx.settings.proxy_policy)
        )
        events_url = self._events_endpoint(events_webhook_url)
        own_limits = check_provision_limits(limits)
        now = ctx.clock.now_ms()
        # A proxy named here joins the pool; parked sessions may use it only after this
        # provision has its slot, so they are retried afterwards, not in between.
        added = requested is not None and await ctx.store.add_proxy(requested.url)
        try:
            session_id, proxy_url = await ctx.store.reserve(
                number or "",
                requested.url if requested else "",
                ctx.settings.max_sessions_per_proxy,
                ctx.settings.max_sessions_per_phone,
                now,
                owner,
            )
        except ReservationRefused as refused:
            if added and requested is not None:
                await ctx.store.remove_proxy(requested.url)  # leave the pool as it was
            kind, message = _REFUSALS.get(refused.why, (Conflict, refused.why))
            raise kind(message) from None
        ctx.acted(session_id)  # before its worker starts: a reconcile must not start it too
        path = session_files.folder(ctx.settings.sessions_dir, session_id)
        try:
            async with ctx.locks.session(session_id):
                if events_url is not None:
                    await ctx.store.set_fields(session_id, eventsWebhookUrl=events_url)
                if own_limits is not None:
                    await ctx.messages.set_limits(session_id, own_limits)
                await ctx.mark_provisioned(session_id)
                await session_files.write_record_meta(
                    ctx.settings.sessions_dir,
                    session_files.Meta(session_id, number, proxy_url, now),
                )
                await ctx.store.add_event(
                    session_id, "PROVISIONED", {"proxy": mask(proxy_url)}, now
                )
                await self.workers.start(session_id, proxy_url, number)
        except Exception:
            session_log(session_id).exception("could not start the worker; rolling back")
            await ctx.forget_provisioned(session_id)
            ctx.pings.forget(session_id)
            await ctx.store.release(session_id)
            await Owners(ctx.store.redis).set(session_id, None)
            await ctx.messages.forget(session_id)
            await asyncio.to_thread(session_files.remove, path)
            raise
        session_log(session_id).info("provisioned on %s", mask(proxy_url))
        await ctx.journal_count(Happened.SESSIONS_ADDED)
        ctx.tasks.spawn(ctx.pool.check_capacity(), name="capacity-check")
        if added:
            ctx.tasks.spawn(self.failover.retry_parked(), name="retry-parked")
        return await ctx.get(session_id)

    def _events_endpoint(self, raw: object) -> str | None:
        """A session's own endpoint for its incoming messages and receipts, checked before
        anything is written: http(s), a host the events destination policy admits, and a key
        to sign with."""
        if raw in (None, ""):
            return None
        settings = self.ctx.settings
        url = endpoint_url.parse(raw, settings.events_webhook_policy)
        if not settings.events_webhook_secret:
            raise InvalidInput(
                "eventsWebhookUrl needs EVENTS_WEBHOOK_SECRET to be set on the server: every "
                "event is signed"
            )
        return url

    # the session's life -----------------------------------------------------------------

    async def restart(self, session_id: str, reason: str | None = None) -> SessionRecord:
        ctx = self.ctx
        ctx.refuse_during_maintenance()
        async with ctx.locks.session(session_id):
            await self.workers.restart_locked(await ctx.get(session_id), reason)
        return await ctx.get(session_id)

    async def stop(self, session_id: str) -> SessionRecord:
        """Stop without deleting: credentials, proxy slot and sticky mapping stay, no worker
        runs, the watchdog and reconcile leave it alone, its queued messages wait."""
        ctx = self.ctx
        ctx.refuse_during_maintenance()
        async with ctx.locks.session(session_id):
            record = await ctx.get(session_id)
            if record.status != Status.STOPPED:
                # Stopped first, so the worker's exit and its last events change nothing.
                await ctx.store.set_fields(
                    session_id,
                    status=Status.STOPPED,
                    reason=None,
                    qr=None,
                    qrExpires=None,
                    pairingCode=None,
                )
                await ctx.runner.stop(session_id)
                ctx.pings.forget(session_id)
                await ctx.store.set_fields(session_id, lock=None)
                await ctx.store.add_event(session_id, "STOPPED", {}, ctx.clock.now_ms())
                session_log(session_id).info("stopped by the operator")
        return await ctx.get(session_id)

    async def start(self, session_id: str) -> SessionRecord:
        """Bring a stopped session back: its worker reconnects with the saved credentials."""
        ctx = self.ctx
        ctx.refuse_during_maintenance()
        async with ctx.locks.session(session_id):
            record = await ctx.get(session_id)
            if record.status == Status.STOPPED:
                await ctx.store.add_event(session_id, "STARTED", {}, ctx.clock.now_ms())
                await self.workers.start(record.id, record.proxy, record.phone, Reason.STARTING)
        return await ctx.get(session_id)

    async def request_new_qr(self, session_id: str) -> SessionRecord:
        """Start a fresh QR round (after the last one ran out, or after a logout)."""
        record = await self.ctx.get(session_id)
        if record.status == Status.CONNECTED:
            raise Conflict("the session is connected: log it out on the phone to link again")
        return await self.restart(session_id, Reason.STARTING)

    async def delete(self, session_id: str) -> None:
        """Nothing of the session stays behind, and nothing accepted is lost: its queued
        messages are reported ``failed: session_deleted`` on its operator stream, and what
        that stream holds undelivered is still delivered before the stream goes."""
        ctx = self.ctx
        ctx.refuse_during_maintenance()
        async with ctx.locks.session(session_id):
            record = await ctx.get(session_id)
            ctx.acted(session_id)
            await ctx.runner.stop(session_id)
            ctx.pings.forget(session_id)
            # Marked draining before its keys go: a lane never sees it neither there nor
            # draining. Then the record, so a message event or an accept still in flight is
            # refused from here on (their scripts check it) and cannot bring back a key; then
            # its messages (reported on the stream, removed).
            await ctx.operator_events.drain(session_id, record.events_webhook_url or "")
            await ctx.store.release(session_id)
            await ctx.messages.forget(session_id)
            await asyncio.to_thread(
                session_files.remove, session_files.folder(ctx.settings.sessions_dir, session_id)
            )
            await ctx.crashes.clear(session_id)
            await ctx.forget_provisioned(session_id)
            ctx.operator_events.wake(session_id)
        ctx.locks.forget(session_id)
        session_log(session_id).info("deleted")
        await ctx.journal_count(Happened.SESSIONS_REMOVED)
