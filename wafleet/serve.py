"""``wafleet serve``: the composition root. Builds every part, injects them, runs them.

Start order matters: the reconcile first (so no request races it; adopted workers buffer
their events and resend them), then HTTP, the watchdog and the prober. Stopping leaves
every worker running, so a restart of ``serve`` loses no session.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import signal

from aiohttp import web

from wafleet.api.app import create_app
from wafleet.core.clock import SystemClock
from wafleet.core.errors import ConfigError
from wafleet.core.metrics import Metrics
from wafleet.core.notifier import FanoutNotifier, LogNotifier
from wafleet.core.process_runner import ProcessRunner
from wafleet.core.proxies import ProxyPool
from wafleet.core.runner import Runner
from wafleet.core.sessions import SessionService
from wafleet.core.settings import Settings
from wafleet.core.store import Store
from wafleet.core.tasks import TaskGroup
from wafleet.core.watchdog import run_watchdog

log = logging.getLogger("wafleet.serve")


def instance_id(settings: Settings) -> str:
    """Tells this wafleet's workers from another's on the same host or Docker engine."""
    key = f"{settings.redis_url}|{settings.sessions_dir}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def make_runner(settings: Settings) -> Runner:
    grace = settings.worker_stop_grace_ms / 1000
    if settings.runner == "docker":
        from wafleet.core.docker_runner import DockerRunner

        return DockerRunner(
            instance=instance_id(settings),
            image=settings.worker_image,
            network=settings.worker_network,
            stop_grace_s=grace,
        )
    return ProcessRunner(instance_id(settings), stop_grace_s=grace)


async def serve(settings: Settings, stop: asyncio.Event | None = None) -> None:
    stop = stop or asyncio.Event()
    store = Store.connect(settings.redis_url)
    try:
        await store.redis.ping()
    except Exception as exc:
        await store.close()
        raise ConfigError(f"cannot reach Redis at REDIS_URL ({type(exc).__name__})") from None
    settings.sessions_dir.mkdir(parents=True, exist_ok=True)
    notifier = FanoutNotifier(LogNotifier())
    metrics = Metrics()
    pool = ProxyPool(store, notifier, settings.max_sessions_per_proxy)
    await pool.seed(settings.proxy_urls)
    runner = make_runner(settings)
    service = SessionService(settings, store, pool, runner, notifier, SystemClock(), metrics)
    app = create_app(settings, store, service, pool, metrics)
    web_runner = web.AppRunner(app, access_log=None)
    await web_runner.setup()
    if not settings.telegram_bot_token:
        log.info("Telegram bot: off (TELEGRAM_BOT_TOKEN is not set)")
    else:
        log.warning("Telegram bot: not part of this build yet; alerts go to the log")
    background = TaskGroup()
    try:
        # Reconcile before taking requests, so a provision cannot race the adoption pass.
        # Adopted workers buffer their events meanwhile and resend them.
        await service.reconcile()
        site = web.TCPSite(web_runner, settings.http_host, settings.http_port)
        await site.start()
        log.info(
            "wafleet listening on http://%s:%d (runner: %s)",
            settings.http_host,
            settings.http_port,
            runner.name,
        )
        background.spawn(
            run_watchdog(service, settings.watchdog_interval_ms / 1000), name="watchdog"
        )
        background.spawn(
            pool.run_prober(settings.proxy_probe_interval_ms / 1000), name="proxy-prober"
        )
        background.spawn(service.pings.run(), name="ping-flusher")
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("stopping; workers keep running and are adopted at the next start")
    finally:
        await background.cancel()
        await service.close()
        await web_runner.cleanup()
        await runner.close()
        await store.close()
