"""The fleet in numbers, counted once for REST's dashboard, ``/metrics`` and the chat's ``/stats``.

Three readers used to count on their own and could disagree (the chat counted every proxy
that is not active as bad, REST only the ones marked bad); one function keeps them telling
the operator the same story.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, replace

from core.models import ProxyRecord, ProxyStatus, Status
from core.proxy_url import ProxyUrl
from core.runner import NodeInfo, Runner
from core.store import Store

log = logging.getLogger("wafleet.stats")


@dataclass(frozen=True)
class ProxyLoad:
    """One proxy as a dashboard may name it: by its id, never by its URL."""

    id: str
    status: ProxyStatus
    sessions: int


@dataclass(frozen=True)
class FleetStats:
    by_status: dict[str, int]  # every session status, zeros included
    proxies: list[ProxyLoad]
    free_slots: int
    total_slots: int
    # Where the workers run (``with_nodes``); empty when not asked for or the runner cannot
    # say (its engine unreachable): the counts above never depend on it.
    nodes: tuple[NodeInfo, ...] = ()

    @property
    def sessions(self) -> int:
        return sum(self.by_status.values())

    @property
    def proxies_active(self) -> int:
        return sum(p.status == ProxyStatus.ACTIVE for p in self.proxies)

    @property
    def proxies_bad(self) -> int:
        return sum(p.status == ProxyStatus.BAD for p in self.proxies)


def capacity(proxies: list[ProxyRecord], cap: int) -> tuple[int, int]:
    """(free, total) slots over the active proxies; a bad proxy offers none."""
    active = [p for p in proxies if p.status == ProxyStatus.ACTIVE]
    total = cap * len(active)
    return total - sum(min(p.sessions, cap) for p in active), total


async def read(store: Store, cap: int) -> FleetStats:
    """The counts without reading a single session record: Redis counts the statuses
    (``Store.status_counts``), which is what keeps stats and ``/metrics`` fast at 10,000."""
    proxies = await store.proxies()
    free, total = capacity(proxies, cap)
    loads = [ProxyLoad(proxy_id(p.url), p.status, p.sessions) for p in proxies]
    by_status = {s.value: 0 for s in Status} | await store.status_counts()
    return FleetStats(by_status, loads, free, total)


@functools.lru_cache(maxsize=16_384)
def proxy_id(url: str) -> str:
    """A proxy's id, remembered: parsing 2,500 URLs was half of what stats and ``/metrics``
    cost at 10,000 sessions, and a URL's id never changes."""
    return ProxyUrl.parse(url).id


async def with_nodes(stats: FleetStats, runner: Runner) -> FleetStats:
    """``stats`` with the runner's nodes and the sessions on each.

    The nodes come from the runner (a Docker call with ``RUNNER=swarm``): one that cannot be
    read leaves ``nodes`` empty instead of failing the whole dashboard.
    """
    try:
        nodes = await runner.nodes()
    except Exception as exc:
        log.warning("cannot list the runner's nodes: %s", type(exc).__name__)
        return stats
    return replace(stats, nodes=tuple(nodes))
