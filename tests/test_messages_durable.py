"""Nothing lost on the worker's side: what the network handed a worker reaches the operator
once, whatever dies in between.

The worker keeps every message event in its outbox (``outbox.jsonl`` in the session folder,
fsynced) before it acknowledges the frame to the network, and the network (simwa, as
WhatsApp's offline queue) sends a frame again until it is acknowledged. Ids derived from the
network's message ids make a frame that arrives twice one event. Real serve, Redis,
microsocks, simwa, worker processes and operator endpoint; the worker is SIGKILLed.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest

from tests.event_receiver import Receiver, events_fleet_options
from tests.fleet import PHONE, Fleet, eventually
from tests.messaging import FAST, OUTSIDE, incoming_message, send, wait_message

# Receipts slow enough that serve is surely down when they arrive at the worker.
RECEIPT_MS = "2500"
BURST = 750  # more than the 500 events the worker's old in-memory buffer held


@pytest.fixture(autouse=True)
def slow_receipts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIMWA_RECEIPT_MS", RECEIPT_MS)  # read by the simwa process at start


@pytest.fixture
def outbox_cap() -> str | None:
    """``WORKER_OUTBOX_MAX_BYTES`` for serve to hand its workers; None: the default."""
    return None


@pytest.fixture
def fleet_options(receiver: Receiver, outbox_cap: str | None) -> dict[str, Any]:
    options = {
        **FAST,
        **events_fleet_options(receiver),
    }
    if outbox_cap is not None:
        options["WORKER_OUTBOX_MAX_BYTES"] = outbox_cap
    return options


def incoming(receiver: Receiver, sid: str) -> list[dict[str, Any]]:
    """Every ``MESSAGE_IN`` the endpoint accepted for ``sid``, repeats included, in order."""
    return [
        h.body
        for h in receiver.hits
        if h.session_id == sid and h.status == 200 and h.body["type"] == "MESSAGE_IN"
    ]


async def acked(fleet: Fleet, sid: str, at_least: int) -> bool:
    """The device acknowledged that many frames and holds none unacknowledged."""
    device = await fleet.device(sid)
    return bool(device["acked"] >= at_least and device["unacked"] == 0)


def sigkill_worker(fleet: Fleet, sid: str) -> int:
    pid = fleet.workers()[sid]
    os.kill(pid, signal.SIGKILL)
    return pid


async def restarted(fleet: Fleet, sid: str, old_pid: int) -> bool:
    pid = fleet.workers().get(sid)
    return pid is not None and pid != old_pid


@pytest.mark.timeout(300)
async def test_a_receipt_and_a_message_taken_while_serve_is_down_survive_a_killed_worker(
    fleet: Fleet, receiver: Receiver
) -> None:
    sid = (await fleet.link())["id"]
    mid = (await send(fleet, sid, OUTSIDE, "are you there?"))["id"]
    await wait_message(fleet, sid, mid, {"sent"})
    fleet.kill()  # serve is away when the receipts come (RECEIPT_MS after acceptance)
    await incoming_message(fleet, "yes, here")
    # the worker has the message and both receipts, and told the network so
    await eventually(lambda: acked(fleet, sid, 3), 30, "the worker acknowledging 3 frames")
    old = sigkill_worker(fleet, sid)  # before it could report any of them
    fleet.start()
    await eventually(lambda: restarted(fleet, sid, old), 60, "a new worker")
    assert (await wait_message(fleet, sid, mid, {"read"}, timeout=60))["status"] == "read"

    async def arrived() -> list[dict[str, Any]] | None:
        return incoming(receiver, sid) or None

    (body,) = await eventually(arrived, 60, "MESSAGE_IN at the operator's endpoint")
    assert body["data"]["text"] == "yes, here"
    await eventually(lambda: acked(fleet, sid, 3), 30, "nothing left unacknowledged")
    assert [b["data"]["text"] for b in incoming(receiver, sid)] == ["yes, here"]


@pytest.mark.timeout(600)
async def test_a_long_serve_outage_loses_none_of_hundreds_of_incoming_messages(
    fleet: Fleet, receiver: Receiver
) -> None:
    sid = (await fleet.link())["id"]
    fleet.kill()
    for n in range(BURST):
        await incoming_message(fleet, f"burst {n}")
    await eventually(lambda: acked(fleet, sid, BURST), 120, f"the worker taking {BURST}")
    fleet.start()

    async def all_in() -> bool:
        return len(incoming(receiver, sid)) >= BURST

    await eventually(all_in, 300, f"{BURST} MESSAGE_IN at the operator's endpoint")
    texts = [b["data"]["text"] for b in incoming(receiver, sid)]
    assert texts == [f"burst {n}" for n in range(BURST)]  # in order, each once
    assert receiver.accepted_twice() == []


@pytest.mark.timeout(600)
@pytest.mark.parametrize("outbox_cap", [str(64 * 1024)])  # the least serve accepts
async def test_a_worker_at_its_outbox_cap_holds_back_the_rest_at_the_network_and_loses_none(
    fleet: Fleet, receiver: Receiver
) -> None:
    sid = (await fleet.link())["id"]
    fleet.kill()
    over = 300  # ~300 bytes of text each: well past 64 KiB of outbox
    for n in range(over):
        await incoming_message(fleet, f"held {n} " + "x" * 300)

    async def held_back() -> bool:
        # serve's setting reached the worker: it stopped acknowledging at the cap, so the
        # network keeps the rest (and the worker stops reading, so nothing is skipped).
        device = await fleet.device(sid)
        log = (fleet.sessions_dir / sid / "worker.log").read_text(errors="replace")
        return bool(device["unacked"] > 0 and device["acked"] < over and "OUTBOX FULL" in log)

    await eventually(held_back, 120, "the worker holding back at its outbox cap")
    taken = (await fleet.device(sid))["acked"]
    assert taken < over // 2  # 64 KiB, not the 64 MiB default
    fleet.start()

    async def all_in() -> bool:
        return len(incoming(receiver, sid)) >= over

    await eventually(all_in, 300, f"{over} MESSAGE_IN at the operator's endpoint")
    texts = [b["data"]["text"].split()[1] for b in incoming(receiver, sid)]
    assert texts == [str(n) for n in range(over)]  # in order, each once
    assert receiver.accepted_twice() == []
    assert await acked(fleet, sid, over)


@pytest.mark.timeout(300)
async def test_a_frame_the_worker_never_acknowledged_arrives_again_and_is_reported_once(
    fleet: Fleet, receiver: Receiver
) -> None:
    sid = (await fleet.link())["id"]
    # 1. Killed before it even read the frame: the network had sent it, nobody has it.
    pid = fleet.workers()[sid]
    os.kill(pid, signal.SIGSTOP)
    try:
        await incoming_message(fleet, "sent into a frozen worker")
        device = await fleet.device(sid)
        assert device["connected"] and device["unacked"] == 1
    finally:
        os.kill(pid, signal.SIGKILL)
    await eventually(lambda: restarted(fleet, sid, pid), 60, "a new worker")

    async def first() -> list[str] | None:
        texts = [b["data"]["text"] for b in incoming(receiver, sid)]
        return texts or None

    assert await eventually(first, 60, "the first message") == ["sent into a frozen worker"]

    # 2. Killed after writing the frame down, before its ack reached the network: the frame
    # comes again, and the second copy is the same event.
    assert await fleet.control("lose_acks", phone=PHONE, lose=True) == 200
    await incoming_message(fleet, "written, never acknowledged")

    async def second() -> bool:
        return len(incoming(receiver, sid)) >= 2

    await eventually(second, 60, "the second message")
    assert (await fleet.device(sid))["unacked"] == 1  # the network still has it
    pid = sigkill_worker(fleet, sid)
    assert await fleet.control("lose_acks", phone=PHONE, lose=False) == 200
    await eventually(lambda: restarted(fleet, sid, pid), 60, "a new worker")
    await eventually(lambda: acked(fleet, sid, 2), 60, "the frame acknowledged this time")
    outbox = fleet.sessions_dir / sid / "outbox.jsonl"

    async def reported() -> bool:
        return not outbox.exists()  # serve answered every event the worker took

    await eventually(reported, 60, "the new worker's outbox emptied")
    texts = [b["data"]["text"] for b in incoming(receiver, sid)]
    assert texts == ["sent into a frozen worker", "written, never acknowledged"]
    status, replay = await fleet.call("GET", f"/api/sessions/{sid}/events?since=0")
    assert status == 200, replay
    assert [e["data"]["text"] for e in replay["events"] if e["type"] == "MESSAGE_IN"] == texts


async def test_a_message_event_whose_first_apply_died_half_way_is_applied_when_sent_again(
    fleet: Fleet, receiver: Receiver
) -> None:
    """serve (or Redis) killed after it noted the event id and before it wrote the event: the
    worker sends it again, and it must not be taken for one already applied."""
    sid = str((await fleet.provision())["id"])
    eid = "half-applied-0001"
    # what such a death leaves behind (the key serve's claim of an event id writes)
    await fleet.redis.set(f"wafleet:applied:{sid}:{eid}", "1", px=3_600_000)
    event = {
        "id": eid,
        "sessionId": sid,
        "type": "MESSAGE_IN",
        "data": {"messageId": "SIMHALF", "from": OUTSIDE, "text": "once", "timestamp": 1},
        "timestamp": 1,
    }
    assert (await fleet.post_webhook(event))[0] == 200
    assert (await fleet.post_webhook(event))[0] == 200  # and a repeat is still one event

    async def arrived() -> list[dict[str, Any]] | None:
        return incoming(receiver, sid) or None

    (body,) = await eventually(arrived, 30, "the MESSAGE_IN at the operator's endpoint")
    assert body["data"]["text"] == "once"
    status, replay = await fleet.call("GET", f"/api/sessions/{sid}/events?since=0")
    assert status == 200, replay
    assert [e["data"]["text"] for e in replay["events"]] == ["once"]
