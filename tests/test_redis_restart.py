"""Redis restarted under a running ``serve``: nothing but 503 while it is down, no 5xx after.

A real redis-server of this module's own, with an append-only file in its data folder, is
stopped and started again on the same port; ``serve`` keeps its pooled connections across.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from core.store import Store
from tests.fleet import Fleet, eventually
from wafleet import devstack


class AofRedis:
    """A redis-server that keeps its data in ``folder`` (AOF) and can be bounced."""

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

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()


@pytest.fixture
def aof_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AofRedis]:
    server = AofRedis(tmp_path_factory.mktemp("aof-redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_server(aof_redis: AofRedis) -> str:
    """The fleet of this module runs on the bounceable server."""
    return aof_redis.url


@pytest.fixture
async def redis_client(redis_server: str) -> AsyncIterator[aioredis.Redis]:
    """The test's own client rides out the bounce the way ``serve``'s does."""
    client = Store.connect(redis_server).redis
    yield client
    await client.flushdb()
    await client.aclose()


async def test_api_answers_503_while_redis_is_down_and_no_5xx_after_restart(
    fleet: Fleet, aof_redis: AofRedis
) -> None:
    sid = (await fleet.provision())["id"]
    await fleet.wait_status(sid, "qr_ready")
    paths = [
        f"/api/sessions/{sid}/status",
        "/api/v1/dashboard/stats",
        "/api/v1/dashboard/sessions",
        "/api/v1/proxies",
        f"/api/sessions/{sid}/events",
    ]
    for path in paths:  # every pooled connection in use before the bounce
        assert (await fleet.call("GET", path))[0] == 200

    aof_redis.stop()
    try:
        for path in paths:
            status, body = await fleet.call("GET", path)
            assert (status, body["error"]["code"]) == (503, "redis_unavailable"), path
        assert "unhandled error" not in fleet.log()
    finally:
        aof_redis.start()
    answers = await asyncio.gather(*(fleet.call("GET", paths[n % len(paths)]) for n in range(50)))
    assert [status for status, _ in answers] == [200] * 50
    assert (await fleet.status(sid))["status"] in ("qr_ready", "pending")

    async def healthy() -> bool:
        status, body = await fleet.call("GET", "/healthz", headers={"X-API-Key": ""})
        return status == 200 and body["ok"]

    await eventually(healthy, what="healthz after the restart")
