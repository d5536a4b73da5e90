"""Two copies of one session's worker (a node cut off while Swarm starts a replacement).

On WhatsApp the newer connection of a linked device replaces the older one, which is told
"stream replaced" and must not come back by itself: two copies that both reconnected would
throw each other off forever. The simulated network and the sim driver behave the same way.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

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


async def _has_replaced_event(fleet: Fleet, sid: str) -> bool:
    events = await fleet.events(sid, "DISCONNECTED")
    return any(e.get("data", {}).get("code") == "stream_replaced" for e in events)
