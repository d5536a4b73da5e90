"""What only the leader replica runs, started when it wins the lease and stopped when it loses it.

Every replica answers the REST API, ``/webhook`` and the workers' command channel. The work
that must run once for the whole fleet runs here, on the leader only:

* the start-up reconcile (at every win: the new leader adopts every running worker, so it
  hears of their exits), then the watchdog;
* the proxy prober, the connected-sessions sampler, the operator-event deliveries, the
  media sweep (core/media/sweep.py);
* the Telegram bot's polling and its alert sender;
* the scheduled backup and digest: the scheduler fires on every replica, and the leader of
  that moment claims the run in Redis, fenced by its token, so a run happens once even
  when the lease changes hands around its time.

All of it runs inside ``acting_as_leader``, so the session locks and the runner fence what it
does, and all of it is cancelled the moment the lease is lost (Telegram first: its poll must
end before another replica may start its own).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import redis.asyncio as aioredis

from core import keys
from core.deliveries import Deliveries
from core.history import ConnectedHistory
from core.leadership import Leadership, acting_as_leader
from core.media.registry import MediaRegistry
from core.media.store import MediaStore
from core.media.sweep import run_sweep
from core.proxies import ProxyPool
from core.sessions import SessionService
from core.settings import Settings
from core.store import Store
from core.tasks import TaskGroup
from core.watchdog import run_watchdog

if TYPE_CHECKING:
    from bot.app import TelegramBot

log = logging.getLogger("wafleet.leader")

JOB_CLAIM_TTL_S = 24 * 3600  # a claimed scheduled run is remembered for a day
JOB_WAIT_LEASES = 3  # how long a fired job waits for a leader to claim it, in leases


def claim_once(redis: aioredis.Redis, window_ms: int) -> Callable[[str], Awaitable[bool]]:
    """Claims a fleet-wide action for this replica (True), or finds another replica has
    (False): moving a lost swarm node's sessions, which every replica's runner sees. The
    claimer alone acts and alone says so, into the shared outbox the leader's sender
    delivers: gating the alert on "am I the leader now" lost it exactly when the lost node had
    taken the leader with it."""

    async def claim(what: str) -> bool:
        return bool(await redis.set(keys.runner_claim(what), 1, nx=True, px=window_ms))

    return claim


class LeaderWork:
    def __init__(
        self,
        settings: Settings,
        leadership: Leadership,
        store: Store,
        service: SessionService,
        pool: ProxyPool,
        history: ConnectedHistory,
        make_deliveries: Callable[[], Deliveries],
        telegram: TelegramBot | None,
        on_failure: Callable[[BaseException], None],
    ) -> None:
        self.settings = settings
        self.leadership = leadership
        self.store = store
        self.service = service
        self.pool = pool
        self.history = history
        self.make_deliveries = make_deliveries
        self.telegram = telegram
        self.on_failure = on_failure
        self.deliveries: Deliveries | None = None
        self.reconciled = False  # this leadership's start-up reconcile is over
        self.tasks = TaskGroup()
        leadership.on_change(self.changed)

    async def changed(self, leading: bool) -> None:
        if leading:
            self.start()
        else:
            await self.stop()

    def start(self) -> None:
        value = self.leadership.value
        if value is None:
            return
        s = self.settings
        self.reconciled = False
        with acting_as_leader(value):  # every task spawned here inherits it
            self.tasks.spawn(self._reconcile_then_watch(), name="reconcile+watchdog")
            self.tasks.spawn(
                self.pool.run_prober(s.proxy_probe_interval_ms / 1000), name="proxy-prober"
            )
            self.tasks.spawn(self.history.run(self.store), name="connected-history")
            self.deliveries = self.make_deliveries()
            self.tasks.spawn(self.deliveries.run(), name="event-deliveries")
            self.tasks.spawn(
                run_sweep(MediaStore(s.media_dir), MediaRegistry(self.store.redis)),
                name="media-sweep",
            )
        if self.telegram is not None:
            # Outside: an operator's command read by the leader's poll is an operator's
            # action (allowed on any replica), not leader work to be fenced.
            self.telegram.lead(self.leadership.left_s)

    async def stop(self) -> None:
        """Telegram first (no poll may outlive the lease), then everything else."""
        if self.telegram is not None:
            await self.telegram.follow()
        await self.tasks.cancel()
        if self.deliveries is not None:
            deliveries, self.deliveries = self.deliveries, None
            await deliveries.close()

    def wake_deliveries(self, session_id: str) -> None:
        """An event was appended on another replica: its lane here looks at once."""
        if self.deliveries is not None:
            self.deliveries.wake(session_id)

    def settling(self) -> bool:
        """True until this replica knows it follows, or leads and has reconciled: what
        ``/healthz`` says as ``reconciling`` (a readiness probe waits for it)."""
        if not self.leadership.decided:
            return True
        return self.leadership.is_leader() and not self.reconciled

    async def _reconcile_then_watch(self) -> None:
        try:
            await self.service.reconcile()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not self.leadership.is_leader():
                return  # lost the lease meanwhile: the next leader reconciles
            log.exception("the start-up reconcile failed; stopping")
            self.on_failure(exc)  # serve without a reconcile would lose sessions
            return
        finally:
            self.reconciled = True
        # Pings sent while no leader listened were lost (a worker keeps only its newest one
        # and backs off): a silence counts from when a leader could hear it, so the first
        # pass waits a full timeout instead of restarting every adopted worker.
        await asyncio.sleep(self.settings.ping_timeout_ms / 1000)
        await run_watchdog(self.service, self.settings.watchdog_interval_ms / 1000)

    def scheduled(
        self, job: str, action: Callable[[], Awaitable[object]]
    ) -> Callable[[], Awaitable[None]]:
        """The scheduler's job for ``action``: run once per fire time, by the leader."""

        async def run() -> None:
            # Cron fires on whole seconds (a sixth field may name them), every replica a few
            # milliseconds after: rounded, every replica names this run alike.
            fired = round(time.time())
            claim = keys.job_run(job, str(fired))
            deadline = time.monotonic() + JOB_WAIT_LEASES * self.leadership.lease_ms / 1000
            while time.monotonic() < deadline:
                if self.leadership.is_leader():
                    if await self.leadership.claim_once(claim, JOB_CLAIM_TTL_S):
                        value = self.leadership.value
                        if value is None:
                            return
                        with acting_as_leader(value):
                            task = self.tasks.spawn(_run(action), name=f"scheduled-{job}")
                        await asyncio.gather(task, return_exceptions=True)
                    return
                if await self.store.redis.exists(claim):
                    return  # the leader runs it
                await asyncio.sleep(0.2)
            log.error("scheduled %s at %d: no leader claimed it", job, fired)

        return run


async def _run(action: Callable[[], Awaitable[object]]) -> None:
    await action()
