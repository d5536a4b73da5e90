"""The session service in process, on a clock the test moves: the watchdog and crash-loop
parking are decided in fake minutes instead of waited for.

Everything else is real: redis-server, a microsocks proxy, the process runner and its
worker processes (whose pings go nowhere, so only the clock decides what is stale).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal

import pytest
import redis.asyncio as aioredis

from core import session_files
from core.models import Reason, Status
from core.notifier import AlertKind
from core.sessions import CRASH_LIMIT
from core.sessions.crash_counts import CrashCounts
from tests.fleet import PHONE, eventually
from tests.service_rig import ServiceRig

PING_TIMEOUT_S = 60


@pytest.fixture
def rig_env() -> dict[str, str]:
    return {"PING_TIMEOUT_MS": str(PING_TIMEOUT_S * 1000)}


async def test_the_watchdog_restarts_on_the_injected_clock(rig: ServiceRig) -> None:
    sid = (await rig.service.provision(PHONE)).id
    pid = await rig.replaced(sid, None)
    rig.clock.advance(PING_TIMEOUT_S - 1)
    assert await rig.service.check_pings() == []
    assert rig.workers()[sid] == pid
    rig.clock.advance(2)  # no ping for longer than PING_TIMEOUT_MS now
    assert await rig.service.check_pings() == [sid]
    await rig.replaced(sid, pid)
    assert rig.alerts.kinds(sid).count(AlertKind.WATCHDOG_RESTART) == 1
    assert await rig.service.check_pings() == []  # the restart earned a full timeout


async def _crash(rig: ServiceRig, sid: str) -> int:
    """SIGKILL the session's worker; the runner notices the exit by itself."""
    pid = rig.workers()[sid]
    os.kill(pid, signal.SIGKILL)
    return pid


async def test_crashes_spread_over_the_window_are_restarted_every_time(rig: ServiceRig) -> None:
    sid = (await rig.service.provision(PHONE)).id
    await rig.replaced(sid, None)
    for _ in range(CRASH_LIMIT + 2):
        rig.clock.advance(61)  # five minutes never hold more than five of these crashes
        await rig.replaced(sid, await _crash(rig, sid))
    record = await rig.service.get(sid)
    assert (record.status, record.reason) == (Status.PENDING, Reason.CRASHED)
    assert AlertKind.CRASH_LOOP not in rig.alerts.kinds(sid)


async def test_more_than_five_crashes_in_five_minutes_park_the_session(
    rig: ServiceRig, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="wafleet.session"):
        sid = (await rig.service.provision(PHONE)).id
        other = (await rig.service.provision("972509999999")).id
        await rig.replaced(sid, None)
        for _ in range(CRASH_LIMIT):
            rig.clock.advance(50)
            await rig.replaced(sid, await _crash(rig, sid))
        rig.clock.advance(50)  # the sixth crash, 300 s after the first
        await _crash(rig, sid)

        async def parked() -> bool:
            record = await rig.service.get(sid)
            return (record.status, record.reason) == ("failed", "crash_loop")

        await eventually(parked, 10, "the session parked as a crash loop")
    assert sid not in rig.workers()  # and not restarted
    assert rig.alerts.kinds(sid).count(AlertKind.WORKER_CRASHED) == CRASH_LIMIT
    assert rig.alerts.kinds(sid)[-1] == AlertKind.CRASH_LOOP
    rig.clock.advance(3600)  # nothing brings a parked session back by itself
    assert sid not in await rig.service.check_pings()
    assert sid not in rig.workers()
    # one session's story, grepped from its own logger, and only its own
    story = [r.getMessage() for r in caplog.records if r.name == f"wafleet.session.{sid}"]
    assert story[0].startswith("worker started (starting) on socks5h://wa:***@")
    assert story[1].startswith("provisioned on")
    assert sum("exited (code" in line for line in story) == CRASH_LIMIT
    assert "parked as a crash loop" in story[-1]
    assert not any(other in line for line in story)
    assert any(r.name == f"wafleet.session.{other}" for r in caplog.records)


async def test_a_phone_mismatch_alerts_and_moves_the_sticky_keys(rig: ServiceRig) -> None:
    linked = "972509999999"
    record = await rig.service.provision(PHONE)
    await rig.service.handle_event(record.id, "CONNECTED", {"phoneNumber": "+" + linked})
    mismatch = [a for a in rig.alerts.seen if a.kind is AlertKind.PHONE_MISMATCH]
    assert [(a.session_id, a.phone) for a in mismatch] == [(record.id, linked)]
    assert await rig.redis.get(f"session:{record.id}:phone") == linked
    assert await rig.redis.get(f"phone:{linked}:proxy") == record.proxy
    assert await rig.redis.get(f"phone:{linked}:session") == record.id
    assert await rig.redis.smembers(f"phone:{linked}:sessions") == {record.id}
    # the provisioned phone never linked: no sticky keys, no session counted for it
    assert await rig.redis.get(f"phone:{PHONE}:proxy") is None
    assert await rig.redis.get(f"phone:{PHONE}:session") is None
    assert await rig.redis.smembers(f"phone:{PHONE}:sessions") == set()
    folder = session_files.folder(rig.service.settings.sessions_dir, record.id)
    meta = await asyncio.to_thread(session_files.read_meta, folder)
    assert meta is not None and meta["phone"] == linked


async def test_two_replicas_count_one_sessions_crashes_together(
    redis_client: aioredis.Redis,
) -> None:
    """Would have caught: the count held in one process, so a take-over by another replica
    started it from nought and a worker crashing every minute was never parked."""
    leader, successor = CrashCounts(redis_client, 300), CrashCounts(redis_client, 300)
    t = 1_000_000
    assert [await leader.add("worker_7", t + k * 1000) for k in range(3)] == [1, 2, 3]
    assert await successor.add("worker_7", t + 3000) == 4  # after a take-over: the same count
    assert await successor.add("worker_8", t + 3000) == 1  # each session its own
    assert await successor.add("worker_7", t + 302_000) == 3  # the first two left the window
    await leader.clear("worker_7")
    assert await successor.add("worker_7", t + 303_000) == 1
    assert 0 < await redis_client.pttl("wafleet:crashes:worker_7") <= 300_000
