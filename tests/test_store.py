"""The store's invariants, against a real Redis: the Lua scripts under concurrency."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from core.models import ProxyStatus
from core.store import ReservationRefused, Store

P1 = "socks5h://u:p@127.0.0.1:1"
P2 = "socks5h://u:p@127.0.0.1:2"
PHONE = "972501234567"


@pytest.fixture
async def store(redis_client: aioredis.Redis) -> Store:
    store = Store(redis_client)
    for url in (P1, P2):
        await store.add_proxy(url)
    return store


async def _members(store: Store, url: str) -> int:
    return int(await store.redis.scard(f"proxy:{url}:members"))


async def test_reservations_under_concurrency_never_exceed_the_cap(store: Store) -> None:
    results = await asyncio.gather(
        *(store.reserve("", "", 4, 4, 1) for _ in range(50)), return_exceptions=True
    )
    ok = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, ReservationRefused)]
    assert (len(ok), len(refused)) == (8, 42)
    assert {r.why for r in refused} == {"no_capacity"}
    for url in (P1, P2):
        assert await store.redis.get(f"proxy:{url}:sessions") == "4"
        assert await _members(store, url) == 4
    assert len({sid for sid, _ in ok}) == 8  # every id distinct


async def test_least_loaded_then_sticky(store: Store) -> None:
    _, first = await store.reserve("", "", 4, 4, 1)
    _, second = await store.reserve("", "", 4, 4, 1)
    assert {first, second} == {P1, P2}  # least loaded spreads them
    sid, proxy = await store.reserve(PHONE, "", 4, 4, 1)
    await store.mark_connected(sid, PHONE, 2)
    assert await store.redis.get(f"phone:{PHONE}:proxy") == proxy
    for _ in range(2):  # sticky: the phone stays on its proxy although the other is emptier
        assert (await store.reserve(PHONE, "", 4, 4, 1))[1] == proxy
    with pytest.raises(ReservationRefused) as refused:
        await store.reserve(PHONE, "", 4, 5, 1)
    assert refused.value.why == "sticky_full"


async def test_phone_limit_and_refusals_write_nothing(store: Store) -> None:
    await store.reserve(PHONE, "", 4, 1, 1)
    before = sorted(await store.redis.keys("*"))
    for args, why in [
        ((PHONE, "", 4, 1, 1), "phone_limit"),
        (("", "socks5h://x:y@h:9", 4, 4, 1), "unknown_proxy"),
    ]:
        with pytest.raises(ReservationRefused) as refused:
            await store.reserve(*args)
        assert refused.value.why == why
    assert sorted(await store.redis.keys("*")) == before


async def test_failover_moves_slot_and_sticky_release_keeps_sticky(store: Store) -> None:
    sid, old = await store.reserve(PHONE, P1, 4, 4, 1)
    await store.mark_connected(sid, PHONE, 2)
    await store.set_proxy_status(old, ProxyStatus.BAD)
    new = await store.failover(sid, 4)
    assert new == P2
    assert await store.redis.get(f"proxy:{P1}:sessions") == "0"
    assert await store.redis.get(f"proxy:{P2}:sessions") == "1"
    assert await store.redis.get(f"phone:{PHONE}:proxy") == P2
    await store.set_proxy_status(P2, ProxyStatus.BAD)
    assert await store.failover(sid, 4) is None  # nowhere to go: nothing moves
    assert await store.redis.get(f"session:{sid}:proxy") == P2
    assert await store.release(sid)
    assert await store.redis.get(f"proxy:{P2}:sessions") == "0"
    assert await store.redis.get(f"phone:{PHONE}:proxy") == P2
    assert await store.redis.get(f"phone:{PHONE}:session") is None


async def test_recount_repairs_drifted_counters(store: Store) -> None:
    sid, url = await store.reserve("", P1, 4, 4, 1)
    await store.redis.set(f"proxy:{url}:sessions", 3)
    await store.redis.sadd(f"proxy:{url}:members", "worker_404")  # a ghost
    assert await store.recount() == 1
    assert await store.redis.get(f"proxy:{url}:sessions") == "1"
    assert await store.redis.smembers(f"proxy:{url}:members") == {sid}


async def test_remove_proxy_refuses_while_in_use(store: Store) -> None:
    sid, url = await store.reserve("", P1, 4, 4, 1)
    assert await store.remove_proxy(url) == -1
    await store.release(sid)
    assert await store.remove_proxy(url) == 1
    assert await store.remove_proxy(url) == 0


async def test_claim_gives_a_parked_session_a_real_slot(store: Store) -> None:
    sid, url = await store.reserve(PHONE, P1, 1, 4, 1)
    await store.mark_connected(sid, PHONE, 2)
    # a restore parked a session on P1 without a slot (P1 was full): not a member
    await store.redis.sadd("wafleet:sessions", "worker_90")
    await store.redis.set("session:worker_90:proxy", P1)
    assert await store.claim("worker_90", 1) == P2  # P1 is full: moved to P2, slot taken
    assert await store.redis.get(f"proxy:{P2}:sessions") == "1"
    assert await store.claim("worker_90", 1) == P2  # holds its slot: stays
    assert await store.redis.get(f"proxy:{P2}:sessions") == "1"
    await store.redis.sadd("wafleet:sessions", "worker_91")
    await store.redis.set("session:worker_91:proxy", P1)
    assert await store.claim("worker_91", 1) is None  # no room anywhere: nothing written
    assert await store.redis.get(f"proxy:{P1}:sessions") == "1"
    assert sid == "worker_1"


async def test_connected_event_for_a_deleted_session_writes_nothing(store: Store) -> None:
    from core.store import NoSuchSession

    sid, _ = await store.reserve("", "", 4, 4, 1)
    await store.release(sid)
    before = sorted(await store.redis.keys("*"))
    with pytest.raises(NoSuchSession):
        await store.mark_connected(sid, PHONE, 2)
    assert sorted(await store.redis.keys("*")) == before
