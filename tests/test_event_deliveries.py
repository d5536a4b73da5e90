"""Incoming messages and receipts reach the operator's endpoint: durable, in order, signed.

Real ``serve``, real Redis, a real aiohttp endpoint on loopback playing the operator
(``tests/event_receiver.py``); events are posted exactly as a worker posts them (signed with
the session's own secret by ``core.signing``, each with its own ``id``).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.event_receiver import EVENTS_SECRET, Receiver
from tests.fleet import Fleet, eventually

PHONES = ("972501234561", "972501234562", "972501234563")
OWN_PASSWORD = "own-endpoint-pw-51d2"
# Short retries; nothing becomes a dead letter unless a test says so.
FAST_RETRIES = {
    "EVENTS_RETRY_BASE_MS": "40",
    "EVENTS_RETRY_MAX_MS": "250",
    "EVENTS_MAX_ATTEMPTS": "100000",
    "EVENTS_WEBHOOK_TIMEOUT_MS": "5000",
}


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    found = Receiver()
    yield found
    await found.stop()


@pytest.fixture
def events_options() -> dict[str, str]:
    return {}


@pytest.fixture
def fleet_options(receiver: Receiver, events_options: dict[str, str]) -> dict[str, Any]:
    return {
        "EVENTS_WEBHOOK_URL": receiver.url(),
        "EVENTS_WEBHOOK_SECRET": EVENTS_SECRET,
        **FAST_RETRIES,
        **events_options,
    }


async def post_event(
    fleet: Fleet, sid: str, kind: str, data: dict[str, Any], worker_id: str | None = None
) -> str:
    """One event as the worker sends it, resent with the same id when the connection was
    cut (a pooled connection to a serve that was killed); the id the operator will see."""
    worker_id = worker_id or uuid.uuid4().hex
    event = {
        "id": worker_id,
        "sessionId": sid,
        "type": kind,
        "data": data,
        "timestamp": time.time_ns() // 1_000_000,
    }
    try:
        status, body = await fleet.post_webhook(event)
    except aiohttp.ServerDisconnectedError:
        status, body = await fleet.post_webhook(event)
    assert status == 200, body
    return f"{sid}.{worker_id}"


def message(n: int) -> dict[str, Any]:
    return {"messageId": f"wamid-{n}", "from": "972541112233", "text": f"hello {n} ✓"}


def receipt(n: int) -> dict[str, Any]:
    return {"messageId": f"msg-{n}", "status": ("sent", "delivered", "read")[n % 3]}


async def post_round(fleet: Fleet, sids: list[str], n: int, sent: dict[str, list[str]]) -> None:
    """One event per session, interleaved across sessions; every third one a receipt."""
    for sid in sids:
        kind, data = ("MESSAGE_STATUS", receipt(n)) if n % 3 == 2 else ("MESSAGE_IN", message(n))
        sent[sid].append(await post_event(fleet, sid, kind, data))


async def retry_attempts(fleet: Fleet, sid: str) -> int:
    return int(await fleet.redis.hget(f"wafleet:events:{sid}:retry", "attempts") or 0)


async def test_an_endpoint_down_then_failing_then_back_gets_every_event_once_in_order(
    fleet: Fleet, receiver: Receiver
) -> None:
    own = receiver.url("/own", userinfo=f"ops:{OWN_PASSWORD}")
    sids = [str((await fleet.provision(PHONES[0]))["id"])]
    sids.append(str((await fleet.provision(PHONES[1], eventsWebhookUrl=own))["id"]))
    sids.append(str((await fleet.provision(PHONES[2]))["id"]))
    _, shown = await fleet.call("GET", f"/api/sessions/{sids[1]}/status")
    assert shown["eventsWebhookUrl"] == f"http://***@127.0.0.1:{receiver.port}/own"
    sent: dict[str, list[str]] = {sid: [] for sid in sids}

    # Down: nothing listens on the endpoint's port (connection refused).
    for n in range(6):
        await post_round(fleet, sids, n, sent)

    async def refused_a_few_times() -> bool:
        return all([await retry_attempts(fleet, sid) >= 3 for sid in sids])

    await eventually(refused_a_few_times, 60, "refused attempts for every session")
    assert receiver.hits == []

    # Up, but answering 500 for a while; more events arrive meanwhile.
    receiver.mode = "fail"
    await receiver.start()
    for n in range(6, 12):
        await post_round(fleet, sids, n, sent)

    async def failed_a_few_times() -> bool:
        return all(sum(h.session_id == sid for h in receiver.hits) >= 3 for sid in sids)

    await eventually(failed_a_few_times, 60, "500s for every session")
    assert receiver.accepted() == []

    # Recovered.
    receiver.mode = "ok"
    for n in range(12, 15):
        await post_round(fleet, sids, n, sent)

    async def all_in() -> bool | None:
        return all(receiver.accepted(sid) == sent[sid] for sid in sids) or None

    await eventually(all_in, 90, "every event accepted")
    for sid in sids:
        assert receiver.accepted(sid) == sent[sid]  # all, in the order they arrived at serve
    assert receiver.accepted_twice() == []
    assert all(hit.signed for hit in receiver.hits)
    # While an event failed, the ones after it waited: per session, the ids tried (500s
    # included) never go back to an earlier one.
    for sid in sids:
        tried = [h.event_id for h in receiver.hits if h.session_id == sid]
        order = {event_id: i for i, event_id in enumerate(sent[sid])}
        positions = [order[event_id] for event_id in tried]
        assert positions == sorted(positions)
    # The body is what the worker reported, with the stable id and the session.
    first = next(h for h in receiver.hits if h.event_id == sent[sids[0]][0] and h.status == 200)
    assert first.body["sessionId"] == sids[0]
    assert first.body["type"] == "MESSAGE_IN"
    assert first.body["data"] == message(0)
    assert first.body["id"] == sent[sids[0]][0]
    # The session with its own endpoint got its events there, with its credentials.
    own_hits = [h for h in receiver.hits if h.session_id == sids[1]]
    assert {h.path for h in own_hits} == {"/own"}
    assert {h.path for h in receiver.hits if h.session_id != sids[1]} == {"/hook"}
    assert own_hits[0].authorization is not None
    # Nothing secret reached serve's log, though every failure was logged with its endpoint.
    log = fleet.log()
    assert f"***@127.0.0.1:{receiver.port}/own" in log
    assert OWN_PASSWORD not in log
    assert EVENTS_SECRET not in log


async def test_a_replayed_worker_event_is_stored_and_delivered_once(
    fleet: Fleet, receiver: Receiver
) -> None:
    await receiver.start()
    sid = str((await fleet.provision(PHONES[0]))["id"])
    worker_id = uuid.uuid4().hex
    first = await post_event(fleet, sid, "MESSAGE_IN", message(1), worker_id)
    again = await post_event(fleet, sid, "MESSAGE_IN", message(1), worker_id)
    last = await post_event(fleet, sid, "MESSAGE_STATUS", receipt(2))
    assert first == again
    await eventually(lambda: _true(receiver.accepted(sid) == [first, last]), 30, "both events")
    assert [h.event_id for h in receiver.hits] == [first, last]
    _, page = await fleet.call("GET", f"/api/sessions/{sid}/events?since=0")
    assert [e["id"] for e in page["events"]] == [first, last]


async def _true(value: bool) -> bool:
    return value


async def test_serve_killed_and_restarted_mid_way_loses_nothing(
    fleet: Fleet, receiver: Receiver
) -> None:
    receiver.slow["/hook"] = 0.1  # deliveries are under way when serve dies
    await receiver.start()
    sids = [str((await fleet.provision(phone))["id"]) for phone in PHONES]
    sent: dict[str, list[str]] = {sid: [] for sid in sids}
    for n in range(15):
        await post_round(fleet, sids, n, sent)
    await eventually(lambda: _true(len(receiver.accepted()) >= 5), 30, "a few deliveries")
    fleet.kill()  # SIGKILL: no clean shutdown, requests cut off mid-way
    assert len(receiver.accepted()) < sum(len(ids) for ids in sent.values())
    fleet.start()

    async def all_in() -> bool | None:
        return all(receiver.accepted(sid) == sent[sid] for sid in sids) or None

    # What the killed serve left is delivered by the new one on its own (no new event
    # needed to wake a session up), then the sessions go on as usual.
    await eventually(all_in, 90, "what was left, delivered after the restart")
    for n in range(15, 20):
        await post_round(fleet, sids, n, sent)
    await eventually(all_in, 90, "every event accepted after the restart")
    # At least once: only an event in flight when serve died may come twice, one per lane.
    repeats = receiver.accepted_twice()
    assert len(repeats) <= len(sids), repeats
    assert all(hit.signed for hit in receiver.hits)


@pytest.mark.parametrize(
    "events_options",
    [{"EVENTS_MAX_ATTEMPTS": "3", "EVENTS_RETRY_BASE_MS": "20", "EVENTS_RETRY_MAX_MS": "80"}],
)
async def test_an_endpoint_that_never_recovers_yields_dead_letters_that_replay_and_redeliver(
    fleet: Fleet, receiver: Receiver
) -> None:
    receiver.mode = "fail"
    await receiver.start()
    sid = str((await fleet.provision(PHONES[0]))["id"])
    sent = [await post_event(fleet, sid, "MESSAGE_IN", message(n)) for n in range(5)]

    async def all_dead() -> dict[str, Any] | None:
        _, body = await fleet.call("GET", f"/api/sessions/{sid}/events/dead-letters")
        return body if body["total"] == len(sent) else None

    dead = await all_dead_letters(all_dead)
    assert [letter["id"] for letter in dead["deadLetters"]] == sent
    assert {letter["attempts"] for letter in dead["deadLetters"]} == {3}
    assert {letter["error"] for letter in dead["deadLetters"]} == {"HTTP 500"}
    assert dead["deadLetters"][0]["data"] == message(0)
    # Each event was tried three times, all of them before the next event's first try.
    assert [h.event_id for h in receiver.hits] == [i for i in sent for _ in range(3)]
    assert [h.attempt for h in receiver.hits] == [1, 2, 3] * len(sent)

    # Replay: everything stored, oldest first, in pages.
    status, page = await fleet.call("GET", f"/api/sessions/{sid}/events?since=0&limit=2")
    assert status == 200, page
    replayed = [e["id"] for e in page["events"]]
    while page["events"]:
        status, page = await fleet.call(
            "GET", f"/api/sessions/{sid}/events?since={page['next']}&limit=2"
        )
        assert status == 200, page
        replayed += [e["id"] for e in page["events"]]
    assert replayed == sent
    assert page["deliveredThrough"] == page["next"]  # all dead-lettered: the cursor is last

    # The endpoint recovers; the dead letters are redelivered, in order, once each.
    receiver.mode = "ok"
    status, answer = await fleet.call("POST", f"/api/sessions/{sid}/events/dead-letters/redeliver")
    assert (status, answer) == (202, {"redelivered": 5, "remaining": 0})
    await eventually(lambda: _true(receiver.accepted(sid) == sent), 30, "the redelivery")
    assert receiver.accepted_twice() == []
    _, dead = await fleet.call("GET", f"/api/sessions/{sid}/events/dead-letters")
    assert dead == {"deadLetters": [], "total": 0}
    status, answer = await fleet.call("POST", f"/api/sessions/{sid}/events/dead-letters/redeliver")
    assert (status, answer) == (202, {"redelivered": 0, "remaining": 0})


async def all_dead_letters(check: Any) -> dict[str, Any]:
    found: dict[str, Any] = await eventually(check, 60, "every event dead-lettered")
    return found


async def test_a_slow_endpoint_holds_up_only_its_own_session(
    fleet: Fleet, receiver: Receiver
) -> None:
    receiver.slow["/slow"] = 4.0
    await receiver.start()
    slow = str((await fleet.provision(PHONES[0], eventsWebhookUrl=receiver.url("/slow")))["id"])
    quick = str((await fleet.provision(PHONES[1]))["id"])
    stuck = await post_event(fleet, slow, "MESSAGE_IN", message(0))
    sent = [await post_event(fleet, quick, "MESSAGE_IN", message(n)) for n in range(10)]
    await eventually(lambda: _true(receiver.accepted(quick) == sent), 3.5, "the quick session")
    assert receiver.accepted(slow) == []  # still waiting for its endpoint's answer
    await eventually(lambda: _true(receiver.accepted(slow) == [stuck]), 30, "the slow one")


BAD_URLS: list[Any] = [
    "ftp://127.0.0.1/hook",
    "http://169.254.169.254/latest/meta-data",
    "http://metadata.google.internal/computeMetadata",
    "http://[fe80::1]/hook",
    "http://2852039166/hook",
    "http://127.0.0.1:99999/hook",
    "127.0.0.1/hook",
    "http:///hook",
    "http://127.0.0.1/hook#part",
    "http://127.0.0.1/\x00",
    42,
    ["http://127.0.0.1/hook"],
]


async def test_a_bad_events_webhook_url_is_refused_at_provision_and_nothing_is_written(
    fleet: Fleet,
) -> None:
    before = await fleet.snapshot()
    for bad in BAD_URLS:
        status, body = await fleet.call(
            "POST", "/api/sessions/provision", {"phone": PHONES[0], "eventsWebhookUrl": bad}
        )
        assert status == 400, (bad, body)
        assert body["error"]["code"] == "invalid_input"
        assert "eventsWebhookUrl" in body["error"]["message"]
    assert await fleet.snapshot() == before
    assert not any(fleet.sessions_dir.iterdir())


async def test_message_events_need_an_id_and_the_replay_checks_its_input(fleet: Fleet) -> None:
    sid = str((await fleet.provision(PHONES[0]))["id"])
    status, body = await fleet.post_webhook(
        {"sessionId": sid, "type": "MESSAGE_IN", "data": message(1), "timestamp": 1}
    )
    assert status == 400 and "needs an id" in body["error"]["message"]
    for data in ({"from": "1", "text": "x"}, {"messageId": "m", "status": "seen"}):
        kind = "MESSAGE_IN" if "from" in data else "MESSAGE_STATUS"
        status, body = await fleet.post_webhook(
            {"id": uuid.uuid4().hex, "sessionId": sid, "type": kind, "data": data}
        )
        assert status == 400, body
    assert not await fleet.redis.exists(f"wafleet:events:{sid}")
    for query in ("since=abc", "since=1-2-3", "since=0&limit=0", "since=0&limit=501"):
        status, body = await fleet.call("GET", f"/api/sessions/{sid}/events?{query}")
        assert status == 400, (query, body)
    for path in ("events?since=0", "events/dead-letters"):
        status, _ = await fleet.call("GET", f"/api/sessions/worker_999/{path}")
        assert status == 404
    status, _ = await fleet.call("POST", "/api/sessions/worker_999/events/dead-letters/redeliver")
    assert status == 404
    # Without since, the same path is still the lifecycle history.
    _, history = await fleet.call("GET", f"/api/sessions/{sid}/events")
    assert {"type", "data", "at"} <= set(history["events"][0])


async def test_the_event_log_stores_a_worker_event_once_and_trims_only_what_was_delivered(
    redis_client: Any,
) -> None:
    """Below the webhook's own applied-once check: a worker event that reaches the log twice
    (its first apply failed after it was stored, and the worker resent it) is one entry."""
    from core.event_log import EventLog

    day = 24 * 3600 * 1000
    log = EventLog(redis_client, retention_ms=day)
    await redis_client.sadd("wafleet:sessions", "worker_1")
    await redis_client.set("session:worker_1:status", "connected")  # appends check it exists
    assert await log.append("worker_1", "w-event-0001", "MESSAGE_IN", message(1), 1)
    assert not await log.append("worker_1", "w-event-0001", "MESSAGE_IN", message(1), 2)
    assert await log.append("worker_1", "w-event-0002", "MESSAGE_IN", message(2), 3)
    stored = await log.since("worker_1", "0-0", 10)
    assert [e.id for e in stored] == ["worker_1.w-event-0001", "worker_1.w-event-0002"]
    # Two days later: the first is delivered, the second not; only the first may go.
    first, second = stored
    now = int(first.stream_id.split("-")[0]) + 2 * day  # stream ids carry Redis's time
    await log.delivered("worker_1", first.stream_id, now)
    assert [e.id for e in await log.since("worker_1", "0-0", 10)] == [second.id]
    await log.trim("worker_1", now + day, pull_only=False)
    assert [e.id for e in await log.since("worker_1", "0-0", 10)] == [second.id]
    head = await log.head("worker_1")
    assert head.event == second and head.session_exists


@pytest.mark.parametrize(
    "events_options",
    [{"EVENTS_MAX_ATTEMPTS": "4", "EVENTS_RETRY_BASE_MS": "400", "EVENTS_RETRY_MAX_MS": "400"}],
)
async def test_the_attempt_count_survives_a_restart_of_serve(
    fleet: Fleet, receiver: Receiver
) -> None:
    """The head's failed attempts live in Redis: a serve killed between two attempts goes on
    counting where it stopped, instead of starting the event's schedule over."""
    receiver.mode = "fail"
    await receiver.start()
    sid = str((await fleet.provision(PHONES[0]))["id"])
    sent = await post_event(fleet, sid, "MESSAGE_IN", message(1))
    await eventually(lambda: retry_attempts(fleet, sid), 30, "a recorded failed attempt")
    fleet.kill()
    fleet.start()

    async def dead() -> bool:
        return bool(await fleet.redis.llen(f"wafleet:events:{sid}:dead"))

    await eventually(dead, 60, "the dead letter")
    _, letters = await fleet.call("GET", f"/api/sessions/{sid}/events/dead-letters")
    assert [(x["id"], x["attempts"]) for x in letters["deadLetters"]] == [(sent, 4)]
    # One attempt may repeat (the one in flight when serve died), never the whole schedule.
    assert {h.attempt for h in receiver.hits} == {1, 2, 3, 4}
    assert len(receiver.hits) <= 5


async def test_a_deleted_session_still_delivers_what_it_accepted_then_leaves_nothing(
    fleet: Fleet, receiver: Receiver
) -> None:
    """Deleting a session loses nothing accepted: the events already in its stream are
    still delivered, in order, and each message it still had queued is reported failed
    (``session_deleted``) after them; then the stream and every key of it go (what is left
    are the one-day replay markers, which expire)."""
    sid = str((await fleet.provision(PHONES[0]))["id"])  # the endpoint is down: refused
    sent = [await post_event(fleet, sid, "MESSAGE_IN", message(n)) for n in range(3)]
    status, queued = await fleet.call(
        "POST", f"/api/sessions/{sid}/messages", {"to": "14155550123", "text": "never sent"}
    )
    assert status == 202, queued

    async def tried() -> bool:
        return await retry_attempts(fleet, sid) >= 2

    await eventually(tried, what="a few failed attempts")
    status, _ = await fleet.call("DELETE", f"/api/sessions/{sid}")
    assert status in (200, 204)
    assert (await fleet.call("GET", f"/api/sessions/{sid}/status"))[0] == 404
    await receiver.start()
    report = f"{sid}.deleted-{queued['id']}"

    async def all_delivered() -> list[str] | None:
        got = receiver.accepted(sid)
        return got if len(got) >= 4 else None

    assert await eventually(all_delivered, timeout=30, what="the drain") == [*sent, report]
    last = next(h for h in receiver.hits if h.event_id == report)
    assert last.signed
    assert last.body["type"] == "MESSAGE_STATUS"
    assert last.body["data"] == {
        "messageId": queued["id"],
        "to": "14155550123",
        "status": "failed",
        "reason": "session_deleted",
    }

    async def nothing_left() -> list[str] | None:
        found = [str(k) for k in await fleet.redis.keys(f"*{sid}*")]
        found += [str(k) for k in await fleet.redis.keys(f"*{queued['id']}*")]
        lasting = [k for k in found if await fleet.redis.pttl(k) < 0]
        return None if lasting else sorted(found)

    left = await eventually(nothing_left, what="every lasting key of the session to go")
    assert all(
        k.startswith((f"wafleet:applied:{sid}:", f"wafleet:events:{sid}:written:")) for k in left
    ), left
    assert sid not in await fleet.members("wafleet:deliveries")
    assert receiver.accepted_twice() == []
