"""The session service: SPEC.md's flows, and the one place that decides what happens next.

Webhooks, the runner's exit notices, the watchdog and the operator (REST or chat) all
end up here. Work on one session is serialised by a per-session lock so a failover, a
restart and a delete of the same session never interleave.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable
from typing import Any

from core import bulk_start, endpoint_url, session_files
from core import events as worker_events
from core.clock import Clock
from core.commands import CommandChannel
from core.errors import (
    Busy,
    Conflict,
    InvalidInput,
    NoCapacity,
    NotFound,
    PhoneLimit,
    QrUnavailable,
)
from core.event_log import EventLog
from core.journal import Happened, Journal
from core.messages import MessageService, check_provision_limits
from core.metrics import Metrics
from core.models import ProxyStatus, Reason, SessionRecord, Status
from core.notifier import Alert, AlertKind, Done, Move, Notifier
from core.phone import normalize as normalize_phone
from core.pings import PingBuffer
from core.proxies import ProxyPool
from core.proxy_url import ProxyUrl, mask, parse_input
from core.redis_locks import RedisLocks
from core.runner import EXIT_RECYCLE, EXIT_UNSCHEDULABLE, Runner, WorkerSpec
from core.settings import Settings
from core.signing import session_secret
from core.store import Liveness, NoSuchSession, ReservationRefused, Store
from core.tasks import TaskGroup

log = logging.getLogger("wafleet.sessions")


def session_log(session_id: str) -> logging.Logger:
    """The logger of one session, ``wafleet.session.<id>``: grep one session's whole story
    (provision, events, crashes, restarts, failovers) out of a busy fleet's log."""
    return logging.getLogger(f"wafleet.session.{session_id}")


CRASH_WINDOW_S = 300
CRASH_LIMIT = 5  # crashes within the window before a session is parked as a crash loop
# Sessions in these states have no worker on purpose; nothing restarts them by itself.
PARKED_REASONS = frozenset({Reason.CRASH_LOOP, Reason.NO_CAPACITY, Reason.UNSCHEDULABLE})

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


class SessionService:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        pool: ProxyPool,
        runner: Runner,
        notifier: Notifier,
        clock: Clock,
        metrics: Metrics,
        journal: Journal | None = None,
    ) -> None:
        """``journal``: where the daily digest's counts of sessions added and removed go."""
        self.settings = settings
        self.store = store
        self.pool = pool
        self.runner = runner
        self.notifier = notifier
        self.clock = clock
        self.metrics = metrics
        self.journal = journal
        self.tasks = TaskGroup()
        self.pings = PingBuffer(store)
        # Incoming messages and receipts, kept for the operator (core/deliveries.py sends them).
        self.operator_events = EventLog(store.redis, settings.events_retention_ms)
        self._maintenance: str | None = None  # what replaces the whole fleet right now
        # Several replicas (set by serve, core/fleet_maintenance.py): claims the fleet-wide
        # maintenance in Redis (False: another replica holds it) or gives it back (None);
        # and what another replica is doing to the whole fleet right now.
        self.claim_maintenance: Callable[[str | None], Awaitable[bool]] | None = None
        self.maintenance_elsewhere: str | None = None
        # In Redis, so one session's (one proxy's) work never interleaves across replicas.
        self._locks = RedisLocks(store.redis, "session")
        self._proxy_locks = RedisLocks(store.redis, "proxy")
        self._provisioned_at: dict[str, float] = {}
        self._crashes: defaultdict[str, deque[float]] = defaultdict(deque)
        self.starting: bulk_start.BulkStart | None = None  # a bulk start running now
        # While a reconcile runs (serve answers requests meanwhile): the sessions whose worker
        # something else started, or which were provisioned or deleted, since it began. Its
        # picture of Redis and of the runner is older than theirs, so it leaves them alone.
        self._acted_on: set[str] | None = None
        self.messages = MessageService(store, settings, clock)
        self.commands = CommandChannel(self.messages, metrics.registry)
        runner.on_exit(self.handle_worker_exit)
        pool.on_recovered(self.retry_parked)

    @contextlib.asynccontextmanager
    async def maintenance(self, what: str) -> AsyncIterator[None]:
        """While the whole fleet is being replaced (a restore), nothing else may start, move
        or delete a worker: operators get a 409, the watchdog and crash handling wait."""
        if self.reconciling:
            raise Busy("the start-up reconcile is in progress: try again when it ends")
        self._refuse_during_maintenance()
        if self.claim_maintenance is not None and not await self.claim_maintenance(what):
            raise Busy("another serve replica is replacing the fleet: try again when it ends")
        self._maintenance = what
        try:
            yield
        finally:
            self._maintenance = None
            if self.claim_maintenance is not None:
                await self.claim_maintenance(None)

    @property
    def reconciling(self) -> bool:
        """True while a reconcile compares Redis with what runs (serve already answers)."""
        return self._acted_on is not None

    def _acted(self, session_id: str) -> None:
        if self._acted_on is not None:
            self._acted_on.add(session_id)

    def acted_elsewhere(self, session_id: str) -> None:
        """Another serve replica started or stopped this session's worker."""
        self._acted(session_id)

    def _refuse_during_maintenance(self) -> None:
        if (running := self._maintenance or self.maintenance_elsewhere) is not None:
            raise Busy(f"{running} is in progress: try again when it ends")

    def _paused_for_maintenance(self, what: str) -> bool:
        if (running := self._maintenance or self.maintenance_elsewhere) is not None:
            log.info("%s skipped: %s is in progress", what, running)
            return True
        return False

    # queries ----------------------------------------------------------------------------

    async def get(self, session_id: str) -> SessionRecord:
        record = await self.store.get_session(session_id)
        if record is None:
            raise NotFound(f"no session {session_id!r}")
        return record

    async def all_sessions(self) -> list[SessionRecord]:
        return await self.store.list_sessions()

    async def session_page(
        self, after: str | None, limit: int
    ) -> tuple[list[SessionRecord], str | None, int]:
        """One page of the listing, in id order: see ``Store.session_page``."""
        return await self.store.session_page(after, limit)

    async def qr(self, session_id: str) -> str:
        record = await self.get(session_id)
        if record.qr:
            return record.qr
        if record.status == Status.CONNECTED:
            raise QrUnavailable("the session is connected: there is no QR to scan")
        if record.needs_qr:
            raise QrUnavailable(
                "the QR codes ran out unscanned: POST /api/sessions/{id}/qr starts a new round"
            )
        raise QrUnavailable("no QR yet: the worker is starting, try again in a moment")

    async def events(self, session_id: str, count: int = 50) -> list[dict[str, Any]]:
        await self.get(session_id)
        return await self.store.events(session_id, count)

    # Flow 1: provision ------------------------------------------------------------------

    async def provision(
        self,
        phone: object = None,
        proxy: object = None,
        events_webhook_url: object = None,
        limits: object = None,
    ) -> SessionRecord:
        """``limits``: the session's own careful-sending limits from its first message (a
        new number is the one most at risk of a ban), checked before anything is written."""
        self._refuse_during_maintenance()
        number = None if phone in (None, "") else normalize_phone(phone)
        requested = (
            None if proxy in (None, "") else parse_input(proxy, policy=self.settings.proxy_policy)
        )
        events_url = self._events_endpoint(events_webhook_url)
        own_limits = check_provision_limits(limits)
        now = self.clock.now_ms()
        # A proxy named here joins the pool; parked sessions may use it only after this
        # provision has its slot, so they are retried afterwards, not in between.
        added = requested is not None and await self.store.add_proxy(requested.url)
        try:
            session_id, proxy_url = await self.store.reserve(
                number or "",
                requested.url if requested else "",
                self.settings.max_sessions_per_proxy,
                self.settings.max_sessions_per_phone,
                now,
            )
        except ReservationRefused as refused:
            if added and requested is not None:
                await self.store.remove_proxy(requested.url)  # leave the pool as it was
            kind, message = _REFUSALS.get(refused.why, (Conflict, refused.why))
            raise kind(message) from None
        self._acted(session_id)  # before its worker starts: a reconcile must not start it too
        path = session_files.folder(self.settings.sessions_dir, session_id)
        try:
            async with self._session_lock(session_id):
                if events_url is not None:
                    await self.store.set_fields(session_id, eventsWebhookUrl=events_url)
                if own_limits is not None:
                    await self.messages.set_limits(session_id, own_limits)
                self._provisioned_at[session_id] = self.clock.monotonic()
                await asyncio.to_thread(
                    session_files.write_meta, path, session_id, number, proxy_url, now
                )
                await self.store.add_event(
                    session_id, "PROVISIONED", {"proxy": mask(proxy_url)}, now
                )
                await self._start_worker(session_id, proxy_url, number)
        except Exception:
            session_log(session_id).exception("could not start the worker; rolling back")
            self._provisioned_at.pop(session_id, None)
            self.pings.forget(session_id)
            await self.store.release(session_id)
            await self.messages.forget(session_id)
            await asyncio.to_thread(session_files.remove, path)
            raise
        session_log(session_id).info("provisioned on %s", mask(proxy_url))
        await self._journal(Happened.SESSIONS_ADDED)
        self.tasks.spawn(self.pool.check_capacity(), name="capacity-check")
        if added:
            self.tasks.spawn(self.retry_parked(), name="retry-parked")
        return await self.get(session_id)

    def _events_endpoint(self, raw: object) -> str | None:
        """A session's own endpoint for its incoming messages and receipts, checked before
        anything is written: http(s), a host the events destination policy admits, and a key
        to sign with."""
        if raw in (None, ""):
            return None
        url = endpoint_url.parse(raw, self.settings.events_webhook_policy)
        if not self.settings.events_webhook_secret:
            raise InvalidInput(
                "eventsWebhookUrl needs EVENTS_WEBHOOK_SECRET to be set on the server: every "
                "event is signed"
            )
        return url

    # operator actions -------------------------------------------------------------------

    async def restart(self, session_id: str, reason: str | None = None) -> SessionRecord:
        self._refuse_during_maintenance()
        async with self._session_lock(session_id):
            await self._restart_locked(await self.get(session_id), reason)
        return await self.get(session_id)

    async def _restart_locked(self, record: SessionRecord, reason: str | None) -> None:
        """Start the worker again; a session parked without a slot first claims one."""
        proxy = record.proxy
        if record.status == Status.FAILED and record.reason == Reason.NO_CAPACITY:
            claimed = await self.store.claim(record.id, self.settings.max_sessions_per_proxy)
            if claimed is None:
                raise NoCapacity("no proxy has a free slot for this session yet")
            if claimed != proxy:
                path = session_files.folder(self.settings.sessions_dir, record.id)
                await asyncio.to_thread(
                    session_files.write_meta,
                    path,
                    record.id,
                    record.phone,
                    claimed,
                    record.created,
                )
            proxy = claimed
        await self._start_worker(record.id, proxy, record.phone, reason)

    async def stop(self, session_id: str) -> SessionRecord:
        """Stop without deleting: credentials, proxy slot and sticky mapping stay, no worker
        runs, the watchdog and reconcile leave it alone, its queued messages wait."""
        self._refuse_during_maintenance()
        async with self._session_lock(session_id):
            record = await self.get(session_id)
            if record.status != Status.STOPPED:
                # Stopped first, so the worker's exit and its last events change nothing.
                await self.store.set_fields(
                    session_id,
                    status=Status.STOPPED,
                    reason=None,
                    qr=None,
                    qrExpires=None,
                    pairingCode=None,
                )
                await self.runner.stop(session_id)
                self.pings.forget(session_id)
                await self.store.set_fields(session_id, lock=None)
                await self.store.add_event(session_id, "STOPPED", {}, self.clock.now_ms())
                session_log(session_id).info("stopped by the operator")
        return await self.get(session_id)

    async def start(self, session_id: str) -> SessionRecord:
        """Bring a stopped session back: its worker reconnects with the saved credentials."""
        self._refuse_during_maintenance()
        async with self._session_lock(session_id):
            record = await self.get(session_id)
            if record.status == Status.STOPPED:
                await self.store.add_event(session_id, "STARTED", {}, self.clock.now_ms())
                await self._start_worker(record.id, record.proxy, record.phone, Reason.STARTING)
        return await self.get(session_id)

    async def request_new_qr(self, session_id: str) -> SessionRecord:
        """Start a fresh QR round (after the last one ran out, or after a logout)."""
        record = await self.get(session_id)
        if record.status == Status.CONNECTED:
            raise Conflict("the session is connected: log it out on the phone to link again")
        return await self.restart(session_id, Reason.STARTING)

    async def delete(self, session_id: str) -> None:
        """Nothing of the session stays behind, and nothing accepted is lost: its queued
        messages are reported ``failed: session_deleted`` on its operator stream, and what
        that stream holds undelivered is still delivered before the stream goes."""
        self._refuse_during_maintenance()
        async with self._session_lock(session_id):
            record = await self.get(session_id)
            self._acted(session_id)
            await self.runner.stop(session_id)
            self.pings.forget(session_id)
            # Marked draining before its keys go: a lane never sees it neither there nor
            # draining. Then the record, so a message event or an accept still in flight is
            # refused from here on (their scripts check it) and cannot bring back a key; then
            # its messages (reported on the stream, removed).
            await self.operator_events.drain(session_id, record.events_webhook_url or "")
            await self.store.release(session_id)
            await self.messages.forget(session_id)
            await asyncio.to_thread(
                session_files.remove, session_files.folder(self.settings.sessions_dir, session_id)
            )
            self._crashes.pop(session_id, None)
            self._provisioned_at.pop(session_id, None)
            self.operator_events.wake(session_id)
        self._locks.pop(session_id, None)
        session_log(session_id).info("deleted")
        await self._journal(Happened.SESSIONS_REMOVED)

    async def _journal(self, what: Happened) -> None:
        """Count it for the digest; failing to count never fails what was counted."""
        if self.journal is None:
            return
        try:
            await self.journal.count(what)
        except Exception as exc:
            log.warning("cannot count %s for the digest: %s", what.value, type(exc).__name__)

    # webhook events ---------------------------------------------------------------------

    async def handle_event(
        self, session_id: str, kind: object, data: object, event_id: object = None
    ) -> None:
        """Apply one authenticated worker event once; a malformed one raises before any write.

        Workers deliver at least once (a POST cut off mid-answer is sent again), so an event
        carrying an ``id`` is applied only the first time that id arrives. A ``PING`` is not
        deduplicated: it only says "alive now", and the hot path stays one round trip.
        """
        kind, data = worker_events.check(kind, data)
        eid = worker_events.check_id(event_id)
        now = self.clock.now_ms()
        if kind in worker_events.MESSAGE_EVENTS:
            if eid is None:
                raise InvalidInput(f"a {kind} event needs an id, so a resend is stored once")
            await self._message_event(session_id, kind, data, eid, now)
            return
        if kind == "PING":
            if not await self.pings.record(session_id, now):
                raise NotFound(f"no session {session_id!r}")
            self.metrics.events.labels(kind).inc()
            return
        async with self._session_lock(session_id):
            # Under the lock, so a failover, restart or delete of this session is either
            # wholly before the event or wholly after it.
            record = await self.get(session_id)
            if record.status == Status.STOPPED:
                # A stopped worker's last words on its way out: the session stays stopped.
                session_log(session_id).info("ignoring %s: the session is stopped", kind)
                return
            if eid and not await self.store.claim_event(
                session_id, eid, now, worker_events.APPLIED_TTL_MS
            ):
                session_log(session_id).info("ignoring %s event %s: already applied", kind, eid)
                return
            try:
                self.metrics.events.labels(kind).inc()
                await self.store.add_event(session_id, kind, _loggable(kind, data), now)
                handler = getattr(self, f"_on_{kind.lower()}")
                await handler(record, data, now)
                await self.messages.on_session_event(session_id, kind, data)
            except Exception:
                if eid:
                    await self.store.unclaim_event(session_id, eid)
                raise

    async def _message_event(
        self, session_id: str, kind: str, data: dict[str, Any], eid: str, now: int
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
        # Kept for the operator first (their own stream, not the history: a busy number's
        # messages would push its lifecycle out of the capped history).
        first = await self.operator_events.append(session_id, eid, kind, data, now)
        # A status again changes nothing; an incoming message is counted once (a crash right
        # here leaves the count one short, never the message lost).
        if kind == "MESSAGE_STATUS" or first:
            await worker_events.on_message_event(self.messages, session_id, kind, data, now)
        if first:
            self.metrics.events.labels(kind).inc()

    async def _on_qr_code(self, record: SessionRecord, data: dict[str, Any], now: int) -> None:
        ttl_ms = int(data.get("ttlMs") or 60_000)
        await self.store.set_qr(record.id, data["qr"], now + ttl_ms, ttl_ms)
        started = self._provisioned_at.pop(record.id, None)
        if started is not None:
            self.metrics.provision_to_qr.observe(self.clock.monotonic() - started)
        await self.notifier.notify(
            Alert(
                AlertKind.QR_READY,
                record.id,
                record.phone,
                qr=data["qr"],
                qr_expires=now + ttl_ms,
            )
        )

    async def _on_pairing_code(
        self, record: SessionRecord, data: dict[str, Any], now: int
    ) -> None:
        await self.store.set_fields(record.id, pairingCode=data["code"])
        await self.notifier.notify(
            Alert(AlertKind.PAIRING_CODE, record.id, record.phone, facts={"code": data["code"]})
        )

    async def _on_connected(self, record: SessionRecord, data: dict[str, Any], now: int) -> None:
        phone = data["phoneNumber"]
        try:
            expected = await self.store.mark_connected(record.id, phone, now)
        except NoSuchSession:
            raise NotFound(f"no session {record.id!r}") from None
        self._crashes.pop(record.id, None)
        await self.store.set_fields(record.id, bootId=worker_events.boot_id(data))
        path = session_files.folder(self.settings.sessions_dir, record.id)
        await asyncio.to_thread(
            session_files.write_meta, path, record.id, phone, record.proxy, record.created
        )
        if expected:
            session_log(record.id).warning(
                "provisioned for +%s but linked by +%s", expected, phone
            )
            await self.notifier.notify(
                Alert(
                    AlertKind.PHONE_MISMATCH,
                    record.id,
                    phone,
                    facts={"expected": expected, "linked": phone},
                    done=Done.KEPT_LINK,
                )
            )
        await self.notifier.notify(
            Alert(
                AlertKind.CONNECTED,
                record.id,
                phone,
                proxy=record.proxy_masked,
                done=Done.NOTHING_NEEDED,
            )
        )

    async def _on_disconnected(
        self, record: SessionRecord, data: dict[str, Any], now: int
    ) -> None:
        code = str(data.get("code") or Reason.CONNECTION_LOST)
        if worker_events.stale_disconnect(data, record.status, record.boot_id):
            session_log(record.id).info(
                "ignoring DISCONNECTED (%s) from worker boot %s: boot %s is connected",
                code,
                worker_events.boot_id(data),
                record.boot_id,
            )
            return
        await self.store.set_fields(record.id, status=Status.DISCONNECTED, reason=code)
        await self.notifier.notify(
            Alert(
                AlertKind.DISCONNECTED,
                record.id,
                record.phone,
                proxy=record.proxy_masked,
                facts={"code": code, "reason": str(data.get("reason") or "")},
                done=_disconnect_action(code),
            )
        )

    async def _on_auth_failure(
        self, record: SessionRecord, data: dict[str, Any], now: int
    ) -> None:
        reason = str(data.get("reason") or "logged_out")
        if reason == "qr_timeout":
            await self.store.set_fields(
                record.id, status=Status.FAILED, reason=Reason.QR_EXPIRED, qr=None, qrExpires=None
            )
            await self.notifier.notify(
                Alert(
                    AlertKind.QR_EXPIRED,
                    record.id,
                    record.phone,
                    done=Done.WAITING_FOR_NEW_QR,
                )
            )
            return
        # Logged out: the credentials are void. The worker deleted them and is already in a
        # new QR round; deleting here could remove that round's fresh auth, so we don't.
        await self.store.set_fields(record.id, status=Status.PENDING, reason=Reason.LOGGED_OUT)
        await self.notifier.notify(
            Alert(
                AlertKind.LOGGED_OUT,
                record.id,
                record.phone,
                facts={"reason": reason},
                done=Done.NEW_QR_ROUND,
            )
        )

    async def _on_proxy_error(self, record: SessionRecord, data: dict[str, Any], now: int) -> None:
        reported = data.get("proxyId")
        if reported is not None and reported != _proxy_id(record.proxy):
            # A worker already replaced by a failover, flushing its last events on the way
            # out: its proxy is not this session's any more.
            session_log(record.id).info("ignoring a PROXY_ERROR about a proxy it no longer uses")
            return
        await self.store.set_fields(
            record.id, status=Status.DISCONNECTED, reason=Reason.PROXY_ERROR
        )
        # Answer the worker now; the probe and failover may take seconds.
        self.tasks.spawn(
            self.handle_proxy_failure(record.proxy, str(data.get("error", "")), record.id),
            name=f"proxy-error-{record.id}",
        )

    # Flow 4: failover -------------------------------------------------------------------

    async def handle_proxy_failure(self, url: str, error: str, reporter: str) -> list[Move]:
        """Confirm a reported proxy failure with our own probe, then move every session off it.

        One worker's word is not enough to break four phones' sticky IP: the orchestrator
        probes the proxy itself. All the reports of one dead proxy are folded into one
        failover and one alert.
        """
        if self._paused_for_maintenance(f"failover off {mask(url)}"):
            return []
        async with self._proxy_locks[url]:
            if await self.store.proxy_status(url) != ProxyStatus.BAD:
                problem = await self.pool.probe(url)
                if problem is None:
                    log.warning(
                        "%s reported %s failing (%s) but it answers our probe; the worker "
                        "keeps retrying",
                        reporter,
                        mask(url),
                        error,
                    )
                    return []
                await self.pool.mark_bad(url, problem)
            moves = [await self._failover(sid) for sid in await self.store.sessions_on(url)]
        done = [m for m in moves if m is not None]
        if done:
            await self.notifier.notify(
                Alert(
                    AlertKind.PROXY_BAD,
                    proxy=mask(url),
                    facts={"error": error or "proxy failed"},
                    done=Done.MOVED_SESSIONS,
                    moves=tuple(done),
                )
            )
            impossible = [m for m in done if m.new_proxy is None]
            if impossible:
                await self.notifier.notify(
                    Alert(
                        AlertKind.FAILOVER_IMPOSSIBLE,
                        proxy=mask(url),
                        facts={"sessions": len(impossible)},
                        done=Done.STOPPED_UNTIL_SLOT,
                        moves=tuple(impossible),
                    )
                )
        return done

    async def _failover(self, session_id: str) -> Move | None:
        async with self._session_lock(session_id):
            record = await self.store.get_session(session_id)
            if record is None or record.status == Status.STOPPED:
                # A stopped session keeps its proxy; started again on a dead one, its worker
                # reports the proxy error and moves then.
                return None
            new = await self.store.failover(session_id, self.settings.max_sessions_per_proxy)
            if new is None:
                self.metrics.failovers_impossible.inc()
                await self.runner.stop(session_id)
                await self.store.set_fields(
                    session_id, status=Status.FAILED, reason=Reason.NO_CAPACITY
                )
                return Move(session_id, record.phone, record.proxy_masked, None)
            self.metrics.failovers.inc()
            session_log(session_id).warning(
                "failing over %s -> %s", record.proxy_masked, mask(new)
            )
            path = session_files.folder(self.settings.sessions_dir, session_id)
            await asyncio.to_thread(
                session_files.write_meta, path, session_id, record.phone, new, record.created
            )
            await self.store.add_event(
                session_id,
                "FAILOVER",
                {"from": record.proxy_masked, "to": mask(new)},
                self.clock.now_ms(),
            )
            await self._start_worker(session_id, new, record.phone, Reason.PROXY_ERROR)
            return Move(session_id, record.phone, record.proxy_masked, mask(new))

    async def retry_parked(self) -> None:
        """A proxy recovered or was added: give sessions parked for lack of capacity a slot."""
        if self._paused_for_maintenance("retrying parked sessions"):
            return
        for listed in await self.store.list_sessions():
            if not _parked_for_capacity(listed):
                continue
            async with self._session_lock(listed.id):
                record = await self.store.get_session(listed.id)
                if record is None or not _parked_for_capacity(record):
                    continue  # another pass got there first
                try:
                    await self._restart_locked(record, Reason.STARTING)
                except NoCapacity:
                    return  # still no room: the next recovery tries again
                except Exception:
                    session_log(record.id).exception("could not restart the parked session")

    # Flow 2 and crashes -----------------------------------------------------------------

    async def handle_worker_exit(self, session_id: str, code: int | None) -> None:
        """A worker died on its own: restart it at once, unless it keeps dying."""
        if self._paused_for_maintenance(f"restarting {session_id}"):
            return
        async with self._session_lock(session_id):
            await self._handle_worker_exit_locked(session_id, code)

    async def _handle_worker_exit_locked(self, session_id: str, code: int | None) -> None:
        record = await self.store.get_session(session_id)
        if record is None or _at_rest(record):
            return  # deleted, or stopped on purpose meanwhile
        if code == EXIT_RECYCLE:
            session_log(session_id).info("recycled its worker process; starting a fresh one")
            await self._start_worker(record.id, record.proxy, record.phone, record.reason)
            return
        if code == EXIT_UNSCHEDULABLE:
            # Restarting would only wait again: parked until the operator makes room.
            await self.store.set_fields(
                session_id, status=Status.FAILED, reason=Reason.UNSCHEDULABLE
            )
            await self.notifier.notify(
                Alert(
                    AlertKind.UNSCHEDULABLE,
                    session_id,
                    record.phone,
                    done=Done.STOPPED_WAITING,
                )
            )
            return
        self.metrics.worker_crashes.inc()
        crashes = self._crashes[session_id]
        now = self.clock.monotonic()
        crashes.append(now)
        while crashes and now - crashes[0] > CRASH_WINDOW_S:
            crashes.popleft()
        slog = session_log(session_id)
        if len(crashes) > CRASH_LIMIT:
            slog.error("parked as a crash loop: %d exits in %d s", len(crashes), CRASH_WINDOW_S)
            await self.store.set_fields(session_id, status=Status.FAILED, reason=Reason.CRASH_LOOP)
            await self.notifier.notify(
                Alert(
                    AlertKind.CRASH_LOOP,
                    session_id,
                    record.phone,
                    facts={"exits": len(crashes), "minutes": CRASH_WINDOW_S // 60},
                    done=Done.STOPPED_RESTARTING,
                )
            )
            return
        slog.warning("the worker exited (code %s); restarting it", code)
        await self._start_worker(record.id, record.proxy, record.phone, Reason.CRASHED)
        await self.notifier.notify(
            Alert(
                AlertKind.WORKER_CRASHED,
                session_id,
                record.phone,
                facts={} if code is None else {"exit_code": code},
                done=Done.RESTARTED_WORKER,
            )
        )

    async def check_pings(self) -> list[str]:
        """One watchdog pass: restart every running session whose last ping is too old."""
        if self._paused_for_maintenance("the watchdog pass"):
            return []
        now = self.clock.now_ms()
        restarted = []
        # Only the sessions that have not pinged within the timeout: the rest cannot be stale.
        for listed in await self.store.liveness(now - self.settings.ping_timeout_ms):
            if not self._stale(listed, now):
                continue
            async with self._session_lock(listed.id):
                record = await self.store.get_session(listed.id)
                if record is None or not self._stale(record, now):
                    continue  # restarted, pinged, parked or deleted meanwhile
                try:
                    await self._start_worker(
                        record.id, record.proxy, record.phone, Reason.WATCHDOG
                    )
                except Exception:
                    session_log(record.id).exception("the watchdog could not restart it")
                    continue
            age = now - (record.last_ping or record.created)
            session_log(record.id).warning("no ping for %d ms: restarted its worker", age)
            restarted.append(record.id)
            self.metrics.watchdog_restarts.inc()
            await self.notifier.notify(
                Alert(
                    AlertKind.WATCHDOG_RESTART,
                    record.id,
                    record.phone,
                    facts={"seconds": age // 1000},
                    done=Done.RESTARTED_WORKER,
                )
            )
        return restarted

    def _stale(self, record: SessionRecord | Liveness, now: int) -> bool:
        if _at_rest(record):
            return False
        return now - (record.last_ping or record.created) > self.settings.ping_timeout_ms

    # start-up ---------------------------------------------------------------------------

    async def reconcile(self) -> dict[str, list[str]]:
        """Make what runs match Redis: adopt the living, start the missing, stop orphans.

        A living worker is adopted only if it was started with what Redis says now (its
        spec's fingerprint): one left from a failover that ``serve`` died in the middle of
        still has the dead proxy in its environment, pings happily, and would never be
        replaced. A worker frozen by a rolling backup is resumed: that backup died with the
        ``serve`` that paused it.

        ``serve`` answers requests while this runs (so REST can show the bulk start's
        progress). Each decision is taken under the session's lock on a fresh read, and a
        session that anything else started, provisioned or deleted since the reconcile began
        is left alone: that action saw newer state than the reconcile's snapshots.
        """
        acted_on: set[str] = set()
        self._acted_on = acted_on  # before the snapshots, so nothing slips between
        try:
            return await self._reconcile(acted_on)
        finally:
            self._acted_on = None

    async def _reconcile(self, acted_on: set[str]) -> dict[str, list[str]]:
        running = await self.runner.running()
        report: dict[str, list[str]] = {
            "adopted": [],
            "started": [],
            "removed": [],
            "replaced": [],
        }
        known = set()
        missing: list[SessionRecord] = []
        for listed in await self.store.list_sessions():
            known.add(listed.id)
            handle = running.get(listed.id)
            slog = session_log(listed.id)
            async with self._session_lock(listed.id):
                record = await self.store.get_session(listed.id)
                if record is None or record.id in acted_on:
                    continue  # deleted, or started by a request or an event meanwhile
                parked = _at_rest(record)  # parked, or stopped by the operator
                if handle is None:
                    if not parked:
                        missing.append(record)
                    continue
                if record.status == Status.STOPPED:
                    # A stop that serve died in the middle of: finish it.
                    await self.runner.stop(record.id)
                    report["removed"].append(record.id)
                    continue
                wanted = self.runner.fingerprint(
                    self.worker_spec(record.id, record.proxy, record.phone)
                )
                if handle.fingerprint != wanted and not parked:
                    slog.warning(
                        "its running worker was started with other settings (proxy, image or "
                        "worker settings); replacing it"
                    )
                    path = session_files.folder(self.settings.sessions_dir, record.id)
                    # The cut-short change may not have reached session.json either.
                    await asyncio.to_thread(
                        session_files.write_meta,
                        path,
                        record.id,
                        record.phone,
                        record.proxy,
                        record.created,
                    )
                    await self._start_worker(record.id, record.proxy, record.phone, record.reason)
                    report["replaced"].append(record.id)
                    continue
                await self.runner.adopt(handle)
                if handle.paused:
                    slog.warning("its worker was left paused (a backup cut short); resuming it")
                    await self.runner.resume(record.id)
                await self.store.set_fields(record.id, lock=handle.ref)
                report["adopted"].append(record.id)
        report["started"] = await self.start_many(missing, skip=acted_on)
        for orphan in sorted(set(running) - known):
            async with self._session_lock(orphan):
                # Provisioned after the listing, its worker started before the runner's list.
                if orphan in acted_on or await self.store.get_session(orphan) is not None:
                    continue
                await self.runner.stop(orphan)
            report["removed"].append(orphan)
        fixed = await self.store.recount()
        log.info(
            "reconciled: %d adopted, %d started, %d orphan(s) removed, %d counter(s) fixed, "
            "%d replaced (started with other settings)",
            len(report["adopted"]),
            len(report["started"]),
            len(report["removed"]),
            fixed,
            len(report["replaced"]),
        )
        return report

    async def start_many(
        self,
        records: list[SessionRecord],
        reason: str | None = None,
        announce: bool = True,
        skip: Collection[str] = (),
    ) -> list[str]:
        """Start the workers of ``records`` (a reconcile's missing ones, a restore's), at most
        ``WORKER_START_CONCURRENCY`` at once, connected sessions first; the ids started.
        ``reason`` None keeps each record's own reason. The chat hears of it when it ends,
        only when it was more than one round of starts (a worker or two missing after a
        restart of ``serve`` is no news), and not when ``announce`` is False: a restore
        sends its own report.

        Each start re-reads its session under the session's lock: one deleted or parked
        while it waited in the queue is skipped, not brought back, and so is one in ``skip``
        (a reconcile's: sessions whose worker a request or an event started meanwhile).
        """
        started: list[str] = []
        if not records:
            return started

        async def start_one(listed: SessionRecord) -> None:
            async with self._session_lock(listed.id):
                record = await self.store.get_session(listed.id)
                if record is None or record.id in skip or _at_rest(record):
                    return
                await self._start_worker(
                    record.id, record.proxy, record.phone, reason or record.reason
                )
                started.append(record.id)

        progress = bulk_start.BulkStart(total=len(records))
        self.starting = progress
        log.info(
            "starting %d worker(s), %d at a time, connected ones first",
            len(records),
            self.settings.worker_start_concurrency,
        )
        try:
            await bulk_start.run(
                records, start_one, self.settings.worker_start_concurrency, progress
            )
        finally:
            self.starting = None
        log.info(
            "bulk start done: %d of %d started, %d failed",
            progress.started,
            progress.total,
            progress.failed,
        )
        if not announce or progress.total <= self.settings.worker_start_concurrency:
            return started
        await self.notifier.notify(
            Alert(
                AlertKind.BULK_START_DONE,
                facts={
                    "total": progress.total,
                    "started": progress.started,
                    "failed": progress.failed,
                },
                done=Done.NOTHING,
            )
        )
        return started

    # internals --------------------------------------------------------------------------

    async def _start_worker(
        self, session_id: str, proxy: str, phone: str | None, reason: str | None = None
    ) -> None:
        self._acted(session_id)
        now = self.clock.now_ms()
        # A fresh start earns a full ping timeout before the watchdog looks at it again.
        await self.store.set_fields(
            session_id,
            status=Status.PENDING,
            reason=reason or Reason.STARTING,
            lastPing=now,
            qr=None,
            qrExpires=None,
            pairingCode=None,
        )
        handle = await self.runner.start(self.worker_spec(session_id, proxy, phone))
        session_log(session_id).info(
            "worker started (%s) on %s", reason or "starting", mask(proxy)
        )
        await self.store.set_fields(session_id, lock=handle.ref)

    def worker_spec(self, session_id: str, proxy: str, phone: str | None) -> WorkerSpec:
        s = self.settings
        path = session_files.folder(s.sessions_dir, session_id)
        env = {
            "SESSION_ID": session_id,
            "PROXY_URL": proxy,
            "WEBHOOK_URL": s.webhook_url,
            "WEBHOOK_SECRET": session_secret(s.webhook_secret, session_id),
            "SESSION_DIR": str(path),
            "WA_DRIVER": s.wa_driver,
            "SIMWA_URL": s.simwa_url,
            "SESSION_PHONE": phone or "",
            "WORKER_PRESENCE_INTERVAL_MS": str(s.worker_presence_interval_ms),
            "WORKER_SELF_MESSAGE_INTERVAL_MS": str(s.worker_self_message_interval_ms),
            "WORKER_ATTEMPTS_PER_PROCESS": str(s.worker_attempts_per_process),
            "WORKER_OUTBOX_MAX_BYTES": str(s.worker_outbox_max_bytes),
            "LOG_LEVEL": s.log_level,
            "LOG_FORMAT": s.log_format,
        }
        return WorkerSpec(session_id=session_id, session_dir=path, env=env)

    def _session_lock(self, session_id: str) -> contextlib.AbstractAsyncContextManager[None]:
        return self._locks[session_id]

    async def close(self) -> None:
        await self.tasks.cancel()


def _at_rest(record: SessionRecord | Liveness) -> bool:
    """No worker on purpose: parked by wafleet or stopped by the operator; nothing restarts
    it by itself."""
    return record.status == Status.STOPPED or (
        record.status == Status.FAILED and record.reason in PARKED_REASONS
    )


def _parked_for_capacity(record: SessionRecord) -> bool:
    return record.status == Status.FAILED and record.reason == Reason.NO_CAPACITY


def _proxy_id(url: str) -> str | None:
    try:
        return ProxyUrl.parse(url).id
    except ValueError:
        return None


def _disconnect_action(code: str) -> Done:
    return {
        "stream_replaced": Done.NOT_RECONNECTING_REPLACED,
        "temporary_ban": Done.WAITING_OUT_BAN,
        "client_outdated": Done.NOT_RECONNECTING_OUTDATED,
    }.get(code, Done.RECONNECTING)


def _loggable(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    """What goes into the event history: never a QR or a pairing code (they grant access).
    The sender's ``bootId`` neither: it only tells copies of one worker apart."""
    hidden: Iterable[str] = {"QR_CODE": ("qr",), "PAIRING_CODE": ("code",)}.get(kind, ())
    return {k: ("…" if k in hidden else v) for k, v in data.items() if k != "bootId"}
