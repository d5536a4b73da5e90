"""The watchdog: a loop around ``SessionService.check_pings``.

Exits are noticed by the runner the moment they happen; the watchdog is for workers that
are alive but stuck (frozen, deadlocked, wedged on a dead socket) and so stop pinging.
"""

from __future__ import annotations

import logging

from core.sessions import SessionService
from core.tasks import every

log = logging.getLogger("wafleet.watchdog")


async def run_watchdog(service: SessionService, interval_s: float) -> None:
    async def one_pass() -> None:
        restarted = await service.check_pings()
        if restarted:
            log.warning("watchdog restarted %s", ", ".join(restarted))

    await every(interval_s, one_pass, "watchdog pass")
