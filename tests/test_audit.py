"""The audit trail against a real serve: actions, refusals, filters, paging, the flood rule."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from core.audit import Audit, Entry
from core.clock import SystemClock
from tests.fleet import PHONE, Fleet
from tests.keyring import OTHER_PHONE, call_as, issue, provision_as


async def _trail(fleet: Fleet, query: str = "") -> list[dict[str, Any]]:
    status, body = await fleet.call("GET", f"/api/v1/audit?limit=1000{query}")
    assert status == 200, body
    entries: list[dict[str, Any]] = body["entries"]
    return entries


async def test_actions_and_refusals_are_recorded_without_secrets(fleet: Fleet) -> None:
    """Catches an action missing from the trail, a refusal not recorded (or recorded as
    done), the wrong actor or origin, a filter that does not filter, paging that repeats or
    skips, and a message's text or a key's value written into an entry."""
    a = await issue(fleet, "client-a", "client")
    b = await issue(fleet, "client-b", "client")
    reader = await issue(fleet, "reader", "read")
    mine = await provision_as(fleet, a["key"], PHONE)
    theirs = await provision_as(fleet, b["key"], OTHER_PHONE)
    secret_text = "the-private-words-of-a-customer"
    status, _ = await call_as(
        fleet,
        a["key"],
        "POST",
        f"/api/sessions/{mine}/messages",
        {"to": "14155550123", "text": secret_text},
    )
    assert status == 202
    assert (await call_as(fleet, a["key"], "POST", f"/api/sessions/{theirs}/restart"))[0] == 404
    assert (await call_as(fleet, reader["key"], "POST", "/api/sessions/provision", {}))[0] == 403
    assert (await call_as(fleet, a["key"], "POST", f"/api/sessions/{mine}/stop"))[0] == 200
    status, _ = await fleet.call("PUT", f"/api/sessions/{mine}/limits", {"perMinute": 3})
    assert status == 200

    entries = await _trail(fleet)
    seen = [
        (e["actor"], e["action"], e.get("session"), e["result"], e.get("reason")) for e in entries
    ]
    assert seen == [
        ("admin", "key_create", None, "done", None),
        ("admin", "key_create", None, "done", None),
        ("admin", "key_create", None, "done", None),
        ("client-a", "provision", mine, "done", None),
        ("client-b", "provision", theirs, "done", None),
        ("client-a", "message", mine, "done", None),
        ("client-a", "restart", theirs, "refused", "not_found"),
        ("reader", "provision", None, "refused", "forbidden"),
        ("client-a", "stop", mine, "done", None),
        ("admin", "limits", mine, "done", None),
    ]
    assert all(e["via"] == "rest" and e["from"] == "127.0.0.1" for e in entries)
    assert all(isinstance(e["at"], int) and e["at"] > 1_700_000_000_000 for e in entries)
    text = str(entries)
    for never in (secret_text, a["key"], b["key"], reader["key"]):
        assert never not in text

    assert [e["action"] for e in await _trail(fleet, f"&session={theirs}")] == [
        "provision",
        "restart",
    ]
    assert len(await _trail(fleet, "&actor=client-a")) == 4

    since, paged = "0", []
    while True:
        _, page = await fleet.call("GET", f"/api/v1/audit?since={since}&limit=3")
        if not page["entries"]:
            break
        paged += page["entries"]
        since = page["next"]
    assert paged == entries

    for bad in ("?limit=0", "?since=abc", "?since=1-", "?limit=5000", "?colour=red"):
        status, body = await fleet.call("GET", f"/api/v1/audit{bad}")
        assert (status, body["error"]["code"]) == (400, "invalid_input"), bad


async def test_a_flood_of_refusals_is_one_counted_entry(fleet: Fleet) -> None:
    """Catches a guessing loop that fills the trail entry by entry (past 30 refused a minute
    one entry must count the rest) and a flood entry without its count; and one actor's
    flood silencing another's refusals."""
    a = await issue(fleet, "client-a", "client", ratePerS=1000)
    b = await issue(fleet, "client-b", "client")
    theirs = await provision_as(fleet, b["key"], OTHER_PHONE)
    if time.time() % 60 > 50:  # the rule counts per minute: start inside one
        await asyncio.sleep(61 - time.time() % 60)
    for _ in range(45):
        status, _ = await call_as(fleet, a["key"], "POST", f"/api/sessions/{theirs}/restart")
        assert status == 404
    assert (await call_as(fleet, b["key"], "DELETE", "/api/v1/proxies/p1"))[0] == 403

    refused = await _trail(fleet, "&actor=client-a")
    assert len(refused) == 31
    assert all(e["result"] == "refused" for e in refused)
    assert [e["reason"] for e in refused[:30]] == ["not_found"] * 30
    assert refused[30]["reason"] == "flood" and refused[30]["count"] == 15
    others = await _trail(fleet, "&actor=client-b")
    assert [(e["action"], e.get("reason")) for e in others] == [
        ("provision", None),
        ("proxy_remove", "forbidden"),
    ]


async def test_entries_past_the_retention_are_trimmed(redis_client: Any) -> None:
    """Catches a trail that grows for ever (or trims by count and loses recent entries):
    an entry older than AUDIT_RETENTION_DAYS goes at the next append, a recent one stays."""
    day = 86_400_000
    now = int(time.time() * 1000)
    await redis_client.xadd("wafleet:audit", {"actor": "old"}, id=f"{now - 2 * day}-0")
    await redis_client.xadd("wafleet:audit", {"actor": "recent"}, id=f"{now - day // 2}-0")
    trail = Audit(redis_client, SystemClock(), retention_days=1)
    await trail.record(Entry("admin", "rest", "backup", "done"))
    entries, _ = await trail.page()
    assert [e["actor"] for e in entries] == ["recent", "admin"]
