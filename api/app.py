"""The aiohttp application factory: routes and middlewares, dependencies injected."""

from __future__ import annotations

from aiohttp import web

from api import backups, events, openapi, ops, proxies, sessions, webhook
from api.auth import api_key_middleware
from api.body import path_params_middleware
from api.context import METRICS, POOL, SERVICE, SETTINGS, STORE
from api.errors import error_middleware
from core.backups import BackupService
from core.metrics import Metrics
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
) -> web.Application:
    # Order matters: errors wrap everything; the key is checked before any input is looked at.
    app = web.Application(
        middlewares=[error_middleware, api_key_middleware, path_params_middleware]
    )
    app[SETTINGS] = settings
    app[STORE] = store
    app[SERVICE] = service
    app[POOL] = pool
    app[METRICS] = metrics
    if backup_service is not None:
        app[backups.BACKUPS] = backup_service
    for table in (
        sessions.routes,
        events.routes,
        proxies.routes,
        backups.routes,
        webhook.routes,
        ops.routes,
        openapi.routes,
    ):
        app.router.add_routes(table)
    return app
