"""Careful sending: the operator's limits hold under a burst, and nothing is dropped.

The limits are decided in Redis by ``message_take.lua`` with the service's clock, so the
minute and day windows are checked here on a ``ManualClock`` against a real Redis (real
minutes would make a test of hours); the last test shows the same limit at the simulated
network with a real fleet.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
import redis.asyncio as aioredis

from core.clock import ManualClock
from core.messages import MessageService
from core.settings import Settings
from core.store import Store
from tests.fleet import PHONE, Fleet, eventually
from tests.messaging import FAST, OUTSIDE, message, send, sent_by

pytestmark = pytest.mark.asyncio
SID = "worker_1"
MINUTE, DAY = 60_000, 86_400_000


def settings(**overrides: Any) -> Settings:
    base = Settings(api_key="k" * 20, webhook_secret="s" * 20, redis_url="redis://unused")
    quiet = {
        "messages_per_minute": 0,
        "messages_per_day": 0,
        "message_warmup_days": 0,
        "message_pause_min_ms": 0,
        "message_pause_max_ms": 0,
    }
    return replace(base, **(quiet | overrides))


async def service(
    redis_client: aioredis.Redis, clock: ManualClock, **overrides: Any
) -> MessageService:
    await redis_client.set(f"session:{SID}:status", "connected")
    await redis_client.set(f"session:{SID}:created", clock.now_ms())
    return MessageService(Store(redis_client), settings(**overrides), clock)


async def drain(messages: MessageService, clock: ManualClock, count: int) -> list[int]:
    """Play the worker: take what serve hands out, report it sent, and let time pass as
    long as serve says it must; the times (ms) at which each message was handed out."""
    handed: list[int] = []
    for _ in range(10_000):
        if len(handed) == count:
            break
        commands, wait_ms = await messages.take(SID)
        for command in commands:
            handed.append(clock.now_ms())
            assert await messages.update(SID, command["id"], "sent", None, ack=True)
        if not commands:
            assert wait_ms > 0, "messages are queued, so serve must say when the next may go"
            clock.advance(wait_ms / 1000)
    return handed


async def test_a_burst_keeps_to_the_per_minute_limit_and_none_is_dropped(
    redis_client: aioredis.Redis,
) -> None:
    clock = ManualClock()
    messages = await service(redis_client, clock)
    await messages.set_limits(SID, {"perMinute": 3})
    accepted = [(await messages.accept(SID, OUTSIDE, f"m{n}"))[0].id for n in range(20)]
    handed = await drain(messages, clock, 20)
    assert len(handed) == 20
    for start in handed:
        assert sum(start <= t < start + MINUTE for t in handed) <= 3
    assert handed[-1] - handed[0] >= 6 * MINUTE  # 20 at 3 a minute: at least 6 minutes
    statuses = [(await messages.get(SID, mid)).status for mid in accepted]
    assert statuses == ["sent"] * 20
    assert (await messages.counts(SID)).sent == 20


async def test_a_new_number_warms_up_within_its_daily_limit(
    redis_client: aioredis.Redis,
) -> None:
    clock = ManualClock()
    messages = await service(redis_client, clock, message_ttl_s=10 * 86_400)
    await messages.set_limits(SID, {"perDay": 10, "warmupDays": 5})
    for n in range(12):
        await messages.accept(SID, OUTSIDE, f"m{n}")
    handed = await drain(messages, clock, 12)
    first = handed[0]
    days = range(5)
    per_day = [sum(first + d * DAY <= t < first + (d + 1) * DAY for t in handed) for d in days]
    # Day 1 may send 10/5 = 2 a day, day 2 4, day 3 6: a ramp, never a jump.
    assert per_day == [2, 4, 6, 0, 0]
    for start in handed:
        assert sum(start <= t < start + DAY for t in handed) <= 10


async def test_a_random_pause_separates_two_messages(redis_client: aioredis.Redis) -> None:
    clock = ManualClock()
    messages = await service(
        redis_client, clock, message_pause_min_ms=3_000, message_pause_max_ms=7_000
    )
    for n in range(2):
        await messages.accept(SID, OUTSIDE, f"m{n}")
    commands, _ = await messages.take(SID)
    assert len(commands) == 1
    assert await messages.update(SID, commands[0]["id"], "sent", None, ack=True)
    commands, wait_ms = await messages.take(SID)
    assert commands == [] and 3_000 <= wait_ms <= 7_000


async def test_typing_lasts_as_long_as_the_text_needs(redis_client: aioredis.Redis) -> None:
    clock = ManualClock()
    messages = await service(redis_client, clock, typing_ms_per_char=50, typing_max_ms=2_000)
    assert messages.typing_ms("hi") == 100
    assert messages.typing_ms("x" * 1000) == 2_000


@pytest.fixture
def fleet_options() -> dict[str, Any]:
    return dict(FAST)


async def test_the_limit_holds_at_the_network(fleet: Fleet) -> None:
    sid = (await fleet.link())["id"]
    status, limits = await fleet.call("PUT", f"/api/sessions/{sid}/limits", {"perMinute": 3})
    assert status == 200, limits
    assert limits["perMinute"] == 3
    for bad in ({"perMinute": -1}, {"perDay": "10"}, {}, {"perHour": 1}):
        status, answer = await fleet.call("PUT", f"/api/sessions/{sid}/limits", bad)
        assert status == 400, (bad, answer)
    burst = [(await send(fleet, sid, OUTSIDE, f"burst {n}"))["id"] for n in range(6)]

    async def three_read() -> bool:
        found = [(await message(fleet, sid, mid))["status"] for mid in burst[:3]]
        return found == ["read"] * 3

    # Read means a second round trip after the third was sent: with no pause set, a fourth
    # would have gone out by then if the limit did not hold.
    await eventually(three_read, timeout=30, what="the first three read")
    assert sorted(m["text"] for m in await sent_by(fleet, PHONE)) == [
        "burst 0",
        "burst 1",
        "burst 2",
    ]
    assert [(await message(fleet, sid, mid))["status"] for mid in burst[3:]] == ["queued"] * 3


async def test_the_fleets_counts_are_the_sum_of_its_sessions_on_every_path(
    redis_client: aioredis.Redis,
) -> None:
    """Sent, received, and failed by each way a message can fail (expired in the queue,
    expired when its turn came, logged out, the worker's report): the fleet's hash, bumped by
    the same scripts, always equals the sum of the sessions' own."""
    clock = ManualClock()
    messages = await service(redis_client, clock, message_ttl_s=60)
    other = "worker_2"
    await redis_client.set(f"session:{other}:status", "connected")
    sent, _ = await messages.accept(SID, OUTSIDE, "sent")
    assert [c["id"] for c in (await messages.take(SID))[0]] == [sent.id]
    assert await messages.update(SID, sent.id, "sent", None, ack=True)
    refused, _ = await messages.accept(SID, OUTSIDE, "refused by the network")
    assert [c["id"] for c in (await messages.take(SID))[0]] == [refused.id]
    assert await messages.update(SID, refused.id, "failed", "not_on_whatsapp", ack=True)
    late, _ = await messages.accept(SID, OUTSIDE, "its turn comes too late")
    for n in range(2):
        await messages.accept(other, OUTSIDE, f"waits too long {n}")
    clock.advance(61)
    assert await messages.expire_due() == 3  # the other's two, and the late one
    assert (await messages.get(SID, late.id)).reason == "expired"
    stale, _ = await messages.accept(SID, OUTSIDE, "expires at the worker's poll")
    await redis_client.zrem("wafleet:message_deadlines", stale.id)  # the sweep missed it
    clock.advance(61)
    assert await messages.take(SID) == ([], -1)
    assert (await messages.get(SID, stale.id)).reason == "expired"
    gone, _ = await messages.accept(other, OUTSIDE, "logged out before it went")
    await messages.logged_out(other)  # a logout on the phone
    after, _ = await messages.accept(other, OUTSIDE, "while logged out")
    assert (await messages.get(other, gone.id)).reason == "logged_out"
    assert (await messages.get(other, after.id)).reason == "logged_out"
    await messages.count_received(SID)
    await messages.count_received(other)

    mine, theirs = await messages.counts(SID), await messages.counts(other)
    assert (mine.sent, mine.received, mine.failed) == (1, 1, 3)
    assert (theirs.sent, theirs.received, theirs.failed) == (0, 1, 4)
    fleet = await messages.fleet_counts()
    assert (fleet.sent, fleet.received, fleet.failed) == (1, 2, 7)


async def test_the_fleets_counts_are_made_once_from_sessions_counted_before_they_existed(
    redis_client: aioredis.Redis,
) -> None:
    clock = ManualClock(1_700_000_000_000)
    messages = await service(redis_client, clock)
    # Counts of an older wafleet: the sessions' hashes only (one of a deleted session too).
    await redis_client.hset("wafleet:msgcounts:worker_1", mapping={"sent": 5, "failed": 1})
    await redis_client.hset("wafleet:msgcounts:worker_7", mapping={"sent": 2, "received": 4})
    made = await messages.count_fleet_if_new()
    assert made is not None and (made.sent, made.received, made.failed) == (7, 4, 1)
    await messages.count_received(SID)  # counting goes on from there
    fleet = await messages.fleet_counts()
    assert (fleet.sent, fleet.received, fleet.failed) == (7, 5, 1)
    assert await messages.count_fleet_if_new() is None  # once: never summed again
    fleet = await messages.fleet_counts()
    assert (fleet.sent, fleet.received, fleet.failed) == (7, 5, 1)


async def test_a_fleet_that_never_counted_gets_zeros_once(redis_client: aioredis.Redis) -> None:
    messages = await service(redis_client, ManualClock(1_700_000_000_000))
    made = await messages.count_fleet_if_new()
    assert made is not None and (made.sent, made.received, made.failed) == (0, 0, 0)
    assert await redis_client.hgetall("wafleet:msgcounts") == {
        "sent": "0",
        "received": "0",
        "failed": "0",
    }
    assert await messages.count_fleet_if_new() is None  # the next start scans nothing
