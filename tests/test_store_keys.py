"""The fixed Redis keys, byte for byte, whichever script writes them, and one place for them.

The Lua scripts name keys through ``core.keys`` (in ``KEYS[]`` or from its formats), so these
tests spell the expected keys out literally: a format that drifts fails here.
"""

from __future__ import annotations

import re
from dataclasses import replace
from importlib import resources

import pytest
import redis.asyncio as aioredis

from core.clock import ManualClock
from core.errors import NotFound
from core.event_log import EventLog
from core.messages import MessageService
from core.models import ProxyStatus
from core.settings import Settings
from core.store import Store

P1 = "socks5h://u:p@127.0.0.1:1"
P2 = "socks5h://u:p@127.0.0.1:2"
P3 = "socks5h://u:p@127.0.0.1:3"
# Braces, a Lua pattern character and a format placeholder: a key built by substitution
# must carry the URL as it is.
ODD = "socks5h://u:p%25{url}%7D@127.0.0.1:3"
PHONE = "972501234567"
OTHER = "972509999999"
POOL = ["wafleet:proxies"] + [f"proxy:{u}:{k}" for u in (P1, P2) for k in ("sessions", "status")]
POOL.append("wafleet:proxy_load")  # ours: the active proxies by load


@pytest.fixture
async def store(redis_client: aioredis.Redis) -> Store:
    store = Store(redis_client)
    for url in (P1, P2):
        await store.add_proxy(url)
    return store


async def _keys(store: Store) -> list[str]:
    """Every key but the provisions' one-minute receipts (``test_a_resent_*`` has those)."""
    found = [str(k) for k in await store.redis.keys("*")]
    return sorted(k for k in found if not k.startswith("wafleet:provision:"))


def test_no_script_spells_a_key() -> None:
    """Key formats live in ``core/keys.py`` only (restore_session.lua is the backups' own)."""
    lua = resources.files("core").joinpath("lua")
    spelled = re.compile(r"""['"](session|phone|proxy|wafleet):""")
    found = {
        f.name: spelled.findall(f.read_text())
        for f in lua.iterdir()
        if f.name.endswith(".lua") and f.name != "restore_session.lua"
    }
    assert {name: hits for name, hits in found.items() if hits} == {}


async def test_a_session_life_writes_exactly_the_spec_keys(store: Store) -> None:
    sid, proxy = await store.reserve(PHONE, P1, 4, 4, 7)
    assert (sid, proxy) == ("worker_1", P1)
    session = [f"session:worker_1:{f}" for f in ("created", "lastPing", "phone", "proxy")]
    # Our indexes beside the fixed keys: the ids as a set, and in order (scored by number).
    index = ["wafleet:session_seq", "wafleet:sessions", f"phone:{PHONE}:sessions"]
    index.append("wafleet:session_order")
    slot = [f"proxy:{P1}:members"]
    status = ["session:worker_1:status"]
    assert await _keys(store) == sorted(POOL + session + index + slot + status)
    assert await store.redis.zrange("wafleet:session_order", 0, -1, withscores=True) == [
        ("worker_1", 1.0)
    ]
    assert await store.redis.get("session:worker_1:status") == "pending"

    await store.set_qr(sid, "2@qr", 99, 60_000)
    assert await store.mark_connected(sid, PHONE, 8) is None
    linked = [
        "session:worker_1:status",
        "session:worker_1:connectedAt",
        f"phone:{PHONE}:proxy",
        f"phone:{PHONE}:session",
    ]
    assert await _keys(store) == sorted(POOL + session + index + slot + linked)
    assert await store.redis.mget(
        "session:worker_1:status", f"phone:{PHONE}:proxy", f"phone:{PHONE}:session"
    ) == ["connected", P1, "worker_1"]

    await store.set_proxy_status(P1, ProxyStatus.BAD)
    assert await store.failover(sid, 4) == P2
    assert await store.redis.mget(
        "session:worker_1:proxy", f"phone:{PHONE}:proxy", f"proxy:{P1}:sessions"
    ) == [P2, P2, "0"]
    assert await store.redis.smembers(f"proxy:{P2}:members") == {"worker_1"}

    assert await store.release(sid)
    # The sticky IP outlives the session; the emptied members set is gone with its last id.
    assert await _keys(store) == sorted([*POOL, "wafleet:session_seq", f"phone:{PHONE}:proxy"])
    assert await store.redis.mget(f"proxy:{P1}:sessions", f"proxy:{P2}:sessions") == ["0", "0"]


async def test_linking_another_phone_moves_the_session_between_phone_indexes(
    store: Store,
) -> None:
    sid, _ = await store.reserve(PHONE, "", 4, 4, 1)
    assert await store.mark_connected(sid, OTHER, 2) == PHONE
    assert await store.redis.smembers(f"phone:{PHONE}:sessions") == set()
    assert await store.redis.smembers(f"phone:{OTHER}:sessions") == {sid}
    assert await store.redis.get(f"session:{sid}:phone") == OTHER
    assert await store.redis.get(f"phone:{OTHER}:session") == sid


async def test_keys_of_a_url_with_braces_and_percent_signs(store: Store) -> None:
    await store.set_proxy_status(P1, ProxyStatus.BAD)
    await store.set_proxy_status(P2, ProxyStatus.BAD)
    await store.add_proxy(ODD)
    sid, proxy = await store.reserve(PHONE, "", 4, 4, 1)  # the script picks it: least loaded
    assert proxy == ODD
    await store.mark_connected(sid, PHONE, 2)
    assert await store.redis.mget(
        f"proxy:{ODD}:sessions", f"phone:{PHONE}:proxy", f"session:{sid}:proxy"
    ) == ["1", ODD, ODD]
    await store.set_proxy_status(P2, ProxyStatus.ACTIVE)
    await store.set_proxy_status(ODD, ProxyStatus.BAD)
    assert await store.failover(sid, 4) == P2
    assert await store.redis.get(f"proxy:{ODD}:sessions") == "0"
    assert await store.recount() == 0
    assert await store.remove_proxy(ODD) == 1
    assert not [k for k in await _keys(store) if "{url}" in k]


async def test_an_unknown_stored_proxy_status_reads_as_bad(store: Store) -> None:
    """Scripts place sessions only on ``active``: the typed record must say the same."""
    await store.redis.set(f"proxy:{P1}:status", "retired")
    by_url = {p.url: p.status for p in await store.proxies()}
    assert by_url == {P1: ProxyStatus.BAD, P2: ProxyStatus.ACTIVE}
    assert (await store.reserve("", "", 4, 4, 1))[1] == P2


async def test_a_resent_provision_script_answers_the_same_session(store: Store) -> None:
    """redis-py resends a command whose connection broke, maybe after Redis ran it."""
    sid, proxy = await store.reserve(PHONE, "", 4, 4, 1)
    receipts = [str(k) for k in await store.redis.keys("wafleet:provision:*")]
    assert len(receipts) == 1
    assert 0 < await store.redis.pttl(receipts[0]) <= 60_000
    assert await store.redis.hgetall(receipts[0]) == {"id": sid, "proxy": proxy}
    resend = store._provision  # the very call, same keys and arguments, run a second time
    keys_of_call = [
        "wafleet:proxies",
        "wafleet:sessions",
        "wafleet:session_seq",
        f"phone:{PHONE}:sessions",
        f"phone:{PHONE}:proxy",
        "proxy::status",
        "proxy::sessions",
        receipts[0],
    ]
    assert await resend(keys=keys_of_call, args=[PHONE, "", 4, 4, 1]) == ["ok", sid, proxy]
    assert await store.session_ids() == [sid]
    assert await store.redis.mget(f"proxy:{proxy}:sessions", "wafleet:session_seq") == ["1", "1"]
    assert await store.redis.smembers(f"phone:{PHONE}:sessions") == {sid}


async def test_a_resent_failover_script_moves_the_session_once(store: Store) -> None:
    sid, old = await store.reserve("", P1, 4, 4, 1)
    await store.add_proxy(P3)
    await store.set_proxy_status(old, ProxyStatus.BAD)
    keys = ["wafleet:sessions", f"session:{sid}:proxy"]
    args: list[str | int] = [sid, 4, old]
    first = await store._failover(keys=keys, args=args)
    assert first == P2
    assert await store._failover(keys=keys, args=args) == P2  # the resend: already moved, stays
    assert await store.redis.mget(
        f"proxy:{P1}:sessions", f"proxy:{P2}:sessions", f"proxy:{P3}:sessions"
    ) == ["0", "1", "0"]


async def test_a_deleted_sessions_messages_leave_no_key_behind(store: Store) -> None:
    """Every message key of a session (records, idempotency keys, queue, commands, counts,
    limits, send state) goes in the delete; the one message still queued is reported on the
    operator stream, which drains and then goes too. What stays: the phone's sticky IP, the pool,
    and the fleet's counts (a deleted session's messages still happened)."""
    clock = ManualClock(1_700_000_000_000)
    settings = replace(
        Settings(api_key="k" * 20, webhook_secret="s" * 20, redis_url="redis://unused"),
        messages_per_minute=0,
        messages_per_day=0,
        message_pause_min_ms=0,
        message_pause_max_ms=0,
    )
    messages = MessageService(store, settings, clock)
    events = EventLog(store.redis, 60_000)
    sid, _ = await store.reserve(PHONE, P1, 4, 4, clock.now_ms())
    await store.mark_connected(sid, PHONE, clock.now_ms())
    await messages.set_limits(sid, {"perMinute": 30})
    sent, _ = await messages.accept(sid, OTHER, "one", "order-1")
    handed, _ = await messages.accept(sid, OTHER, "two")
    waiting, _ = await messages.accept(sid, OTHER, "three", "order-3")
    assert [c["id"] for c in (await messages.take(sid))[0]] == [sent.id]
    assert await messages.update(sid, sent.id, "sent", None, ack=True)
    assert [c["id"] for c in (await messages.take(sid))[0]] == [handed.id]
    await messages.count_received(sid)
    own = {k for k in await _keys(store) if sid in k or "wafleet:msg" in k or "message" in k}
    assert own >= {
        f"wafleet:message:{sent.id}",
        f"wafleet:msgkey:{sid}:order-1",
        f"wafleet:msgids:{sid}",
        f"wafleet:outbox:{sid}",
        f"wafleet:commands:{sid}",
        f"wafleet:msgcounts:{sid}",
        f"wafleet:sendlog:{sid}",
        f"wafleet:limits:{sid}",
    }

    await events.drain(sid, "")  # SessionService.delete's order
    assert await store.release(sid)
    assert await messages.forget(sid) == 1  # the queued one; the handed one may be at WhatsApp
    # What was in flight when the session went (a receipt, an incoming message, a send):
    # refused, and no key of the session comes back.
    with pytest.raises(NotFound):
        await events.append(sid, "w-late-0001", "MESSAGE_IN", {"text": "late"}, 2)
    assert not await messages.count_received(sid)
    assert not await messages.update(sid, handed.id, "read", None, ack=False)
    with pytest.raises(NotFound):
        await messages.accept(sid, OTHER, "four", "order-4")
    report = (await events.since(sid, "0-0", 10))[0]
    assert (report.id, report.type, report.data) == (
        f"{sid}.deleted-{waiting.id}",
        "MESSAGE_STATUS",
        {"messageId": waiting.id, "to": OTHER, "status": "failed", "reason": "session_deleted"},
    )
    head = await events.head(sid)
    assert head.deleted and not head.session_exists and head.event == report
    await events.delivered(sid, report.stream_id, clock.now_ms())
    assert await events.forget(sid)  # drained: the lane's last step
    counts = "wafleet:msgcounts"
    assert await _keys(store) == sorted(
        [*POOL, "wafleet:session_seq", f"phone:{PHONE}:proxy", counts]
    )
    assert await store.redis.hgetall(counts) == {"sent": "1", "received": "1", "failed": "1"}


async def test_a_stream_of_a_deleted_id_that_a_restore_brought_back_is_kept(store: Store) -> None:
    events = EventLog(store.redis, 60_000)
    sid, _ = await store.reserve(PHONE, P1, 4, 4, 1)
    assert await events.append(sid, "w-event-0001", "MESSAGE_IN", {"text": "hi"}, 1)
    await events.drain(sid, "")
    assert not await events.forget(sid)  # the session exists: its stream stays, the mark goes
    assert await store.redis.exists(f"wafleet:events:{sid}", f"wafleet:events:{sid}:deleted") == 1
