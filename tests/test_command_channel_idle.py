"""What an idle fleet costs `serve` on the command channel, and that a message
still reaches a waiting worker at once. Real serve, Redis, microsocks, simwa and worker;
the channel's work is counted at serve, by its own `/metrics` counters."""

from __future__ import annotations

import asyncio
import re
import time

import pytest

from tests.fleet import Fleet, eventually
from tests.messaging import OUTSIDE, channel, send, wait_message

pytestmark = pytest.mark.asyncio

IDLE_WINDOW_S = 30


async def counters(fleet: Fleet) -> dict[str, float]:
    """The command channel's counters as a scrape of ``/metrics`` shows them."""
    status, body = await fleet.call("GET", "/metrics")
    assert status == 200
    text = body.decode() if isinstance(body, bytes) else str(body)
    found = dict(re.findall(r"^wafleet_command_(\w+)_total (\S+)$", text, re.MULTILINE))
    return {name: float(value) for name, value in found.items()}


async def test_an_idle_connected_worker_costs_serve_almost_nothing(fleet: Fleet) -> None:
    sid = (await fleet.link())["id"]

    async def polling() -> dict[str, float] | None:
        now = await counters(fleet)
        return now if now.get("polls", 0) >= 1 else None

    before = await eventually(polling, 30, "the connected worker's first poll")
    # The measurement window: nothing happens in it on purpose; we count what serve did.
    await asyncio.sleep(IDLE_WINDOW_S)
    after = await counters(fleet)
    polls, looks = after["polls"] - before["polls"], after["looks"] - before["looks"]
    # One request per poll length (25 s), one look at Redis per request (a look a second
    # per worker before: ~30 here).
    assert polls <= 3, f"{polls} channel requests in {IDLE_WINDOW_S} s"
    assert looks <= 3, f"{looks} looks at Redis in {IDLE_WINDOW_S} s"

    # And the idle channel is alive: a message accepted now is handed out at once.
    mid = (await send(fleet, sid, OUTSIDE, "still there?"))["id"]
    await wait_message(fleet, sid, mid, {"sent", "delivered", "read"})
    created, handed = await fleet.redis.hmget(f"wafleet:message:{mid}", ["created", "handedAt"])
    assert handed is not None and created is not None
    assert int(handed) - int(created) < 150, f"handed out {int(handed) - int(created)} ms after"


async def test_a_message_accepted_while_a_poll_waits_answers_that_poll_at_once(
    fleet: Fleet,
) -> None:
    # Not linked: its own worker shows a QR and does not poll, so this poll is the only one.
    sid = await fleet.provision_settled()
    before = await counters(fleet)
    body = {"sessionId": sid, "waitMs": 20_000}
    waiting = asyncio.create_task(channel(fleet, "/worker/commands", body, signed_as=sid))

    async def poll_waits() -> bool:
        return (await counters(fleet))["polls"] > before["polls"]

    await eventually(poll_waits, what="the poll to wait at serve")
    assert not waiting.done()
    mid = (await send(fleet, sid, OUTSIDE, "wake up"))["id"]
    accepted = time.monotonic()
    status, answer = await asyncio.wait_for(waiting, 10)
    took = time.monotonic() - accepted
    assert status == 200, answer
    assert [c["id"] for c in answer["commands"]] == [mid]
    assert took < 0.5, f"the waiting poll answered {took:.3f} s after the message was accepted"
    after = await counters(fleet)
    assert after["looks"] - before["looks"] == 2  # one when it came, one when woken


async def test_a_poll_for_a_session_that_does_not_exist_is_a_404(fleet: Fleet) -> None:
    sid = await fleet.provision_settled()
    status, _ = await fleet.call("DELETE", f"/api/sessions/{sid}")
    assert status in (200, 204)
    for gone in (sid, "worker_999"):
        body = {"sessionId": gone, "waitMs": 20_000}
        status, answer = await channel(fleet, "/worker/commands", body, signed_as=gone)
        assert status == 404, answer
        assert answer["error"]["code"] == "not_found"
