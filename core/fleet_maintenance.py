"""A restore's *maintenance*, across ``serve`` replicas.

While one replica replaces the whole fleet (a restore), nothing anywhere may start, move or
delete a worker: operators on every replica get 409 ``busy``, and the leader's watchdog and
crash handling wait. The replica that restores claims ``wafleet:maintenance`` (``SET NX``,
renewed while it lasts, expiring if that replica dies) and tells the others on the cluster
bus; every replica mirrors the key into ``SessionService.maintenance_elsewhere``, which the
service's synchronous checks read. The mirror also looks every second, so a lost notice
costs at most that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

import redis.asyncio as aioredis

from core import keys
from core.cluster_bus import ClusterBus
from core.store import load_script

log = logging.getLogger("wafleet.maintenance")

TTL_MS = 30_000  # a replica that died restoring frees the fleet after this
LOOK_EVERY_S = 1.0


class Mirror(Protocol):
    maintenance_elsewhere: str | None


class FleetMaintenance:
    def __init__(
        self, redis: aioredis.Redis, bus: ClusterBus, serve_id: str, mirror: Mirror
    ) -> None:
        self.redis = redis
        self.bus = bus
        self.serve_id = serve_id
        self.mirror = mirror
        self._held: str | None = None
        self._renewer: asyncio.Task[None] | None = None
        self._poked = asyncio.Event()
        self._renew = redis.register_script(load_script("lease_renew.lua"))
        self._release = redis.register_script(load_script("lease_release.lua"))
        bus.on("maintenance", lambda _notice: self._poked.set())

    async def claim(self, what: str | None) -> bool:
        """``what``: claim the fleet for it (False: another replica holds it). None: give
        back what this replica holds."""
        if what is None:
            held, self._held = self._held, None
            if self._renewer is not None:
                self._renewer.cancel()
                self._renewer = None
            if held is not None:
                with contextlib.suppress(Exception):
                    await self._release(keys=[keys.MAINTENANCE], args=[held])
                self.bus.post("maintenance")
            return True
        value = f"{self.serve_id} {what}"
        if not await self.redis.set(keys.MAINTENANCE, value, nx=True, px=TTL_MS):
            await self.look()
            return False
        self._held = value
        self._renewer = asyncio.create_task(self._keep(value), name="maintenance-renew")
        self.bus.post("maintenance")
        return True

    async def look(self) -> None:
        """Mirror what another replica is doing to the fleet (None: nothing)."""
        raw = await self.redis.get(keys.MAINTENANCE)
        text = None if raw is None else (raw.decode() if isinstance(raw, bytes) else str(raw))
        if text is None or text == self._held:
            self.mirror.maintenance_elsewhere = None
        else:
            self.mirror.maintenance_elsewhere = text.split(" ", 1)[-1] + " (another replica)"

    async def run(self) -> None:
        while True:
            try:
                await self.look()
            except Exception as exc:  # Redis away: keep the last picture
                log.debug("cannot read the fleet's maintenance: %s", type(exc).__name__)
            self._poked.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poked.wait(), LOOK_EVERY_S)

    async def _keep(self, value: str) -> None:
        while True:
            await asyncio.sleep(TTL_MS / 3000)
            try:
                if not await self._renew(keys=[keys.MAINTENANCE], args=[value, TTL_MS]):
                    log.error("the fleet's maintenance claim expired while held")
                    return
            except Exception:
                log.warning("could not renew the fleet's maintenance claim; trying again")
