"""The orchestrator's proxy probe goes through the proxy to where the workers go.

Real microsocks proxies on loopback; the destination is a listener of this test on 127.0.0.1,
or a loopback port with nothing listening (what a proxy that cannot reach WhatsApp answers).
The last test runs a whole ``serve`` whose ``SIMWA_URL`` names such a port.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from core.models import ProxyStatus
from core.notifier import LogNotifier
from core.proxies import ProxyPool
from core.proxy_probe import WHATSAPP, Destination, probe
from core.proxy_url import ProxyUrl
from core.store import Store
from tests.fleet import Fleet, eventually
from wafleet import devstack


class Listener:
    """A destination that counts the connections the proxy opens to it."""

    def __init__(self) -> None:
        self.accepted = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> Destination:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return Destination("127.0.0.1", int(self.server.sockets[0].getsockname()[1]))

    def _accept(self, _: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        writer.close()


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[devstack.Proxy]:
    started = devstack.start_proxy(tmp_path, 1)
    yield started
    started.proc.kill()


@pytest.fixture
async def listener() -> AsyncIterator[tuple[Listener, Destination]]:
    found = Listener()
    destination = await found.start()
    yield found, destination
    assert found.server is not None
    found.server.close()


def _nobody_listens() -> Destination:
    return Destination("127.0.0.1", devstack.free_port())


async def test_a_proxy_that_cannot_reach_the_destination_fails_the_probe(
    proxy: devstack.Proxy, listener: tuple[Listener, Destination]
) -> None:
    url = ProxyUrl.parse(proxy.url)
    heard, reachable = listener
    assert await probe(url, reachable) is None
    assert heard.accepted == 1  # the CONNECT really went through the proxy
    dead = _nobody_listens()
    assert await probe(url, dead) == (
        f"cannot reach 127.0.0.1:{dead.port} through it (connection refused by the destination)"
    )
    assert await probe(url) is None  # the handshake alone still passes: that was the blind spot
    wrong = ProxyUrl.parse(proxy.url.replace(proxy.password, "wrong-password"))
    assert await probe(wrong, reachable) == "authentication failure"
    assert heard.accepted == 1


async def test_a_bad_proxy_returns_only_when_it_reaches_the_destination(
    proxy: devstack.Proxy,
    listener: tuple[Listener, Destination],
    redis_client: aioredis.Redis,
) -> None:
    store = Store(redis_client)
    await store.add_proxy(proxy.url)
    await store.set_proxy_status(proxy.url, ProxyStatus.BAD)

    blind = ProxyPool(store, LogNotifier(), 4, _nobody_listens())
    assert await blind.probe_bad() == []
    assert await store.proxy_status(proxy.url) == ProxyStatus.BAD
    assert await blind.probe(proxy.url) is not None  # a worker's PROXY_ERROR is confirmed

    _, reachable = listener
    seeing = ProxyPool(store, LogNotifier(), 4, reachable)
    assert await seeing.probe_bad() == [proxy.url]
    assert await store.proxy_status(proxy.url) == ProxyStatus.ACTIVE


def test_the_destination_is_where_the_workers_go() -> None:
    sim = Destination.of_workers("sim", "ws://localhost:8765/ws")
    assert (sim.host, sim.port) == ("localhost", 8765)
    real = Destination.of_workers("neonize", "ws://localhost:8765/ws")
    assert (real.host, real.port) == WHATSAPP == ("web.whatsapp.com", 443)


@pytest.fixture
def network_port() -> int:
    """The simulated network's port, with nothing listening until a test opens it."""
    return devstack.free_port()


@pytest.fixture
def fleet_options(network_port: int) -> dict[str, Any]:
    return {"SIMWA_URL": f"ws://localhost:{network_port}/ws"}


async def test_serve_fails_over_a_proxy_that_shakes_hands_but_cannot_reach_the_network(
    fleet: Fleet, network_port: int
) -> None:
    sid = (await fleet.provision())["id"]
    old = str(await fleet.redis.get(f"session:{sid}:proxy"))
    report = {
        "sessionId": sid,
        "type": "PROXY_ERROR",
        "data": {"error": "proxy timed out", "proxyId": ProxyUrl.parse(old).id},
        "timestamp": time.time_ns() // 1_000_000,
        "id": uuid.uuid4().hex,
    }
    assert (await fleet.post_webhook(report))[0] == 200

    async def moved() -> str | None:
        status, proxy = await fleet.redis.mget(f"proxy:{old}:status", f"session:{sid}:proxy")
        return str(proxy) if status == "bad" and proxy != old else None

    new = await eventually(moved, what="the proxy marked bad and the session moved off it")
    assert new in {p.url for p in fleet.proxies} - {old}

    # The network answers again: the recovery probe, through the proxy, returns it.
    heard = Listener()
    heard.server = await asyncio.start_server(heard._accept, "127.0.0.1", network_port)
    try:

        async def back() -> bool:
            return await fleet.redis.get(f"proxy:{old}:status") == "active"

        await eventually(back, what="the proxy back in the pool")
        assert heard.accepted >= 1
    finally:
        heard.server.close()
