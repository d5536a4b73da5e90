"""What a worker's request to ``/webhook`` may look like, read as it was sent: several events
in one request (what queued while the last one was out), and a body that arrives in pieces.

Real ``serve`` and Redis; the events are posted as a worker posts them (signed with the
session's own secret), so a refusal here is what a worker would meet.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any, cast

from core.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, session_secret, sign
from tests.fleet import API_KEY, WEBHOOK_SECRET, Fleet

PHONES = ("972501234561", "972501234562")


def message(n: int) -> dict[str, Any]:
    return {"messageId": f"wamid-{n}", "from": "972541112233", "text": f"hello {n} ✓"}


async def test_a_batch_of_events_is_applied_in_order_and_a_bad_one_stops_no_other(
    fleet: Fleet,
) -> None:
    """What a worker sends when events queued up while its last request was out. Would have
    caught: one refused event dropping the batch (the worker drops what serve refuses for
    good), a batch applied twice when sent again, an event of another session slipping in."""
    sid = str((await fleet.provision(PHONES[0]))["id"])
    other = str((await fleet.provision(PHONES[1]))["id"])

    def event(kind: str, data: dict[str, Any], sid: str = sid) -> dict[str, Any]:
        return {"id": uuid.uuid4().hex, "sessionId": sid, "type": kind, "data": data}

    bad = event("MESSAGE_IN", {"messageId": "wamid-x", "from": "972541112233", "text": 7})
    batch = [event("MESSAGE_IN", message(1)), bad, event("MESSAGE_IN", message(2))]
    status, answer = await fleet.post_webhook({"sessionId": sid, "events": batch})
    assert status == 200, answer
    assert [r["id"] for r in answer["refused"]] == [bad["id"]]
    assert "data.text" in answer["refused"][0]["error"]

    async def stored() -> list[str]:
        entries = await fleet.redis.xrange(f"wafleet:events:{sid}")
        return [fields["id"] for _, fields in cast("list[tuple[str, dict[str, str]]]", entries)]

    ids = [f"{sid}.{batch[0]['id']}", f"{sid}.{batch[2]['id']}"]
    assert await stored() == ids
    status, answer = await fleet.post_webhook({"sessionId": sid, "events": batch})
    assert status == 200 and await stored() == ids  # sent again: each applied once

    before = await fleet.snapshot()
    for refused in (
        [event("MESSAGE_IN", message(3)), event("MESSAGE_IN", message(4), sid=other)],
        [],
        "not a list",
        [event("MESSAGE_IN", message(5))] * 101,
    ):
        status, answer = await fleet.post_webhook({"sessionId": sid, "events": refused})
        assert status == 400, answer
    assert await fleet.snapshot() == before


async def _post_in_two_segments(
    fleet: Fleet, path: str, body: bytes, headers: dict[str, str]
) -> tuple[int, bytes]:
    """A POST whose body arrives in two TCP segments a moment apart, as a body of tens of
    KiB may over a real network."""
    reader, writer = await asyncio.open_connection("127.0.0.1", fleet.port)
    head = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}"]
    head += [f"{k}: {v}" for k, v in headers.items()] + ["Connection: close", "", ""]
    writer.write("\r\n".join(head).encode() + body[: len(body) // 2])
    await writer.drain()
    await asyncio.sleep(0.3)
    writer.write(body[len(body) // 2 :])
    await writer.drain()
    answer = await reader.read()
    writer.close()
    status = int(answer.split(b" ", 2)[1])
    return status, answer.split(b"\r\n\r\n", 1)[1]


async def test_a_body_that_arrives_in_pieces_is_read_whole(fleet: Fleet) -> None:
    """Would have caught: one read of the body taking only what had arrived, so a worker's
    batch split by the network failed its signature (401: dropped by the worker) and a REST
    body was "not valid JSON"."""
    sid = str((await fleet.provision(PHONES[0]))["id"])
    events = [
        {"id": uuid.uuid4().hex, "sessionId": sid, "type": "MESSAGE_IN", "data": message(n)}
        for n in range(60)
    ]
    raw = json.dumps({"sessionId": sid, "events": events}).encode()
    assert len(raw) > 8 * 1024
    ts = time.time_ns() // 1_000_000
    signed = {
        TIMESTAMP_HEADER: str(ts),
        SIGNATURE_HEADER: sign(session_secret(WEBHOOK_SECRET, sid), ts, raw),
        "Content-Type": "application/json",
    }
    status, answer = await _post_in_two_segments(fleet, "/webhook", raw, signed)
    assert status == 200, answer
    assert await fleet.redis.xlen(f"wafleet:events:{sid}") == 60

    body = json.dumps({"to": "972541112233", "text": "x" * 3000}).encode()
    rest = {"X-API-Key": API_KEY, "Content-Type": "application/json"}
    status, answer = await _post_in_two_segments(
        fleet, f"/api/sessions/{sid}/messages", body, rest
    )
    assert status == 202, answer
