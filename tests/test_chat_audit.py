"""The chat's actions in the audit trail: aiogram's real client against the fake Bot API."""

from __future__ import annotations

from typing import Any

import pytest

from tests import fake_telegram
from tests.fake_telegram import ADMIN, STRANGER, FakeTelegram, bot_env
from tests.fleet import Fleet, eventually

telegram = fake_telegram.telegram  # the fixture


@pytest.fixture
def fleet_options(telegram: FakeTelegram) -> dict[str, Any]:
    return bot_env(telegram)


async def test_chat_actions_and_refusals_are_in_the_trail(
    fleet: Fleet, telegram: FakeTelegram
) -> None:
    """Catches a chat action missing from the trail, a stranger's refused attempt not
    recorded (or recorded as done), and a /send's text written into an entry."""
    sid = (await fleet.provision())["id"]
    await fleet.qr(sid)
    telegram.send(f"/restart {sid}", user=ADMIN)
    telegram.send(f"/delete {sid}", user=STRANGER)
    telegram.send(f"/send {sid} 14155550123 words-nobody-else-may-read", user=ADMIN)
    telegram.send("/sessions", user=ADMIN)  # a read: not in the trail

    async def chat_entries() -> list[dict[str, Any]] | None:
        _, body = await fleet.call("GET", "/api/v1/audit?limit=100")
        found = [e for e in body["entries"] if e["via"] == "chat"]
        return found if len(found) >= 3 else None

    entries = await eventually(chat_entries, what="three chat entries")
    seen = {
        (e["actor"], e["action"], e.get("session"), e["result"], e.get("reason")) for e in entries
    }
    assert seen == {
        (f"tg:{ADMIN}", "restart", sid, "done", None),
        (f"tg:{STRANGER}", "delete", sid, "refused", "forbidden"),
        (f"tg:{ADMIN}", "message", sid, "done", None),
    }
    assert "words-nobody-else-may-read" not in str(entries)
    assert all("from" not in e for e in entries)


async def test_keys_and_audit_in_the_chat_show_no_secret(
    fleet: Fleet, telegram: FakeTelegram
) -> None:
    """Catches /keys showing a key's value, /audit missing what was just done or open to a
    stranger."""
    _, issued = await fleet.call("POST", "/api/v1/keys", {"name": "client-a", "scope": "client"})
    mark = len(telegram.calls)
    telegram.send("/keys", user=ADMIN)
    shown = await telegram.wait_call("sendMessage", lambda c: "client-a" in c.text, after=mark)
    assert issued["id"] in shown.text and issued["key"] not in shown.text
    telegram.send("/audit 5", user=ADMIN)
    trail = await telegram.wait_call("sendMessage", lambda c: "key_create" in c.text, after=mark)
    assert "admin key_create done" in trail.text
    telegram.send("/keys", user=STRANGER)
    refusal = await telegram.wait_call("sendMessage", lambda c: c.chat == STRANGER, after=mark)
    assert "client-a" not in refusal.text and "only answers its operators" in refusal.text
