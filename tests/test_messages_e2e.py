"""Both halves of messaging together, with nothing played by the test but the outside world.

A message from an outside number enters at the simulated network, reaches the session's
worker through its SOCKS5 proxy, comes to ``serve`` as a signed ``MESSAGE_IN``, and is
delivered to the operator's endpoint signed with the events secret; a message the operator
sends goes out through the command channel, and its receipts come back to the same
endpoint in order. Real serve, Redis, microsocks, simwa, worker processes and endpoint.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.event_receiver import Receiver, events_fleet_options
from tests.fleet import Fleet, eventually
from tests.messaging import FAST, OUTSIDE, incoming_message, send, wait_message

pytestmark = pytest.mark.asyncio


@pytest.fixture
def fleet_options(receiver: Receiver) -> dict[str, Any]:
    return {
        **FAST,
        **events_fleet_options(receiver),
    }


def delivered(receiver: Receiver, sid: str) -> list[dict[str, Any]]:
    """The bodies the endpoint accepted for ``sid``, once each, in arrival order."""
    seen: set[str] = set()
    bodies = []
    for hit in receiver.hits:
        if hit.session_id == sid and hit.status == 200 and hit.event_id not in seen:
            assert hit.signed, "every delivery is signed with EVENTS_WEBHOOK_SECRET"
            seen.add(hit.event_id)
            bodies.append(hit.body)
    return bodies


async def test_an_incoming_message_reaches_the_operators_endpoint_signed(
    fleet: Fleet, receiver: Receiver
) -> None:
    sid = (await fleet.link())["id"]
    await incoming_message(fleet, "where is my order?")

    async def arrived() -> list[dict[str, Any]] | None:
        found = [b for b in delivered(receiver, sid) if b["type"] == "MESSAGE_IN"]
        return found or None

    (body,) = await eventually(arrived, 30, "MESSAGE_IN at the operator's endpoint")
    assert body["sessionId"] == sid
    assert body["data"]["from"] == OUTSIDE
    assert body["data"]["text"] == "where is my order?"
    # The same event can be read back from the durable stream.
    status, replay = await fleet.call("GET", f"/api/sessions/{sid}/events?since=0")
    assert status == 200, replay
    assert [e["id"] for e in replay["events"]] == [body["id"]]


async def test_a_sent_messages_receipts_reach_the_operator_in_order(
    fleet: Fleet, receiver: Receiver
) -> None:
    sid = (await fleet.link())["id"]
    mid = (await send(fleet, sid, OUTSIDE, "your order shipped"))["id"]
    await wait_message(fleet, sid, mid, {"read"})

    async def receipts() -> list[str] | None:
        found = [
            b["data"]["status"]
            for b in delivered(receiver, sid)
            if b["type"] == "MESSAGE_STATUS" and b["data"]["messageId"] == mid
        ]
        return found if "read" in found else None

    statuses = await eventually(receipts, 30, "the receipts at the operator's endpoint")
    assert statuses == ["sent", "delivered", "read"]
