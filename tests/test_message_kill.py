"""At most once and nothing lost, while things die: N messages through several sessions
while ``serve``, one worker and Redis are each killed (SIGKILL) once at a random moment.

Every accepted message (a 202) must be at the simulated network exactly once, and every
status must end ``read``: the simulated network sends a read receipt for each, and a receipt
is never lost (the worker acknowledges it to the network only once it is in its outbox on
disk, and the network sends an unacknowledged one again), whatever was killed meanwhile.
Redis runs with ``appendonly yes`` and ``appendfsync always`` (a 202 is written to disk
before it is answered). The main tier sends 300 messages through 3 sessions; the issue's
1,000 through 5 runs with ``WAFLEET_KILL_MESSAGES=1000 WAFLEET_KILL_SESSIONS=5``.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
from collections import Counter
from typing import Any

import aiohttp
import pytest

from tests.aof_redis import AofRedis, redis_client, redis_server  # noqa: F401 (fixtures)
from tests.fleet import Fleet, eventually
from tests.messaging import FAST, OUTSIDE, sent_by

MESSAGES = int(os.environ.get("WAFLEET_KILL_MESSAGES", "300"))
SESSIONS = int(os.environ.get("WAFLEET_KILL_SESSIONS", "3"))
PHONES = [f"97250{n:07d}" for n in range(1, SESSIONS + 1)]


@pytest.fixture
def fleet_options() -> dict[str, Any]:
    # Several sessions per proxy; a watchdog that does not fire while Redis is away briefly.
    return dict(FAST) | {"proxies": 2, "PING_TIMEOUT_MS": "15000"}


async def _accept(fleet: Fleet, sid: str, n: int) -> str:
    """POST until a 202: the same idempotency key makes every retry the same message."""
    body = {"to": OUTSIDE, "text": f"message {n}", "idempotencyKey": f"kill-{n}"}
    for _ in range(600):
        try:
            status, answer = await fleet.call("POST", f"/api/sessions/{sid}/messages", body)
        except (aiohttp.ClientError, OSError):
            # serve was killed: no answer at all (refused or cut), and the client tries again
            await asyncio.sleep(0.05)
            continue
        if status == 202:
            return str(answer["id"])
        # serve is up while Redis is away: it says exactly that, and nothing else is acceptable
        assert status == 503, answer
        assert answer["error"]["code"] == "redis_unavailable", answer
        await asyncio.sleep(0.05)  # pacing the retries of a client, not waiting for a state
    raise AssertionError(f"message {n} never accepted")


@pytest.mark.timeout(900)
async def test_every_accepted_message_is_at_the_network_exactly_once(
    fleet: Fleet, aof_redis: AofRedis
) -> None:
    sids = [(await fleet.link(phone))["id"] for phone in PHONES]
    rng = random.Random()
    moments = rng.sample(range(5, MESSAGES - 5), 3)
    kill_at = dict(zip(("serve", "worker", "redis"), moments, strict=True))
    victim = rng.choice(sids)
    accepted: dict[str, list[str]] = {sid: [] for sid in sids}
    for n in range(MESSAGES):
        if n == kill_at["serve"]:
            fleet.kill()
            fleet.start()
        if n == kill_at["worker"]:
            os.kill(fleet.workers()[victim], signal.SIGKILL)
        if n == kill_at["redis"]:
            aof_redis.kill()
            aof_redis.start()
        sid = sids[n % len(sids)]
        accepted[sid].append(await _accept(fleet, sid, n))

    async def statuses() -> dict[str, str]:
        """What GET .../messages/:mid answers, for every accepted message."""
        found = {}
        for sid, mids in accepted.items():
            for mid in mids:
                status, body = await fleet.call("GET", f"/api/sessions/{sid}/messages/{mid}")
                assert status == 200, body
                found[mid] = body["status"]
        return found

    async def settled() -> bool:
        """Cheap to poll: no message left queued in Redis."""
        pipe = fleet.redis.pipeline(transaction=False)
        for mids in accepted.values():
            for mid in mids:
                pipe.hget(f"wafleet:message:{mid}", "status")
        return "queued" not in await pipe.execute()

    await eventually(settled, timeout=300, what="no message left queued")

    async def all_read() -> bool:
        pipe = fleet.redis.pipeline(transaction=False)
        for mids in accepted.values():
            for mid in mids:
                pipe.hget(f"wafleet:message:{mid}", "status")
        return set(await pipe.execute()) == {"read"}

    try:
        await eventually(all_read, timeout=300, what="every message read")
    except AssertionError:
        left = Counter((await statuses()).values())
        async with fleet.http.get(fleet.simwa + "/control/devices") as r:
            devices = [(d["sessionId"], d.get("unacked")) for d in await r.json()]
        raise AssertionError(
            f"not all read: {dict(left)}; unacked at the network: {devices}"
        ) from None
    final = await statuses()
    assert set(final.values()) == {"read"}, sorted(set(final.values()))
    for sid, phone in zip(sids, PHONES, strict=True):
        at_network = await sent_by(fleet, phone)
        ids = [m["id"] for m in at_network]
        assert len(ids) == len(set(ids))
        assert sorted(ids) == sorted("3EB0" + mid.upper() for mid in accepted[sid]), sid
    print(f"{MESSAGES} messages, {SESSIONS} sessions, kills at {kill_at}: all read")
