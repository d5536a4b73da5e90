"""The session service in this process, over real parts: redis-server, one microsocks proxy,
the process runner and its ``wafleet worker`` processes, and a clock the test moves.

No ``serve`` and no HTTP: the workers' events go nowhere, so what the service decides is the
test's to drive (the watchdog on the clock, a reconcile, a bulk start). ``tests/conftest.py``
makes it the ``rig`` fixture; a test module sets what differs with two fixtures of its own:
``rig_env`` (settings over the ones below) and ``rig_runner`` (wraps the process runner, e.g.
to record every start).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import redis.asyncio as aioredis

from core.clock import ManualClock
from core.metrics import Metrics
from core.notifier import Alert, AlertKind
from core.process_runner import ProcessRunner, find_workers
from core.proxies import ProxyPool
from core.runner import Runner
from core.sessions import SessionService
from core.settings import Settings
from core.store import Store
from tests.fleet import API_KEY, WEBHOOK_SECRET, eventually
from wafleet import devstack


@dataclass
class Alerts:
    """The notifier: every alert the service raised, in order."""

    seen: list[Alert] = field(default_factory=list)

    async def notify(self, alert: Alert) -> None:
        self.seen.append(alert)

    def kinds(self, session_id: str) -> list[AlertKind]:
        return [a.kind for a in self.seen if a.session_id == session_id]


@dataclass
class ServiceRig:
    service: SessionService
    runner: Runner  # what the service drives: the process runner, or the module's wrapper
    clock: ManualClock
    alerts: Alerts
    store: Store
    redis: aioredis.Redis
    settings: Settings
    instance: str

    def workers(self) -> dict[str, int]:
        return find_workers(self.instance)

    async def replaced(self, sid: str, old: int | None) -> int:
        """The pid of ``sid``'s worker once it is another than ``old``."""

        async def new_pid() -> int | None:
            pid = self.workers().get(sid)
            return pid if pid not in (None, old) else None

        return await eventually(new_pid, 10, f"a new worker for {sid}")


@asynccontextmanager
async def service_rig(
    tmp_path: Path,
    redis_client: aioredis.Redis,
    redis_url: str,
    env: dict[str, str],
    wrap: Callable[[ProcessRunner], Runner],
) -> AsyncIterator[ServiceRig]:
    proxy = devstack.start_proxy(tmp_path, 1)
    settings = Settings.from_env(
        {
            "API_KEY": API_KEY,
            "WEBHOOK_SECRET": WEBHOOK_SECRET,
            "REDIS_URL": redis_url,
            "SESSIONS_DIR": str(tmp_path / "sessions"),
            "BACKUPS_DIR": str(tmp_path / "backups"),
            # Nothing listens on either: the workers run and retry, and their pings go nowhere.
            "HTTP_HOST": "127.0.0.1",
            "HTTP_PORT": str(devstack.free_port()),
            "SIMWA_URL": f"ws://localhost:{devstack.free_port()}/ws",
            "WORKER_STOP_GRACE_MS": "1000",
            "PROXY_URL_1": proxy.url,
        }
        | env
    )
    store = Store(redis_client)
    alerts = Alerts()
    pool = ProxyPool(store, alerts, settings.max_sessions_per_proxy)
    await pool.seed(settings.proxy_urls)
    instance = f"test-{os.getpid()}-{tmp_path.name}"
    inner = ProcessRunner(instance, stop_grace_s=1.0)
    runner = wrap(inner)
    clock = ManualClock()
    service = SessionService(settings, store, pool, runner, alerts, clock, Metrics())
    try:
        yield ServiceRig(service, runner, clock, alerts, store, redis_client, settings, instance)
    finally:
        await asyncio.gather(*(inner.stop(sid) for sid in find_workers(instance)))
        await service.close()
        await inner.close()
        proxy.proc.kill()
