"""A redis-server of a test's own that keeps every acknowledged write on disk (AOF,
``appendfsync always``) and can be stopped, killed and started again on the same port.

For the tests that take Redis away under a running fleet. A module whose whole fleet should
run on it imports ``redis_server`` and ``redis_client`` from here (they override the
session-wide server of ``conftest.py``); ``aof_redis`` itself is a conftest fixture.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from core.store import Store
from wafleet import devstack


class AofRedis:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = devstack.free_port()
        self.proc: devstack.Proc | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        argv = [devstack.need("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1"]
        argv += ["--appendonly", "yes", "--appendfsync", "always", "--save", ""]
        argv += ["--dir", str(self.folder)]
        self.proc = devstack.spawn("redis", argv, self.folder / "redis.log")
        devstack.wait_port("127.0.0.1", self.port, proc=self.proc.popen)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()


@pytest.fixture
def redis_server(aof_redis: AofRedis) -> str:
    """The module's fleet runs on the server that can be taken away."""
    return aof_redis.url


@pytest.fixture
async def redis_client(redis_server: str) -> AsyncIterator[aioredis.Redis]:
    """The test's own client rides out a restart the way ``serve``'s does."""
    client = Store.connect(redis_server).redis
    yield client
    await client.flushdb()
    await client.aclose()
