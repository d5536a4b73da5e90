"""Redis restarted under a running ``serve``: nothing but 503 while it is down, no 5xx after.

A real redis-server of this module's own, with an append-only file in its data folder, is
stopped and started again on the same port; ``serve`` keeps its pooled connections across.
"""

from __future__ import annotations

import asyncio

from tests.aof_redis import AofRedis, redis_client, redis_server  # noqa: F401 (fixtures)
from tests.fleet import Fleet, eventually


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
