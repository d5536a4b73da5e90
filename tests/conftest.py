"""Fixtures that start the real servers on loopback and always clean up."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

import bot  # noqa: F401  (first: in-process bot tests get aiogram's types deferred, as serve does)
from core.process_runner import ProcessRunner
from core.runner import Runner
from tests.aof_redis import AofRedis
from tests.event_receiver import Receiver
from tests.fleet import API_KEY, WEBHOOK_SECRET, Fleet
from tests.sentinel_redis import SentinelGroup
from tests.service_rig import ServiceRig, service_rig
from wafleet import devstack


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    proc, url = devstack.start_redis(tmp_path_factory.mktemp("redis"))
    yield url
    proc.stop()


@pytest.fixture
def aof_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AofRedis]:
    """A Redis of the test's own that can be bounced (``tests/aof_redis.py``)."""
    server = AofRedis(tmp_path_factory.mktemp("aof-redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def sentinel_group(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelGroup]:
    """A Redis primary, one replica and three Sentinels, settled (``tests/sentinel_redis.py``)."""
    group = SentinelGroup(tmp_path_factory.mktemp("sentinel"))
    try:
        group.start()
        yield group
    finally:
        group.stop()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """The operator's endpoint (``tests/event_receiver.py``), up and answering 200."""
    found = Receiver()
    await found.start()
    yield found
    await found.stop()


@pytest.fixture
async def redis_client(redis_server: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_server, decode_responses=True)
    await client.flushdb()
    yield client
    await client.flushdb()
    await client.aclose()


def fleet_env(
    workdir: Path, redis_url: str, proxies: list[devstack.Proxy], simwa_port: int, **overrides: str
) -> dict[str, str]:
    env = devstack.serve_env(workdir, redis_url, proxies, simwa_port, API_KEY, WEBHOOK_SECRET)
    env |= {
        "WATCHDOG_INTERVAL_MS": "500",
        "PING_TIMEOUT_MS": "4000",
        "WORKER_PRESENCE_INTERVAL_MS": "400",
        "WORKER_SELF_MESSAGE_INTERVAL_MS": "1000",
        "PROXY_PROBE_INTERVAL_MS": "300",
        "WORKER_STOP_GRACE_MS": "2000",
        "LOG_LEVEL": "DEBUG",
    }
    env.update(overrides)
    return env


@pytest.fixture
def fleet_options() -> dict[str, Any]:
    """Override in a test module (or with indirect parametrisation) to shape the fleet."""
    return {}


@pytest.fixture
async def fleet(
    tmp_path: Path, redis_server: str, redis_client: aioredis.Redis, fleet_options: dict[str, Any]
) -> AsyncIterator[Fleet]:
    options = dict(fleet_options)
    n_proxies = options.pop("proxies", 2)
    timings = options.pop("simwa", {})
    start = options.pop("start", True)
    procs: list[devstack.Proc] = []
    proxies = [devstack.start_proxy(tmp_path, n) for n in range(1, n_proxies + 1)]
    simwa, simwa_port = devstack.start_simwa(tmp_path, **timings)
    procs.append(simwa)
    env = fleet_env(tmp_path, redis_server, proxies, simwa_port, **options)
    async with aiohttp.ClientSession() as http:
        fleet = Fleet(tmp_path, redis_server, proxies, simwa_port, env, http, redis_client)
        try:
            if start:
                fleet.start()
            yield fleet
        finally:
            fleet.stop()
            fleet.kill_workers()
            for proxy in proxies:
                proxy.proc.kill()
            for proc in procs:
                proc.stop()


@pytest.fixture
def rig_env() -> dict[str, str]:
    """Settings a test module gives its in-process ``rig`` over the rig's own."""
    return {}


@pytest.fixture
def rig_runner() -> Callable[[ProcessRunner], Runner]:
    """How a test module wraps the rig's process runner (by default, it does not)."""
    return lambda runner: runner


@pytest.fixture
async def rig(
    tmp_path: Path,
    redis_client: aioredis.Redis,
    redis_server: str,
    rig_env: dict[str, str],
    rig_runner: Callable[[ProcessRunner], Runner],
) -> AsyncIterator[ServiceRig]:
    """The session service in this process over real parts (``tests/service_rig.py``)."""
    async with service_rig(tmp_path, redis_client, redis_server, rig_env, rig_runner) as made:
        yield made
