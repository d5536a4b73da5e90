"""What every room of the session service shares, handed to each when it is built.

The collaborators (store, pool, runner, notifier, ...), the locks, and the bookkeeping that
more than one room reads or writes: whether the fleet is in maintenance, the sessions acted
on while a reconcile runs, when a session was provisioned, its recent crashes. A room
reaches these through this object, never through another room.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from core import keys
from core.clock import Clock
from core.errors import Busy, NotFound
from core.event_log import EventLog
from core.journal import Happened, Journal
from core.messages import MessageService
from core.metrics import Metrics
from core.models import Reason, SessionRecord, Status
from core.notifier import Notifier
from core.pings import PingBuffer
from core.proxies import ProxyPool
from core.runner import Runner
from core.sessions.crash_counts import CrashCounts
from core.sessions.locks import Locks
from core.settings import Settings
from core.store import Liveness, Store
from core.tasks import TaskGroup

log = logging.getLogger("wafleet.sessions")

# Sessions in these states have no worker on purpose; nothing restarts them by itself.
# A worker that exits more than CRASH_LIMIT times within CRASH_WINDOW_S is parked.
CRASH_WINDOW_S = 300
CRASH_LIMIT = 5
# A provision whose first QR came later than this is not measured (its worker waited).
PROVISION_TO_QR_MS = 600_000
PARKED_REASONS = frozenset({Reason.CRASH_LOOP, Reason.NO_CAPACITY, Reason.UNSCHEDULABLE})


def session_log(session_id: str) -> logging.Logger:
    """The logger of one session, ``wafleet.session.<id>``: grep one session's whole story
    (provision, events, crashes, restarts, failovers) out of a busy fleet's log."""
    return logging.getLogger(f"wafleet.session.{session_id}")


def at_rest(record: SessionRecord | Liveness) -> bool:
    """No worker on purpose: parked by wafleet or stopped by the operator; nothing restarts
    it by itself."""
    return record.status == Status.STOPPED or (
        record.status == Status.FAILED and record.reason in PARKED_REASONS
    )


@dataclass(eq=False)
class Context:
    settings: Settings
    store: Store
    pool: ProxyPool
    runner: Runner
    notifier: Notifier
    clock: Clock
    metrics: Metrics
    journal: Journal | None
    # While a reconcile runs (serve answers requests meanwhile): the sessions whose worker
    # something else started, or which were provisioned or deleted, since it began. Its
    # picture of Redis and of the runner is older than theirs, so it leaves them alone.
    acted_on: set[str] | None = None

    def __post_init__(self) -> None:
        self.tasks = TaskGroup()
        self.pings = PingBuffer(self.store)
        # Incoming messages and receipts, kept for the operator (core/deliveries.py sends them).
        self.operator_events = EventLog(self.store.redis, self.settings.events_retention_ms)
        self.messages = MessageService(self.store, self.settings, self.clock)
        self.crashes = CrashCounts(self.store.redis, CRASH_WINDOW_S)
        self._maintenance: str | None = None  # what replaces the whole fleet right now
        # Several replicas (set by serve, core/fleet_maintenance.py): claims the fleet-wide
        # maintenance in Redis (False: another replica holds it) or gives it back (None);
        # and what another replica is doing to the whole fleet right now.
        self.claim_maintenance: Callable[[str | None], Awaitable[bool]] | None = None
        self.maintenance_elsewhere: str | None = None
        # Held in Redis, so they hold across every serve replica (core/redis_locks.py).
        self.locks = Locks(self.store.redis)

    async def get(self, session_id: str) -> SessionRecord:
        record = await self.store.get_session(session_id)
        if record is None:
            raise NotFound(f"no session {session_id!r}")
        return record

    @contextlib.asynccontextmanager
    async def maintenance(self, what: str) -> AsyncIterator[None]:
        """While the whole fleet is being replaced (a restore), nothing else may start, move
        or delete a worker: operators get a 409, the watchdog and crash handling wait."""
        if self.reconciling:
            raise Busy("the start-up reconcile is in progress: try again when it ends")
        self.refuse_during_maintenance()
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
        return self.acted_on is not None

    async def mark_provisioned(self, session_id: str) -> None:
        """For the provision-to-QR metric, in Redis: the first QR may come to any replica."""
        key = keys.session_provisioned(session_id)
        await self.store.redis.set(key, self.clock.now_ms(), px=PROVISION_TO_QR_MS)

    async def provisioned_for(self, session_id: str) -> float | None:
        """Seconds since the session was provisioned, once (its first QR); None after."""
        since = await self.store.redis.getdel(keys.session_provisioned(session_id))
        return None if since is None else (self.clock.now_ms() - int(since)) / 1000

    async def forget_provisioned(self, session_id: str) -> None:
        await self.store.redis.delete(keys.session_provisioned(session_id))

    def acted(self, session_id: str) -> None:
        """Something newer than a running reconcile's snapshots decided about this session."""
        if self.acted_on is not None:
            self.acted_on.add(session_id)

    def refuse_during_maintenance(self) -> None:
        if (running := self._maintenance or self.maintenance_elsewhere) is not None:
            raise Busy(f"{running} is in progress: try again when it ends")

    def paused_for_maintenance(self, what: str) -> bool:
        if (running := self._maintenance or self.maintenance_elsewhere) is not None:
            log.info("%s skipped: %s is in progress", what, running)
            return True
        return False

    async def journal_count(self, what: Happened) -> None:
        """Count it for the digest; failing to count never fails what was counted."""
        if self.journal is None:
            return
        try:
            await self.journal.count(what)
        except Exception as exc:
            log.warning("cannot count %s for the digest: %s", what.value, type(exc).__name__)
