"""The aiohttp application factory: routes and middlewares, dependencies injected."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp.typedefs import Handler

from api import (
    api_keys,
    audit_trail,
    backups,
    events,
    media,
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
from api.context import AUDIT, KEYS, METRICS, OWNERS, POOL, RATE, SERVICE, SETTINGS, STORE
from api.errors import error_middleware
from api.promise import PROMISES, promise_middleware
from core.api_keys import ApiKeys
from core.audit import Audit
from core.backups import BackupService
from core.media import Media
from core.messages import run_expiry
from core.metrics import Metrics
from core.owners import Owners
from core.promise import Promises
from core.proxies import ProxyPool
from core.rate_limit import KeyRate
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
    # Order matters: errors wrap everything (a promise not kept is a 503 too); the audit trail
    # sees refusals by the key check and a promise not kept; the key is checked before any
    # input is looked at.
    app = web.Application(
        middlewares=[
            count_requests,
            error_middleware,
            audit_trail.audit_middleware,
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
    app.on_startup.append(_access)
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
        media.routes,
        worker_channel.routes,
        ops.routes,
        api_keys.routes,
        audit_trail.routes,
        openapi.routes,
    ):
        app.router.add_routes(table)
    # Assembled once from the routes: a handler without a declared operation stops here.
    app[openapi.DOCUMENT] = openapi.document(app.router)
    app.cleanup_ctx.append(_message_expiry)
    return app


@web.middleware
async def count_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    """``wafleet_http_requests_total{route}``: one increment, after the answer (refusals too)."""
    try:
        response: web.StreamResponse = await handler(request)
        return response
    finally:
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        request.app[METRICS].requests.labels(route).inc()


async def _access(app: web.Application) -> None:
    """Keys, rates, owners, the audit trail and media, on the app's own Redis client."""
    redis, clock, settings = app[STORE].redis, app[SERVICE].clock, app[SETTINGS]
    app[KEYS] = ApiKeys(redis, clock, settings.key_rotate_grace_s)
    app[RATE] = KeyRate(redis, settings.key_rate_per_s, settings.key_rate_burst)
    app[AUDIT] = Audit(redis, clock, settings.audit_retention_days)
    app[OWNERS] = Owners(redis)
    app[media.MEDIA] = Media.from_settings(settings, redis, clock)


async def _message_expiry(app: web.Application) -> AsyncIterator[None]:
    """Queued messages whose time ran out fail even when their session's worker never asks."""
    task = asyncio.create_task(run_expiry(app[SERVICE].messages), name="message-expiry")
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
