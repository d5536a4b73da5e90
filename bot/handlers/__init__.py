"""One router per feature; ``get_routers`` gives them in the order they must be included."""

from __future__ import annotations

from aiogram import Router

from bot.handlers import backups, errors, lang, proxies, sessions, start, stats


def get_routers() -> list[Router]:
    return [
        errors.router,
        start.router,
        sessions.router,
        proxies.router,
        stats.router,
        backups.router,
        lang.router,
    ]
