"""Two copies of one session's worker (a node cut off while Swarm starts a replacement).

On WhatsApp the newer connection of a linked device replaces the older one, which is told
"stream replaced" and must not come back by itself: two copies that both reconnected would
throw each other off forever. The simulated network and the sim driver behave the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path

import pytest

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


# The first worker is frozen for seconds (simwa waits for its close handshake): the watchdog
# must not restart it meanwhile, or the story is another one.
@pytest.mark.parametrize("fleet_options", [{"PING_TIMEOUT_MS": "60000"}])
async def test_the_replaced_copys_late_disconnect_does_not_mark_the_session_disconnected(
    fleet: Fleet,
) -> None:
    """The old copy's "stream replaced" reaching serve *after* the new copy's CONNECTED.

    Both copies of a Swarm task carry the same environment; only their boot ids differ. The
    first worker is frozen (SIGSTOP) while the copy connects, so it reads its "replaced" and
    reports it only once the copy's CONNECTED has been applied: that late DISCONNECTED is
    about a connection already superseded, and the session stays connected.
    """
    sid = (await fleet.link())["id"]
    first = fleet.workers()[sid]
    env = _environ(first)
    env.pop("WAFLEET_INSTANCE", None)
    os.kill(first, signal.SIGSTOP)
    copy = devstack.spawn(
        "copy", [sys.executable, "-m", "wafleet", "worker"], fleet.workdir / "copy.log", env
    )
    try:

        async def copy_connected() -> bool:
            device = await fleet.device(sid)
            return bool(
                device["replacedCount"] == 1
                and device["connected"]
                and len(await fleet.events(sid, "CONNECTED")) == 2
            )

        # simwa waits for the frozen worker's close handshake (up to 10 s) before it
        # answers the copy, so this takes a while.
        await eventually(copy_connected, 40, "the copy's CONNECTED applied")
        assert (await fleet.status(sid))["status"] == "connected"
        os.kill(first, signal.SIGCONT)  # now the old copy learns it was replaced
        await eventually(
            lambda: _has_replaced_event(fleet, sid), 20, "the old copy's late DISCONNECTED"
        )
        for _ in range(20):  # the late event changed nothing, and stays so
            status = await fleet.status(sid)
            assert status["status"] == "connected", status
            await asyncio.sleep(0.1)
        assert (await fleet.device(sid))["connected"]
        assert "ignoring DISCONNECTED (stream_replaced) from worker boot" in fleet.log()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(first, signal.SIGCONT)
        copy.stop()


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
