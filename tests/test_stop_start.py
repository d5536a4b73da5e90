"""Stop and start without deleting: a stopped session keeps its credentials, proxy, sticky
mapping and queued messages, runs no worker, and the watchdog leaves it alone."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fleet import PHONE, Fleet, eventually
from tests.messaging import FAST, OUTSIDE, message, send, sent_by, wait_message

pytestmark = pytest.mark.asyncio


@pytest.fixture
def fleet_options() -> dict[str, Any]:
    return dict(FAST)


async def test_stop_start_keeps_proxy_credentials_and_queue(fleet: Fleet) -> None:
    linked = await fleet.link()
    sid = linked["id"]
    creds = fleet.sessions_dir / sid / "creds.json"
    assert creds.exists()
    sticky = await fleet.text(f"phone:{PHONE}:proxy")
    status, stopped = await fleet.call("POST", f"/api/sessions/{sid}/stop")
    assert status == 200, stopped
    assert stopped["status"] == "stopped"
    assert stopped["proxy"] == linked["proxy"]
    assert sid not in fleet.workers()

    async def offline() -> bool:
        return not (await fleet.device(sid))["connected"]

    await eventually(offline, what="the device to be offline")
    queued = [(await send(fleet, sid, OUTSIDE, f"waiting {n}"))["id"] for n in range(3)]

    # The watchdog would have restarted a silent session by now; a stopped one stays so.
    timeout_ms = int(fleet.env["PING_TIMEOUT_MS"]) + 3 * int(fleet.env["WATCHDOG_INTERVAL_MS"])

    async def silent_long_enough() -> bool:
        return int((await fleet.status(sid))["lastPingAgeMs"] or 0) > timeout_ms

    await eventually(silent_long_enough, timeout=30, what="a silence past the ping timeout")
    after = await fleet.status(sid)
    assert after["status"] == "stopped"
    assert sid not in fleet.workers()
    assert [(await message(fleet, sid, mid))["status"] for mid in queued] == ["queued"] * 3
    assert await sent_by(fleet, PHONE) == []
    assert creds.exists()
    assert await fleet.text(f"phone:{PHONE}:proxy") == sticky
    assert await fleet.text(f"session:{sid}:proxy") is not None

    qrs_before = len(await fleet.events(sid, "QR_CODE"))
    status, started = await fleet.call("POST", f"/api/sessions/{sid}/start")
    assert status == 200, started
    back = await fleet.wait_status(sid, "connected")
    assert back["proxy"] == linked["proxy"]
    assert len(await fleet.events(sid, "QR_CODE")) == qrs_before  # no new QR
    for mid in queued:
        await wait_message(fleet, sid, mid, {"read"})
    assert sorted(m["text"] for m in await sent_by(fleet, PHONE)) == [
        "waiting 0",
        "waiting 1",
        "waiting 2",
    ]
    assert await fleet.text(f"phone:{PHONE}:proxy") == sticky


async def test_stop_of_an_unknown_session_is_a_404(fleet: Fleet) -> None:
    for action in ("stop", "start"):
        status, answer = await fleet.call("POST", f"/api/sessions/worker_404/{action}")
        assert status == 404, answer
