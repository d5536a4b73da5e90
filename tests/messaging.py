"""Helpers for the message tests: fast careful-sending settings, the simulated network's
message log, and requests on the command channel signed as a given session's worker."""

from __future__ import annotations

import json
import time
from typing import Any

from core.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, session_secret, sign
from tests.fleet import PHONE, WEBHOOK_SECRET, Fleet, eventually

# No limits, no pauses, a short "typing...": the send path itself, quickly.
FAST = {
    "MESSAGES_PER_MINUTE": "0",
    "MESSAGES_PER_DAY": "0",
    "MESSAGE_PAUSE_MIN_MS": "0",
    "MESSAGE_PAUSE_MAX_MS": "0",
    "TYPING_MS_PER_CHAR": "1",
    "TYPING_MAX_MS": "30",
}
OUTSIDE = "14155550123"


async def incoming_message(fleet: Fleet, text: str, to: str = PHONE, sender: str = OUTSIDE) -> str:
    """A message from ``sender`` to the session's phone ``to``, entered at the simulated
    network (as WhatsApp delivers one); the network's id of it."""
    async with fleet.http.post(
        fleet.simwa + "/control/message", json={"from": sender, "to": to, "text": text}
    ) as answer:
        assert answer.status == 200, await answer.text()
        return str((await answer.json())["id"])


async def send(fleet: Fleet, sid: str, to: str, text: str, **extra: Any) -> dict[str, Any]:
    status, body = await fleet.call(
        "POST", f"/api/sessions/{sid}/messages", {"to": to, "text": text, **extra}
    )
    assert status == 202, body
    answer: dict[str, Any] = body
    return answer


async def message(fleet: Fleet, sid: str, mid: str) -> dict[str, Any]:
    status, body = await fleet.call("GET", f"/api/sessions/{sid}/messages/{mid}")
    assert status == 200, body
    answer: dict[str, Any] = body
    return answer


async def wait_message(
    fleet: Fleet, sid: str, mid: str, wanted: set[str], timeout: float = 30.0
) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        found = await message(fleet, sid, mid)
        return found if found["status"] in wanted else None

    return await eventually(check, timeout, f"message {mid} in {sorted(wanted)}")


async def sent_by(fleet: Fleet, phone: str) -> list[dict[str, Any]]:
    """What the simulated network accepted from ``phone``, one entry per message id."""
    async with fleet.http.get(fleet.simwa + "/control/messages", params={"phone": phone}) as r:
        assert r.status == 200
        found: list[dict[str, Any]] = await r.json()
        return found


async def channel(
    fleet: Fleet, path: str, body: dict[str, Any], signed_as: str
) -> tuple[int, Any]:
    """A request on the command channel, signed with ``signed_as``'s derived secret."""
    raw = json.dumps(body).encode()
    ts = time.time_ns() // 1_000_000
    secret = session_secret(WEBHOOK_SECRET, signed_as)
    headers = {
        TIMESTAMP_HEADER: str(ts),
        SIGNATURE_HEADER: sign(secret, ts, raw),
        "Content-Type": "application/json",
    }
    async with fleet.http.post(fleet.api + path, data=raw, headers=headers) as r:
        return r.status, await r.json()
