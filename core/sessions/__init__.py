"""The session service: the one place that decides what happens next to a session.

Webhooks, the runner's exit notices, the watchdog and the operator (REST or chat) all end
up here. ``SessionService`` is the face the rest of wafleet calls; behind it each job has a
room of its own, all built around one shared ``Context`` (context.py: the collaborators,
the locks and the bookkeeping):

- actions.py: the operator's commands (provision, restart, stop, start, new QR, delete);
- worker_events.py: taking a worker's event in; event_rules.py: what each kind means;
- failover.py: moving sessions off a dead proxy, and back onto a recovered one;
- supervision.py: a worker's exits and crashes, and the watchdog's pass over the pings;
- reconcile.py: making what runs match Redis at start-up;
- workers.py: starting workers, one or many, for all of the above.

Work on one session is serialised by a per-session lock (locks.py) so a failover, a
restart and a delete of the same session never interleave.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from core.bulk_start import BulkStart
from core.clock import Clock
from core.commands import CommandChannel
from core.errors import QrUnavailable
from core.journal import Journal
from core.metrics import Metrics
from core.models import SessionRecord, Status
from core.notifier import Notifier
from core.proxies import ProxyPool
from core.runner import Runner
from core.sessions.actions import OperatorActions
from core.sessions.context import (
    CRASH_LIMIT,
    CRASH_WINDOW_S,
    PARKED_REASONS,
    Context,
    at_rest,
    session_log,
)
from core.sessions.event_rules import EventRules
from core.sessions.failover import Failover
from core.sessions.reconcile import Reconcile
from core.sessions.supervision import Supervision
from core.sessions.worker_events import WorkerEvents
from core.sessions.workers import Workers
from core.settings import Settings
from core.store import Store

__all__ = [
    "CRASH_LIMIT",
    "CRASH_WINDOW_S",
    "PARKED_REASONS",
    "SessionService",
    "at_rest",
    "session_log",
]


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
        ctx = Context(settings, store, pool, runner, notifier, clock, metrics, journal)
        self._ctx = ctx
        # The collaborators, for the callers that reach them through the service.
        self.settings, self.store, self.pool, self.runner = settings, store, pool, runner
        self.notifier, self.clock, self.metrics, self.journal = notifier, clock, metrics, journal
        self.tasks = ctx.tasks
        self.pings = ctx.pings
        self.operator_events = ctx.operator_events
        self.messages = ctx.messages

        workers = Workers(ctx)
        failover = Failover(ctx, workers)
        actions = OperatorActions(ctx, workers, failover)
        supervision = Supervision(ctx, workers)
        reconcile = Reconcile(ctx, workers)
        events = WorkerEvents(ctx, EventRules(ctx, failover))
        self._workers = workers

        # Who does what: each public call is one room's.
        self.maintenance = ctx.maintenance
        self.provision = actions.provision
        self.restart = actions.restart
        self.stop = actions.stop
        self.start = actions.start
        self.request_new_qr = actions.request_new_qr
        self.delete = actions.delete
        self.handle_event = events.handle_event
        self.commands = CommandChannel(ctx.messages, events.handle_event, metrics.registry)
        self.handle_proxy_failure = failover.handle_proxy_failure
        self.retry_parked = failover.retry_parked
        self.handle_worker_exit = supervision.handle_worker_exit
        self.check_pings = supervision.check_pings
        self.reconcile = reconcile.reconcile
        self.start_many = workers.start_many
        self.worker_spec = workers.spec

        runner.on_exit(supervision.handle_worker_exit)
        pool.on_recovered(failover.retry_parked)

    @property
    def claim_maintenance(self) -> Callable[[str | None], Awaitable[bool]] | None:
        """Several replicas: claims the fleet-wide maintenance in Redis, or gives it back."""
        return self._ctx.claim_maintenance

    @claim_maintenance.setter
    def claim_maintenance(self, claim: Callable[[str | None], Awaitable[bool]] | None) -> None:
        self._ctx.claim_maintenance = claim

    @property
    def maintenance_elsewhere(self) -> str | None:
        """What another replica is doing to the whole fleet now (core/fleet_maintenance.py)."""
        return self._ctx.maintenance_elsewhere

    @maintenance_elsewhere.setter
    def maintenance_elsewhere(self, what: str | None) -> None:
        self._ctx.maintenance_elsewhere = what

    def acted_elsewhere(self, session_id: str) -> None:
        """Another serve replica started or stopped this session's worker."""
        self._ctx.acted(session_id)

    @property
    def reconciling(self) -> bool:
        """True while a reconcile compares Redis with what runs (serve already answers)."""
        return self._ctx.reconciling

    @property
    def starting(self) -> BulkStart | None:
        """A bulk start running now (a reconcile's or a restore's), for its progress."""
        return self._workers.starting

    # queries ----------------------------------------------------------------------------

    async def get(self, session_id: str) -> SessionRecord:
        return await self._ctx.get(session_id)

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

    async def close(self) -> None:
        await self.tasks.cancel()
