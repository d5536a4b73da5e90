"""The proxy pool: seeding, run-time add/remove, ``bad`` marking and the recovery probe.

Slot accounting itself lives in the store's Lua scripts; this service owns the health of
proxies and tells the operator when a proxy dies, comes back, or capacity runs low.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from core import fleet_stats, keys
from core.errors import Conflict, NotFound
from core.fleet_stats import FleetStats
from core.models import ProxyRecord, ProxyStatus
from core.notifier import Alert, AlertKind, Done, Notifier
from core.proxy_policy import ProxyPolicy
from core.proxy_probe import Destination, probe
from core.proxy_url import ProxyUrl, mask, parse_input
from core.store import Store
from core.tasks import every

log = logging.getLogger("wafleet.proxies")

RecoveredCallback = Callable[[], Awaitable[None]]


class ProxyPool:
    def __init__(
        self,
        store: Store,
        notifier: Notifier,
        cap: int,
        destination: Destination | None = None,
        policy: ProxyPolicy | None = None,
    ) -> None:
        self.store = store
        self.policy = policy or ProxyPolicy()  # where an added proxy may point (PROXY_*_NETWORKS)
        self.notifier = notifier
        self.cap = cap
        # Where the workers go; a proxy that cannot reach it fails the probe.
        self.destination = destination
        self._recovered: list[RecoveredCallback] = []

    def on_recovered(self, callback: RecoveredCallback) -> None:
        """Called after a proxy returns or is added: parked sessions may now get a slot."""
        self._recovered.append(callback)

    async def seed(self, urls: tuple[ProxyUrl, ...]) -> None:
        for url in urls:
            await self.store.add_proxy(url.url)

    async def all_proxies(self) -> list[ProxyRecord]:
        return await self.store.proxies()

    async def add(self, url: str) -> bool:
        added = await self.store.add_proxy(url)
        if added:
            log.info("proxy %s added to the pool", mask(url))
            for callback in self._recovered:
                await callback()
        return added

    async def add_from_input(self, raw: object) -> ProxyRecord:
        url = parse_input(raw, "url", self.policy)
        if not await self.add(url.url):
            raise Conflict(f"{url.masked} is already in the pool")
        return await self.get(url.id)

    async def get(self, proxy_id: str) -> ProxyRecord:
        for record in await self.store.proxies():
            if ProxyUrl.parse(record.url).id == proxy_id:
                return record
        raise NotFound(f"no proxy {proxy_id!r}")

    async def remove(self, url: str) -> None:
        result = await self.store.remove_proxy(url)
        if result == 0:
            raise NotFound(f"no proxy {mask(url)}")
        if result < 0:
            raise Conflict(
                f"{mask(url)} still carries {-result} session(s): delete or move them first"
            )
        log.info("proxy %s removed from the pool", mask(url))

    async def probe(self, url: str) -> str | None:
        return await probe(ProxyUrl.parse(url), self.destination)

    async def mark_bad(self, url: str, why: str) -> None:
        if await self.store.set_proxy_status(url, ProxyStatus.BAD):
            log.warning("proxy %s marked bad: %s", mask(url), why)

    async def probe_bad(self) -> list[str]:
        """One pass of the recovery probe: bad proxies that answer go back to the pool."""
        recovered = []
        for record in await self.store.proxies():
            if record.status != ProxyStatus.BAD or await self.probe(record.url) is not None:
                continue
            if await self.store.set_proxy_status(record.url, ProxyStatus.ACTIVE):
                recovered.append(record.url)
                log.info("proxy %s answers again: back in the pool", mask(record.url))
                await self.notifier.notify(
                    Alert(
                        AlertKind.PROXY_RECOVERED,
                        proxy=mask(record.url),
                        done=Done.RETURNED_TO_POOL,
                    )
                )
        if recovered:
            for callback in self._recovered:
                await callback()
        return recovered

    async def run_prober(self, interval_s: float) -> None:
        await every(interval_s, self.probe_bad, "proxy probe pass")

    async def free_slots(self) -> tuple[int, int]:
        """(free, total) slots over the active proxies."""
        return fleet_stats.capacity(await self.store.proxies(), self.cap)

    async def stats(self) -> FleetStats:
        """The one fleet count that REST, ``/metrics`` and the chat all show."""
        return await fleet_stats.read(self.store, self.cap)

    async def check_capacity(self) -> None:
        """Warn once when fewer than one proxy's worth of slots is left; re-arm when it grows."""
        free, total = await self.free_slots()
        low = free < self.cap
        # "Said already" lives in Redis: several serve replicas say it once between them.
        if low:
            first = await self.store.redis.set(keys.CAPACITY_LOW_SAID, 1, nx=True)
            if first:
                await self.notifier.notify(
                    Alert(
                        AlertKind.CAPACITY_LOW,
                        facts={"free": free, "total": total},
                        done=Done.ADD_PROXY_SOON,
                    )
                )
        else:
            await self.store.redis.delete(keys.CAPACITY_LOW_SAID)
