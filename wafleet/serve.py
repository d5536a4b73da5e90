"""``wafleet serve``: the composition root. Builds every part, injects them, runs them.

Several replicas may run (``wafleet/leader_work.py``): each answers REST, ``/webhook`` and
the command channel; the one holding the leader's lease also runs the singletons. Start order
matters: HTTP first, so REST shows the progress of the start-up reconcile (a bulk start of
hundreds of workers takes minutes), then the lease (the leader reconciles, and watches only
after it: workers still waiting in its queue have old pings). Requests and worker events
during the reconcile are safe: it decides each session under that session's lock and leaves
alone what a request or an event acted on since it began. Stopping leaves every worker
running, so a restart of ``serve`` loses no session.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from tzlocal import get_localzone

from api.app import create_app
from api.context import CLUSTER
from api.server import JsonErrorRunner
from core import redis_client
from core.backups import BackupService, cron_trigger
from core.clock import SystemClock
from core.cluster import Cluster
from core.cluster_bus import ClusterBus
from core.cluster_runner import ClusterRunner
from core.deliveries import Deliveries, RetryPolicy
from core.endpoint_url import mask as mask_url
from core.errors import ConfigError
from core.fleet_maintenance import FleetMaintenance
from core.history import ConnectedHistory
from core.journal import Journal, JournalNotifier
from core.leadership import Leadership
from core.metrics import Metrics
from core.notifier import FanoutNotifier, LogNotifier, Notifier
from core.promise import Promises
from core.proxies import ProxyPool
from core.proxy_probe import Destination
from core.runner import Runner
from core.runner_registry import RunnerContext, create_runner
from core.sessions import SessionService
from core.settings import Settings
from core.store import Store
from core.tasks import TaskGroup
from wafleet.event_post import HttpPost
from wafleet.leader_work import LeaderWork, claim_once

if TYPE_CHECKING:
    from bot.app import TelegramBot

log = logging.getLogger("wafleet.serve")
# What every replica's runner sees alike (a lost node) is acted on by one replica, claimed for
# this long: longer than a lost node's grouped alert waits for its sessions to move (60 s).
CLAIM_MS = 180_000


def instance_id(settings: Settings) -> str:
    """Tells this wafleet's workers from another's on the same host or Docker engine."""
    key = f"{settings.redis_url}|{settings.sessions_dir}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def make_runner(
    settings: Settings,
    notifier: Notifier | None = None,
    claim: Callable[[str], Awaitable[bool]] | None = None,
) -> Runner:
    """The runner RUNNER names (``core/runner_registry.py``: built in, or added from
    outside); ``notifier`` gets what only a runner sees (RUNNER=swarm: a lost node), and
    ``claim`` makes one serve replica the one to act on it."""
    context = RunnerContext(settings, instance_id(settings), notifier, claim)
    return create_runner(settings.runner, context)


def make_deliveries(settings: Settings, service: SessionService) -> Deliveries:
    """Incoming messages and receipts to the operator's endpoint: the lanes read
    the service's event log, and POST through the one HTTP client that guards where."""
    post = HttpPost(settings.events_webhook_policy, settings.events_webhook_timeout_ms / 1000)
    deliveries = Deliveries(
        service.operator_events,
        post,
        settings.events_webhook_secret,
        settings.events_webhook_url,
        RetryPolicy(
            base_ms=settings.events_retry_base_ms,
            max_ms=settings.events_retry_max_ms,
            max_attempts=settings.events_max_attempts,
            max_age_ms=settings.events_max_age_ms,
        ),
        service.clock,
        on_close=post.close,
    )
    log.info(
        "events endpoint: %s",
        mask_url(settings.events_webhook_url)
        if settings.events_webhook_url
        else "per session only",
    )
    return deliveries


def make_promises(settings: Settings, store: Store) -> Promises | None:
    """With Redis Sentinel, a 2xx waits for the write to reach a replica (core/promise.py);
    one Redis alone has no replica to wait for, and nothing changes."""
    if not settings.redis_sentinels:
        log.info("Redis: one host (REDIS_URL)")
        return None
    log.info(
        "Redis: via Sentinel (master %r); a promise waits for %d replica(s), %d ms at most",
        settings.redis_sentinel_master,
        settings.redis_wait_replicas,
        settings.redis_wait_ms,
    )
    return Promises(store.redis, settings.redis_wait_replicas, settings.redis_wait_ms)


async def serve(settings: Settings, stop: asyncio.Event | None = None) -> None:
    stop = stop or asyncio.Event()
    try:
        trigger = cron_trigger(settings.backup_cron, get_localzone())
    except ValueError as exc:
        raise ConfigError(f"BACKUP_CRON: {exc}") from None
    try:
        digest_trigger = cron_trigger(settings.digest_cron, get_localzone())
    except ValueError as exc:
        raise ConfigError(f"DIGEST_CRON: {exc}") from None
    # Clean-up runs in reverse order of registration, whatever fails on the way up.
    async with contextlib.AsyncExitStack() as cleanup:
        store = Store(redis_client.connect(settings))
        cleanup.push_async_callback(store.close)
        where = "through REDIS_SENTINELS" if settings.redis_sentinels else "at REDIS_URL"
        try:
            await store.redis.ping()
        except Exception as exc:
            raise ConfigError(f"cannot reach Redis {where} ({type(exc).__name__})") from None
        promises = make_promises(settings, store)
        if promises is not None:
            cleanup.push_async_callback(promises.close)
        settings.sessions_dir.mkdir(parents=True, exist_ok=True)
        journal = Journal(store.redis, SystemClock())  # what the daily digest tells
        notifier = FanoutNotifier(LogNotifier(), JournalNotifier(journal))
        metrics = Metrics()
        destination = Destination.of_workers(settings.wa_driver, settings.simwa_url)
        pool = ProxyPool(
            store, notifier, settings.max_sessions_per_proxy, destination, settings.proxy_policy
        )
        await pool.seed(settings.proxy_urls)
        # Several replicas: one leader (its lease), and notices between them.
        leadership = Leadership(store.redis, settings.replica_id, settings.leader_lease_ms)
        bus = ClusterBus(store.redis, settings.replica_id)
        runner = ClusterRunner(
            make_runner(settings, notifier, claim_once(store.redis, CLAIM_MS)),
            leadership,
            bus,
            settings.worker_stop_grace_ms / 1000,
        )
        cleanup.push_async_callback(runner.close)
        service = SessionService(
            settings, store, pool, runner, notifier, SystemClock(), metrics, journal
        )
        runner.on_foreign_action = service.acted_elsewhere
        maintenance = FleetMaintenance(store.redis, bus, settings.replica_id, service)
        service.claim_maintenance = maintenance.claim
        service.messages.on_wake = lambda sid: bus.post("wake", sessionId=sid)
        bus.on("wake", lambda notice: service.messages.wake_here(str(notice.get("sessionId"))))
        service.operator_events.on_append(lambda sid: bus.post("events", sessionId=sid))
        backups = BackupService(settings, store, service, runner, notifier, SystemClock())
        if (counted := await service.messages.count_fleet_if_new()) is not None:
            log.info("fleet message counts made from the sessions': %s", counted)
        telegram: TelegramBot | None = None
        if not settings.telegram_bot_token:
            log.info("Telegram bot: off (TELEGRAM_BOT_TOKEN is not set)")
        else:
            from bot.app import TelegramBot  # aiogram is loaded only when it is used

            telegram = TelegramBot(
                settings, store.redis, service, pool, backups, journal, promises
            )
            notifier.add(telegram.notifier)
            cleanup.push_async_callback(telegram.close)  # sends what is queued, last
        cluster = Cluster(store.redis, leadership, settings.replica_url, SystemClock())
        app = create_app(settings, store, service, pool, metrics, backups, promises)
        app[CLUSTER] = cluster
        web_runner = JsonErrorRunner(app, access_log=None)
        await web_runner.setup()
        # Reverse order: the site stops taking webhooks first, then the service's tasks go.
        cleanup.push_async_callback(service.close)
        cleanup.push_async_callback(web_runner.cleanup)
        # Before it: waiting long polls answer at once, so the shutdown does not wait them out.
        cleanup.callback(service.commands.close)
        background = TaskGroup()
        cleanup.push_async_callback(background.cancel)
        failed: list[BaseException] = []

        def fail(exc: BaseException) -> None:
            failed.append(exc)
            stop.set()

        history = ConnectedHistory(store.redis, SystemClock())
        work = LeaderWork(
            settings,
            leadership,
            store,
            service,
            pool,
            history,
            lambda: make_deliveries(settings, service),
            telegram,
            fail,
        )
        bus.on("events", lambda notice: work.wake_deliveries(str(notice.get("sessionId"))))
        cluster.settling = work.settling
        # The daily backup and the digest, in the server's time zone (TZ). The scheduler
        # fires on every replica; the leader of the moment claims the run (LeaderWork).
        # The service's own lock keeps a scheduled and a manual backup from overlapping.
        scheduler = AsyncIOScheduler(timezone=get_localzone())
        scheduler.add_job(
            work.scheduled("backup", backups.run_scheduled),
            trigger,
            id="backup",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=3600,
        )
        background.spawn(service.pings.run(), name="ping-flusher")  # PINGs come at once
        background.spawn(bus.run(), name="cluster-bus")
        background.spawn(maintenance.run(), name="fleet-maintenance")
        await history.sample(store)  # the chart's first point, before anyone can ask for it
        site = web.TCPSite(web_runner, settings.http_host, settings.http_port)
        await site.start()
        log.info(
            "wafleet listening on http://%s:%d (runner: %s, replica %s)",
            settings.http_host,
            settings.http_port,
            runner.name,
            settings.replica_id,
        )
        await cluster.beat()
        background.spawn(cluster.run(), name="cluster-heartbeat")
        cleanup.push_async_callback(_quietly, cluster.leave)
        if telegram is not None and telegram.digest is not None:
            scheduler.add_job(
                work.scheduled("digest", telegram.digest.send),
                digest_trigger,
                id="digest",
                max_instances=1,
                coalesce=True,
                misfire_grace_time=3600,
            )
            log.info("daily digest: cron %r (%s)", settings.digest_cron, digest_trigger)
        scheduler.start()
        cleanup.callback(scheduler.shutdown, wait=False)
        log.info("backups: %s, cron %r (%s)", settings.backup_mode, settings.backup_cron, trigger)
        if telegram is not None:
            telegram.start(lead=False)  # polls and sends alerts while this replica leads
            cleanup.push_async_callback(telegram.stop_polling)  # no new commands from here on
            log.info("Telegram bot: on (long polling on the leader)")
        # Last: leader work may start the moment the lease is won. Stopping resigns first,
        # so another replica takes over at once rather than after a whole lease.
        lease = background.spawn(leadership.run(), name="leader-lease")
        cleanup.push_async_callback(_cancel, lease)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        if failed:
            raise failed[0]
        log.info("stopping; workers keep running and are adopted at the next start")
    log.info("stopped")  # every clean-up step ran (a SIGKILL after the grace would not get here)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def _quietly(action: Callable[[], Awaitable[None]]) -> None:
    with contextlib.suppress(Exception):
        await action()
