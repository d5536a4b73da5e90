"""One router per feature; ``get_routers`` builds them afresh, in the order they must be included.

aiogram attaches a router to the one dispatcher that includes it, so a module-level router
could serve a single dispatcher per process: a second (a test, a restart in process) failed.
"""

from __future__ import annotations

from aiogram import Router

from bot.handlers import (
    backups,
    errors,
    keys,
    lang,
    messages,
    nodes,
    proxies,
    sessions,
    start,
    stats,
)


def get_routers() -> list[Router]:
    return [
        errors.build_router(),
        start.build_router(),
        sessions.build_router(),
        messages.build_router(),
        proxies.build_router(),
        stats.build_router(),
        nodes.build_router(),
        backups.build_router(),
        keys.build_router(),
        lang.build_router(),
    ]
