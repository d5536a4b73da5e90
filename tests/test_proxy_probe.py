"""The orchestrator's proxy probe goes through the proxy to where the workers go.

Real microsocks proxies on loopback; the destination is a listener of this test on 127.0.0.1,
or a loopback port with nothing listening (what a proxy that cannot reach WhatsApp answers).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from core.models import ProxyStatus
from core.notifier import LogNotifier
from core.proxies import ProxyPool
from core.proxy_probe import WHATSAPP, Destination, probe
from core.proxy_url import ProxyUrl
from core.store import Store
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
