"""Two copies of one session's worker (a node cut off while Swarm starts a replacement).

On WhatsApp the newer connection of a linked device replaces the older one, which is told
"stream replaced" and must not come back by itself: two copies that both reconnected would
throw each other off forever. The simulated network and the sim driver behave the same way.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from tests.fleet import Fleet, eventually
from wafleet import devstack


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {k.decode(): v.decode() for k, v in pairs}


async def test_a_second_copy_of_a_worker_replaces_the_first_without_a_reconnect_loop(
    fleet: Fleet,
) -> None:
    sid = (await fleet.link())["id"]
    first = fleet.workers()[sid]
    env = _environ(first)
    env.pop("WAFLEET_INSTANCE", None)  # a stray copy: not one of serve's own workers
    copy = devstack.spawn(
        "copy", [sys.executable, "-m", "wafleet", "worker"], fleet.workdir / "copy.log", env
    )
    try:

        async def replaced() -> bool:
            device = await fleet.device(sid)
            return bool(device["replacedCount"] == 1 and device["connected"])

        await eventually(replaced, 15, "the copy replacing the first connection")
        # The replaced worker says why and stays away: no flapping between the two copies.
        await eventually(
            lambda: _has_replaced_event(fleet, sid), 10, "DISCONNECTED stream_replaced"
        )
        for _ in range(30):  # 3 s: the sim driver's reconnect backoff starts well below that
            device = await fleet.device(sid)
            assert device["connected"]
            assert device["connectCount"] == 2, device
            assert device["replacedCount"] == 1, device
            await asyncio.sleep(0.1)
        assert copy.popen.poll() is None  # the copy holds the connection
    finally:
        copy.stop()


async def _has_replaced_event(fleet: Fleet, sid: str, n: int = 1) -> bool:
    events = await fleet.events(sid, "DISCONNECTED")
    replaced = [e for e in events if e.get("data", {}).get("code") == "stream_replaced"]
    return len(replaced) >= n


class HoldingRelay:
    """A loopback relay in front of ``/webhook`` that holds ``DISCONNECTED`` events until
    released: the network delay that makes an old copy's report arrive late. Bodies and
    signature headers pass through untouched, so serve checks them as ever."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.release = asyncio.Event()
        self.held = 0
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/webhook", self._relay)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/webhook"

    async def _relay(self, request: web.Request) -> web.Response:
        body = await request.read()
        if b'"type":"DISCONNECTED"' in body:
            self.held += 1
            await self.release.wait()
        headers = {k: v for k, v in request.headers.items() if k.lower().startswith("x-wafleet")}
        headers["Content-Type"] = "application/json"
        async with (
            aiohttp.ClientSession() as http,
            http.post(self.target, data=body, headers=headers) as answer,
        ):
            return web.Response(status=answer.status, body=await answer.read())

    async def close(self) -> None:
        self.release.set()
        if self._runner is not None:
            await self._runner.cleanup()


async def test_the_replaced_copys_late_disconnect_does_not_mark_the_session_disconnected(
    fleet: Fleet,
) -> None:
    """The old copy's "stream replaced" reaching serve *after* the new copy's CONNECTED.

    Both copies of a Swarm task carry the same environment; only their boot ids differ. The
    old copy here posts through a relay that holds its DISCONNECTED until the newer copy's
    CONNECTED has been applied: that late report is about a connection already superseded,
    and the session stays connected.
    """
    sid = (await fleet.link())["id"]
    env = _environ(fleet.workers()[sid])
    env.pop("WAFLEET_INSTANCE", None)  # stray copies: not serve's own workers
    relay = HoldingRelay(env["WEBHOOK_URL"])
    await relay.start()
    old = devstack.spawn(
        "old",
        [sys.executable, "-m", "wafleet", "worker"],
        fleet.workdir / "old.log",
        {**env, "WEBHOOK_URL": relay.url},
    )
    new: devstack.Proc | None = None
    try:

        async def connects(n: int) -> bool:
            return len(await fleet.events(sid, "CONNECTED")) == n

        # The old copy replaces serve's own worker, and is connected.
        await eventually(lambda: connects(2), 30, "the old copy's CONNECTED")
        await fleet.wait_status(sid, "connected", 30)
        held = relay.held
        new = devstack.spawn(
            "new", [sys.executable, "-m", "wafleet", "worker"], fleet.workdir / "new.log", env
        )
        await eventually(lambda: connects(3), 30, "the new copy's CONNECTED")

        async def old_reported() -> bool:
            return relay.held > held

        await eventually(old_reported, 30, "the old copy's DISCONNECTED at the relay")
        assert (await fleet.status(sid))["status"] == "connected"
        relay.release.set()  # now, late, it reaches serve
        await eventually(
            lambda: _has_replaced_event(fleet, sid, 2), 20, "the old copy's late DISCONNECTED"
        )
        for _ in range(20):  # the late event changed nothing, and stays so
            status = await fleet.status(sid)
            assert status["status"] == "connected", status
            await asyncio.sleep(0.1)
        device = await fleet.device(sid)
        assert device["connected"] and device["connectCount"] == 3, device
        assert "ignoring DISCONNECTED (stream_replaced) from worker boot" in fleet.log()
    finally:
        await relay.close()
        old.stop()
        if new is not None:
            new.stop()


@pytest.mark.parametrize("boot", ["short", 12345678, "boot id with spaces", "x" * 65])
async def test_a_malformed_boot_id_is_refused_before_any_write(fleet: Fleet, boot: object) -> None:
    sid = await fleet.provision_settled()
    before = await fleet.snapshot()
    data = {"reason": "x", "code": "stream_replaced", "bootId": boot}
    payload = {"sessionId": sid, "type": "DISCONNECTED", "data": data, "timestamp": 1}
    status, answer = await fleet.post_webhook(payload)
    assert (status, answer["error"]["code"]) == (400, "invalid_input"), answer
    assert "bootId" in answer["error"]["message"]
    assert await fleet.snapshot() == before
