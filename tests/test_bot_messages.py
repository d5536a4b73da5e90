"""The chat's message commands end to end: /send, /stop, /start_session and the message
counts in /status, through aiogram's real client, the fake Bot API and a real fleet."""

from __future__ import annotations

from typing import Any

import pytest

from tests import fake_telegram
from tests.fake_telegram import ADMIN, FakeTelegram, bot_env
from tests.fleet import PHONE, Fleet, eventually
from tests.messaging import FAST, OUTSIDE, incoming_message, message, send, sent_by

telegram = fake_telegram.telegram  # the fixture


@pytest.fixture
def fleet_options(telegram: FakeTelegram) -> dict[str, Any]:
    return bot_env(telegram, **FAST)


async def _answer(telegram: FakeTelegram, command: str) -> str:
    mark = len(telegram.calls)
    telegram.send(command)
    found = await telegram.wait_call("sendMessage", lambda c: c.chat == ADMIN, after=mark)
    return found.text


async def test_send_stop_start_and_counts_in_the_chat(
    fleet: Fleet, telegram: FakeTelegram
) -> None:
    sid = (await fleet.link())["id"]
    answer = await _answer(telegram, f"/send {sid} +{OUTSIDE} hello from the chat")
    assert "queued" in answer and sid in answer

    async def delivered() -> list[dict[str, Any]] | None:
        found = await sent_by(fleet, PHONE)
        return found or None

    sent = await eventually(delivered, what="the chat's message at the network")
    assert [m["text"] for m in sent] == ["hello from the chat"]
    await incoming_message(fleet, "hi")

    async def counted() -> str | None:
        text = await _answer(telegram, f"/status {sid}")
        return text if "1 sent, 1 received, 0 failed" in text else None

    await eventually(counted, timeout=20, what="the counts in /status")

    assert "Missing or extra arguments" in await _answer(telegram, f"/send {sid} {OUTSIDE}")
    assert "not valid" in await _answer(telegram, f"/send {sid} 12 hi")

    answer = await _answer(telegram, f"/stop {sid}")
    assert "stopped" in answer
    assert (await fleet.status(sid))["status"] == "stopped"
    answer = await _answer(telegram, f"/start_session {sid}")
    assert sid in answer
    await fleet.wait_status(sid, "connected")


async def test_the_fleets_message_counts_in_stats_rest_and_metrics(
    fleet: Fleet, telegram: FakeTelegram
) -> None:
    """Sent, received and failed summed over the sessions: one session sends, another
    receives, the first is logged out and fails one. The chat's /stats, REST's stats and
    /metrics tell the same numbers."""
    other_phone = "972509999999"
    sender = (await fleet.link())["id"]
    receiver = (await fleet.link(other_phone))["id"]
    await send(fleet, sender, OUTSIDE, "one out")
    await incoming_message(fleet, "in", to=other_phone)

    async def counted(wanted: dict[str, int]) -> dict[str, int] | None:
        status, body = await fleet.call("GET", "/api/v1/dashboard/stats")
        assert status == 200, body
        return body["messages"] if body["messages"] == wanted else None

    await eventually(
        lambda: counted({"sent": 1, "received": 1, "failed": 0}), what="one sent, one received"
    )
    assert await fleet.control("logout", phone=PHONE) == 200

    async def logged_out() -> bool:
        # The mark, not the AUTH_FAILURE in the history: that is written before the event
        # is applied to the messages.
        return bool(await fleet.redis.exists(f"wafleet:loggedout:{sender}"))

    await eventually(logged_out, what="the logout to be seen")
    failed = await send(fleet, sender, OUTSIDE, "nobody home")
    assert (await message(fleet, sender, failed["id"]))["status"] == "failed"
    await eventually(lambda: counted({"sent": 1, "received": 1, "failed": 1}), what="one failed")
    per_session = [await fleet.redis.hgetall(f"wafleet:msgcounts:{s}") for s in (sender, receiver)]
    assert per_session == [{"sent": "1", "failed": "1"}, {"received": "1"}]

    mark = len(telegram.calls)
    telegram.send("/stats")
    stats = await telegram.wait_call("sendPhoto", lambda c: c.chat == ADMIN, after=mark)
    assert "Messages in the fleet: 1 sent, 1 received, 1 failed" in stats.text

    status, scrape = await fleet.call("GET", "/metrics")
    assert status == 200
    lines = scrape.decode().splitlines()
    for kind in ("sent", "received", "failed"):
        assert f'wafleet_messages_total{{kind="{kind}"}} 1.0' in lines
