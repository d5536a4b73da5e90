"""``serve`` on a Redis primary + replica under three Sentinels, the primary SIGKILLed while
messages are sent, sessions provisioned and worker events arrive.

Real parts throughout (tests/sentinel_redis.py, a real ``wafleet serve``, worker processes,
microsocks, simwa, an operator endpoint). What a user must see: every answer during the
switch is a 2xx or a 503 ``redis_unavailable``; everything answered 2xx is there after the
promotion (each provisioned session, each 202'd message sent once at the network, each
incoming message at the operator's endpoint).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.event_receiver import Receiver, events_fleet_options
from tests.fleet import PHONE, Fleet, eventually
from tests.messaging import FAST, OUTSIDE, incoming_message, message, sent_by
from tests.sentinel_redis import (  # the fleet's Redis: the Sentinel group
    SentinelGroup,
    sentinel_redis_client,  # noqa: F401
    sentinel_redis_server,  # noqa: F401
)


@pytest.fixture
def fleet_options(sentinel_group: SentinelGroup, receiver: Receiver) -> dict[str, Any]:
    return {
        **FAST,
        **events_fleet_options(receiver),
        **sentinel_group.settings(REDIS_WAIT_MS="1000"),
        "MAX_SESSIONS_PER_PROXY": "8",
    }


@dataclass
class Answers:
    """Every answer the callers got: (time.monotonic(), what, status, error code)."""

    seen: list[tuple[float, str, int, str | None]] = field(default_factory=list)

    def add(self, what: str, status: int, body: Any) -> None:
        code = body["error"]["code"] if isinstance(body, dict) and "error" in body else None
        self.seen.append((time.monotonic(), what, status, code))

    def wrong(self) -> list[tuple[float, str, int, str | None]]:
        return [
            a
            for a in self.seen
            if not (200 <= a[2] < 300 or (a[2], a[3]) == (503, "redis_unavailable"))
        ]

    def unavailable(self) -> list[float]:
        return [a[0] for a in self.seen if a[2] == 503]


@pytest.mark.timeout(420)
@pytest.mark.parametrize("fault", ["killed", "killed-replica-lagging", "frozen"])
async def test_a_killed_primary_is_replaced_and_every_promise_survives(
    fleet: Fleet, sentinel_group: SentinelGroup, receiver: Receiver, fault: str
) -> None:
    """Caught: serve staying on the dead primary's address (only 503s after the kill), a 500
    for an error of the switch (READONLY, a reset), a 2xx answered before the replica had
    the write (a message or session 202'd/201'd just before the kill missing after it, or an
    incoming message whose event the worker deleted from its outbox missing at the
    operator's endpoint), and a message sent twice at the network after the switch.

    ``killed-replica-lagging``: the replica is frozen and cut off for the last half second before
    the kill, so the primary dies holding writes the replica never got (an in-sync replica
    on loopback is so close behind that a missing WAIT rarely shows). Without the WAIT
    those writes are answered 2xx and are gone after the promotion (seen: a 201'd session
    answering 404).

    ``frozen``: the primary stops (SIGSTOP: a hung host or a network cut, no reset) and comes
    back after the promotion, still calling itself primary until the Sentinels demote it.
    Caught: requests hanging on its silent connections (no reply timeout), and writes it
    takes before its demotion answered 2xx.
    """
    sid = (await fleet.link())["id"]
    answers = Answers()
    stop = asyncio.Event()
    accepted: dict[str, str] = {}  # text -> message id, once 202'd
    provisioned: list[str] = []
    entered: list[str] = []

    async def send_messages() -> None:
        n = 0
        while not stop.is_set():
            text = f"out {n}"
            while True:  # a 503 is retried with the same key, as the API asks callers to
                status, body = await fleet.call(
                    "POST",
                    f"/api/sessions/{sid}/messages",
                    {"to": OUTSIDE, "text": text, "idempotencyKey": f"k{n}"},
                )
                answers.add("message", status, body)
                if status == 202:
                    accepted[text] = body["id"]
                    break
                await asyncio.sleep(0.1)
            n += 1
            await asyncio.sleep(0.05)

    async def provision() -> None:
        n = 0
        while not stop.is_set() and len(provisioned) < 5:
            status, body = await fleet.call(
                "POST", "/api/sessions/provision", {"phone": f"9725000{n:05d}"}
            )
            answers.add("provision", status, body)
            if status == 201:
                provisioned.append(body["id"])
            n += 1
            await asyncio.sleep(0.5)

    async def enter_incoming() -> None:
        n = 0
        while not stop.is_set():
            await incoming_message(fleet, f"in {n}")
            entered.append(f"in {n}")
            n += 1
            await asyncio.sleep(0.05)

    tasks = [
        asyncio.create_task(send_messages()),
        asyncio.create_task(provision()),
        asyncio.create_task(enter_incoming()),
    ]
    await asyncio.sleep(2.0)
    (replica,) = [n for n in sentinel_group.nodes if n is not sentinel_group.first_primary]
    assert replica.proc is not None
    replica_lags = fault == "killed-replica-lagging"
    if replica_lags:
        # Frozen, and cut from the primary: what the primary writes from here on stays in
        # its backlog (a frozen replica alone would still find it in its socket buffer).
        os.kill(replica.proc.popen.pid, signal.SIGSTOP)
        with sentinel_group.client(sentinel_group.first_primary.port) as primary:
            primary.client_kill_filter(_type="replica")
        await asyncio.sleep(0.5)
    old = sentinel_group.freeze_primary() if fault == "frozen" else sentinel_group.kill_primary()
    killed = time.monotonic()
    if replica_lags:  # back well before the Sentinels would call it down (1 s)
        await asyncio.sleep(0.3)
        os.kill(replica.proc.popen.pid, signal.SIGCONT)
    new_port, promoted = await sentinel_group.wait_promoted(old.port)
    if fault == "frozen":  # it wakes up a primary; the Sentinels make it a replica
        assert old.proc is not None
        os.kill(old.proc.popen.pid, signal.SIGCONT)
    else:  # what a supervisor does: back, as a replica of the one promoted
        sentinel_group.start_node(old, replica_of=new_port)
    restarted = time.monotonic()

    async def healthy_again() -> bool:
        recent = [a for a in answers.seen if a[0] > restarted]
        return len(recent) >= 10 and all(200 <= a[2] < 300 for a in recent[-10:])

    await eventually(healthy_again, 60, "ten 2xx answers in a row after the switch")
    await asyncio.sleep(2.0)
    stop.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 60)

    assert answers.wrong() == []
    assert "unhandled error" not in fleet.log()
    for session in provisioned:
        assert (await fleet.call("GET", f"/api/sessions/{session}/status"))[0] == 200, session

    async def all_sent() -> bool:
        for mid in accepted.values():
            if (await message(fleet, sid, mid))["status"] not in ("sent", "delivered", "read"):
                return False
        return True

    await eventually(all_sent, 90, f"{len(accepted)} accepted messages sent")
    at_network = Counter(m["text"] for m in await sent_by(fleet, PHONE))
    assert set(at_network) == set(accepted)
    assert [t for t, n in at_network.items() if n > 1] == []

    def arrived() -> set[str]:
        return {
            h.body["data"]["text"]
            for h in receiver.hits
            if h.status == 200 and h.session_id == sid and h.body["type"] == "MESSAGE_IN"
        }

    async def all_arrived() -> bool:
        return arrived() >= set(entered)

    await eventually(all_arrived, 90, f"{len(entered)} incoming messages at the endpoint")

    gone = [t - killed for t in answers.unavailable()]
    print(
        f"\n{fault}: promoted {promoted - killed:.2f} s after the fault; 503s: {len(gone)} of "
        f"{len(answers.seen)} answers, from {min(gone, default=0):.2f} s to "
        f"{max(gone, default=0):.2f} s after it (old primary back at "
        f"{restarted - killed:.2f} s); {len(accepted)} messages, {len(provisioned)} "
        f"sessions, {len(entered)} incoming"
    )


@pytest.mark.timeout(180)
async def test_nothing_is_promised_while_no_replica_takes_the_write(
    fleet: Fleet, sentinel_group: SentinelGroup, receiver: Receiver
) -> None:
    """Caught: a 202 answered while the only replica is frozen (its promise would die with
    the primary), a worker's event 2xx'd then (the worker would delete it from its outbox),
    reads refused for no reason, and a retry of the refused request sending twice."""
    sid = (await fleet.link())["id"]
    (replica,) = [n for n in sentinel_group.nodes if n is not sentinel_group.first_primary]
    assert replica.proc is not None
    body = {"to": OUTSIDE, "text": "while frozen", "idempotencyKey": "frozen-1"}
    path = f"/api/sessions/{sid}/messages"
    os.kill(replica.proc.popen.pid, signal.SIGSTOP)  # connected, but acknowledges nothing
    try:
        started = time.monotonic()
        status, answer = await fleet.call("POST", path, body)
        assert (status, answer["error"]["code"]) == (503, "redis_unavailable")
        assert 0.9 < time.monotonic() - started < 5  # REDIS_WAIT_MS, then the 503
        assert (await fleet.call("GET", f"/api/sessions/{sid}/status"))[0] == 200
        await incoming_message(fleet, "arrived while frozen")
        await asyncio.sleep(1.5)  # the worker's event meets a 503 and stays in its outbox
        assert "Redis WAIT: 0 of 1 replicas" in fleet.log()
    finally:
        os.kill(replica.proc.popen.pid, signal.SIGCONT)
    status, answer = await fleet.call("POST", path, body)  # the caller's retry
    assert status == 202, answer
    await eventually(
        lambda: _status_in(fleet, sid, answer["id"], {"sent", "delivered", "read"}),
        30,
        "the message sent",
    )
    assert [m["text"] for m in await sent_by(fleet, PHONE)] == ["while frozen"]

    async def arrived() -> bool:
        return any(
            h.body["type"] == "MESSAGE_IN" and h.body["data"]["text"] == "arrived while frozen"
            for h in receiver.hits
        )

    await eventually(arrived, 30, "the incoming message at the endpoint")


async def _status_in(fleet: Fleet, sid: str, mid: str, wanted: set[str]) -> bool:
    return (await message(fleet, sid, mid))["status"] in wanted
