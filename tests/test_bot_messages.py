"""The chat's message commands end to end: /send, /stop, /start_session and the message
counts in /status, through aiogram's real client, the fake Bot API and a real fleet."""

from __future__ import annotations

from typing import Any

import pytest

from tests import fake_telegram
from tests.fake_telegram import ADMIN, FakeTelegram, bot_env
from tests.fleet import PHONE, Fleet, eventually
from tests.messaging import FAST, OUTSIDE, sent_by

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
    async with fleet.http.post(
        fleet.simwa + "/control/message", json={"from": OUTSIDE, "to": PHONE, "text": "hi"}
    ) as r:
        assert r.status == 200

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
