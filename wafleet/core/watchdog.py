"""Flow 2's watchdog: a loop around ``SessionService.check_pings``.

Exits are noticed by the runner the moment they happen; the watchdog is for workers that
are alive but stuck (frozen, deadlocked, wedged on a dead socket) and so stop pinging.
"""

from __future__ import annotations

import asyncio
import logging

from wafleet.core.sessions import SessionService

log = logging.getLogger("wafleet.watchdog")


async def run_watchdog(service: SessionService, interval_s: float) -> None:
    while True:
        await asyncio.sleep(interval_s)
        try:
            restarted = await service.check_pings()
            if restarted:
                log.warning("watchdog restarted %s", ", ".join(restarted))
        except Exception:
            log.exception("watchdog pass failed")
