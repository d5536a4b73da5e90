"""The aiohttp application factory: routes and middlewares, dependencies injected."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web

from api import (
    backups,
    events,
    messages,
    openapi,
    ops,
    proxies,
    sessions,
    webhook,
    worker_channel,
)
from api.auth import api_key_middleware
from api.body import path_params_middleware
from api.context import METRICS, POOL, SERVICE, SETTINGS, STORE
from api.errors import error_middleware
from api.promise import PROMISES, promise_middleware
from core.backups import BackupService
from core.messages import run_expiry
from core.metrics import Metrics
from core.promise import Promises
from core.proxies import ProxyPool
from core.sessions import SessionService
from core.settings import Settings
from core.store import Store


def create_app(
    settings: Settings,
    store: Store,
    service: SessionService,
    pool: ProxyPool,
    metrics: Metrics,
    backup_service: BackupService | None = None,
    promises: Promises | None = None,
) -> web.Application:
    """``promises``: with Redis Sentinel, every 2xx to a write waits for a replica."""
    # Order matters: errors wrap everything (a promise not kept is a 503 too); the key is
    # checked before any input is looked at.
    app = web.Application(
        middlewares=[
            error_middleware,
            promise_middleware,
            api_key_middleware,
            path_params_middleware,
        ]
    )
    app[SETTINGS] = settings
    app[STORE] = store
    app[SERVICE] = service
    app[POOL] = pool
    app[METRICS] = metrics
    if backup_service is not None:
        app[backups.BACKUPS] = backup_service
    if promises is not None:
        app[PROMISES] = promises
    for table in (
        sessions.routes,
        events.routes,
        proxies.routes,
        backups.routes,
        webhook.routes,
        messages.routes,
        worker_channel.routes,
        ops.routes,
        openapi.routes,
    ):
        app.router.add_routes(table)
    # Assembled once from the routes: a handler without a declared operation stops here.
    app[openapi.DOCUMENT] = openapi.document(app.router)
    app.cleanup_ctx.append(_message_expiry)
    return app


async def _message_expiry(app: web.Application) -> AsyncIterator[None]:
    """Queued messages whose time ran out fail even when their session's worker never asks."""
    task = asyncio.create_task(run_expiry(app[SERVICE].messages), name="message-expiry")
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
