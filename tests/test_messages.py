"""Sending through a session, end to end: REST -> Redis -> the command channel -> the worker
-> the simulated network (through the session's SOCKS5 proxy) -> receipts back as signed
events. Real serve, Redis, microsocks, simwa and worker processes."""

from __future__ import annotations

import json
from typing import Any, cast

import pytest

from tests.fleet import PHONE, Fleet, eventually
from tests.messaging import (
    FAST,
    OUTSIDE,
    channel,
    incoming_message,
    message,
    send,
    sent_by,
    wait_message,
)

pytestmark = pytest.mark.asyncio


@pytest.fixture
def fleet_options() -> dict[str, Any]:
    return dict(FAST)


async def test_a_message_reaches_the_network_once_and_its_receipts_come_back(
    fleet: Fleet,
) -> None:
    sid = (await fleet.link())["id"]
    accepted = await send(fleet, sid, "+1 (415) 555-0123", "hello from wafleet")
    assert accepted["status"] == "queued"
    mid = accepted["id"]
    done = await wait_message(fleet, sid, mid, {"read"})
    assert done == {"id": mid, "to": OUTSIDE, "status": "read"}
    at_network = await sent_by(fleet, PHONE)
    assert [(m["id"], m["to"], m["text"]) for m in at_network] == [
        ("3EB0" + mid.upper(), OUTSIDE, "hello from wafleet")
    ]
    device = await fleet.device(sid)
    assert device["typingCount"] == 1  # "typing..." before the message
    counts = await fleet.redis.hgetall(f"wafleet:msgcounts:{sid}")
    assert counts == {"sent": "1"}


async def test_the_same_idempotency_key_is_the_same_message(fleet: Fleet) -> None:
    sid = (await fleet.link())["id"]
    first = await send(fleet, sid, OUTSIDE, "once", idempotencyKey="order-17")
    again = await send(fleet, sid, OUTSIDE, "once", idempotencyKey="order-17")
    other = await send(fleet, sid, OUTSIDE, "twice", idempotencyKey="order-18")
    assert again["id"] == first["id"] != other["id"]
    await wait_message(fleet, sid, first["id"], {"read"})
    await wait_message(fleet, sid, other["id"], {"read"})
    assert sorted(m["text"] for m in await sent_by(fleet, PHONE)) == ["once", "twice"]


@pytest.mark.parametrize(
    "body",
    [
        {"to": "12", "text": "hi"},
        {"to": "not a phone", "text": "hi"},
        {"to": OUTSIDE, "text": ""},
        {"to": OUTSIDE, "text": "   "},
        {"to": OUTSIDE, "text": "line\nbreak"},
        {"to": OUTSIDE, "text": "x" * 4097},
        {"to": OUTSIDE},
        {"to": OUTSIDE, "text": 5},
        {"to": OUTSIDE, "text": "hi", "idempotencyKey": ""},
        {"to": OUTSIDE, "text": "hi", "idempotencyKey": "k" * 129},
        {"to": OUTSIDE, "text": "hi", "priority": 1},
    ],
)
async def test_bad_input_is_a_400_and_writes_nothing(fleet: Fleet, body: dict[str, Any]) -> None:
    sid = await fleet.provision_settled()
    before = await fleet.snapshot()
    status, answer = await fleet.call("POST", f"/api/sessions/{sid}/messages", body)
    assert status == 400, answer
    assert set(answer["error"]) == {"code", "message"}
    assert await fleet.snapshot() == before


async def test_unknown_session_or_message_is_a_404(fleet: Fleet) -> None:
    sid = (await fleet.link())["id"]
    status, answer = await fleet.call(
        "POST", "/api/sessions/worker_999/messages", {"to": OUTSIDE, "text": "hi"}
    )
    assert status == 404, answer
    mid = (await send(fleet, sid, OUTSIDE, "mine"))["id"]
    for path in (
        f"/api/sessions/{sid}/messages/{'0' * 32}",
        f"/api/sessions/{sid}/messages/nonsense",
        f"/api/sessions/worker_999/messages/{mid}",
    ):
        status, answer = await fleet.call("GET", path)
        assert status == 404, (path, answer)


async def test_a_logged_out_session_fails_a_message_at_once(fleet: Fleet) -> None:
    sid = (await fleet.link())["id"]
    assert await fleet.control("logout", phone=PHONE) == 200

    async def logged_out() -> bool:
        # The mark, not the AUTH_FAILURE in the history: that is written before the event
        # is applied to the messages.
        return bool(await fleet.redis.exists(f"wafleet:loggedout:{sid}"))

    await eventually(logged_out, what="the logout to be seen")
    mid = (await send(fleet, sid, OUTSIDE, "anyone there?"))["id"]
    assert await message(fleet, sid, mid) == {
        "id": mid,
        "to": OUTSIDE,
        "status": "failed",
        "reason": "logged_out",
    }
    assert await sent_by(fleet, PHONE) == []


async def test_an_incoming_message_is_counted_for_its_session(fleet: Fleet) -> None:
    sid = (await fleet.link())["id"]
    await incoming_message(fleet, "hi!")

    async def received() -> str | None:
        value = await fleet.redis.hget(f"wafleet:msgcounts:{sid}", "received")
        return str(value) if value else None

    assert await eventually(received, what="the MESSAGE_IN event") == "1"


async def test_a_worker_cannot_read_or_ack_another_sessions_commands(fleet: Fleet) -> None:
    mine = (await fleet.link())["id"]
    theirs = await fleet.provision_settled("972509999999")  # not linked: its worker waits
    mid = (await send(fleet, theirs, OUTSIDE, "for their eyes only"))["id"]
    # Their worker's own poll (played by the test) takes the command out of the queue.
    status, answer = await channel(
        fleet, "/worker/commands", {"sessionId": theirs, "waitMs": 0}, signed_as=theirs
    )
    assert status == 200, answer
    assert [c["id"] for c in answer["commands"]] == [mid]
    before = await fleet.snapshot()
    # Reading: a body naming their session, signed with my secret.
    status, answer = await channel(
        fleet, "/worker/commands", {"sessionId": theirs, "waitMs": 0}, signed_as=mine
    )
    assert status == 401, answer
    assert "commands" not in answer
    # Acknowledging: as myself, their command.
    status, answer = await channel(
        fleet,
        "/worker/commands/ack",
        {"sessionId": mine, "id": mid, "status": "sent"},
        signed_as=mine,
    )
    assert status == 403, answer
    # Acknowledging: naming their session, signed as me.
    status, answer = await channel(
        fleet,
        "/worker/commands/ack",
        {"sessionId": theirs, "id": mid, "status": "failed", "reason": "x"},
        signed_as=mine,
    )
    assert status == 401, answer
    assert await fleet.snapshot() == before
    assert (await message(fleet, theirs, mid))["status"] == "queued"
    status, answer = await channel(
        fleet, "/worker/commands", {"sessionId": theirs, "waitMs": 0}, signed_as=theirs
    )
    assert [c["id"] for c in answer["commands"]] == [mid]  # still theirs, still unacknowledged


async def test_limits_given_at_provision_are_the_sessions_own_from_the_start(
    fleet: Fleet,
) -> None:
    session = await fleet.provision(PHONE, limits={"perMinute": 5, "warmupDays": 3})
    status, limits = await fleet.call("GET", f"/api/sessions/{session['id']}/limits")
    assert status == 200, limits
    assert limits == {"perMinute": 5, "perDay": 0, "warmupDays": 3}  # perDay: the settings'
    assert await fleet.redis.hgetall(f"wafleet:limits:{session['id']}") == {
        "perMinute": "5",
        "warmupDays": "3",
    }


@pytest.mark.parametrize(
    "limits",
    [
        {},
        {"perMinute": -1},
        {"perMinute": 1.5},
        {"perDay": True},
        {"perDay": "10"},
        {"warmupDays": 1_000_001},
        {"perHour": 5},
        {"perMinute": 10, "burst": 1},
        [5],
        5,
        "perMinute=5",
    ],
)
async def test_bad_limits_at_provision_are_a_400_and_provision_nothing(
    fleet: Fleet, limits: object
) -> None:
    before = await fleet.snapshot()
    status, answer = await fleet.call(
        "POST", "/api/sessions/provision", {"phone": PHONE, "limits": limits}
    )
    assert status == 400, answer
    assert set(answer["error"]) == {"code", "message"}
    said = answer["error"]["message"]
    assert any(name in said for name in ("limit", "perMinute", "perDay", "warmupDays")), said
    assert await fleet.snapshot() == before
    assert not [p for p in fleet.sessions_dir.iterdir() if not p.name.startswith(".")]


@pytest.mark.parametrize("fleet_options", [{**FAST, "MESSAGE_RETENTION_DAYS": "2"}])
async def test_a_finished_message_is_kept_for_the_configured_days(fleet: Fleet) -> None:
    sid = (await fleet.link())["id"]
    mid = (await send(fleet, sid, OUTSIDE, "kept", idempotencyKey="order-2d"))["id"]
    await wait_message(fleet, sid, mid, {"read"})
    two_days_ms = 2 * 24 * 3600 * 1000
    # The record and its idempotency key both go after MESSAGE_RETENTION_DAYS, not 7 days.
    for key in (f"wafleet:message:{mid}", f"wafleet:msgkey:{sid}:order-2d"):
        ttl = await fleet.redis.pttl(key)
        assert two_days_ms - 60_000 < ttl <= two_days_ms, (key, ttl)
    assert (await message(fleet, sid, mid))["status"] == "read"


async def worker_requests(fleet: Fleet) -> float:
    """Requests workers made to serve so far, PINGs aside (a PING is always one request of
    its own, and says nothing about messages)."""
    _, raw = await fleet.call("GET", "/metrics")
    found: dict[str, float] = {}
    for line in raw.decode().splitlines():
        for name in (
            'wafleet_http_requests_total{route="/webhook"}',
            'wafleet_http_requests_total{route="/worker/commands"}',
            'wafleet_http_requests_total{route="/worker/commands/ack"}',
            'wafleet_webhook_events_total{type="PING"}',
        ):
            if line.startswith(name + " "):
                found[name] = float(line.split()[-1])
    pings = found.pop('wafleet_webhook_events_total{type="PING"}', 0.0)
    return sum(found.values()) - pings


async def test_a_sent_message_costs_serve_at_most_three_requests_from_its_worker(
    fleet: Fleet,
) -> None:
    """Would have caught: the worker acknowledging each command by a request of its own,
    posting the "sent" status as an event of its own, then polling again (five requests a
    message with both receipts). The outcome rides on the next poll now and receipts that
    queue up leave together; the operator still gets each status once."""
    sid = (await fleet.link())["id"]
    before = await worker_requests(fleet)
    n = 12
    mids = [(await send(fleet, sid, OUTSIDE, f"number {k}"))["id"] for k in range(n)]
    for mid in mids:
        await wait_message(fleet, sid, mid, {"read"})
    spent = await worker_requests(fleet) - before
    assert spent <= 3 * n + 2, f"{spent} requests from the worker for {n} messages"

    async def statuses() -> dict[str, list[str]]:
        seen: dict[str, list[str]] = {mid: [] for mid in mids}
        key = f"wafleet:events:{sid}"
        entries = cast("list[tuple[str, dict[str, str]]]", await fleet.redis.xrange(key))
        for _, fields in entries:
            data = json.loads(fields["data"])
            if fields["type"] == "MESSAGE_STATUS" and data["messageId"] in seen:
                seen[data["messageId"]].append(data["status"])
        return seen

    async def every_status_once() -> bool:
        return all(v == ["sent", "delivered", "read"] for v in (await statuses()).values())

    await eventually(every_status_once, what="sent, delivered, read once each, in order")


async def test_a_poll_acknowledging_another_sessions_command_applies_none(
    fleet: Fleet,
) -> None:
    mine = await fleet.provision_settled("972508888888")
    theirs = await fleet.provision_settled("972509999999")
    my_mid = (await send(fleet, mine, OUTSIDE, "mine"))["id"]
    their_mid = (await send(fleet, theirs, OUTSIDE, "theirs"))["id"]
    before = await fleet.snapshot()
    acks = [{"id": my_mid, "status": "sent"}, {"id": their_mid, "status": "sent"}]
    status, answer = await channel(
        fleet,
        "/worker/commands",
        {"sessionId": mine, "waitMs": 0, "acks": acks},
        signed_as=mine,
    )
    assert status == 403, answer
    assert await fleet.snapshot() == before  # not even my own ack went in
    for bad in (
        [{"id": my_mid, "status": "delivered"}],  # a receipt is not an ack
        [{"id": my_mid}],
        [{"id": my_mid, "status": "sent"}] * 65,
        {"id": my_mid, "status": "sent"},
    ):
        status, answer = await channel(
            fleet,
            "/worker/commands",
            {"sessionId": mine, "waitMs": 0, "acks": bad},
            signed_as=mine,
        )
        assert status == 400, (bad, answer)
        assert answer["error"]["code"] == "invalid_input"
    assert await fleet.snapshot() == before
    status, answer = await channel(
        fleet,
        "/worker/commands",
        {"sessionId": mine, "waitMs": 0, "acks": acks[:1]},
        signed_as=mine,
    )
    assert status == 200, answer
    assert (await message(fleet, mine, my_mid))["status"] == "sent"
    assert (await message(fleet, theirs, their_mid))["status"] == "queued"
