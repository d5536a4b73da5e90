"""What Redis keeps or computes for a fleet of 10,000, checked against the truth.

The listing reads a range of an order index, stats count statuses inside Redis, and the
watchdog is handed only the sessions that have not pinged within the timeout. Each must equal
what a full read of every record says, after any mix of provisions, status changes, pings,
failovers, deletes and restores, across a Redis restart, and on data written before the index
existed. And each must read O(page) or O(stale) values, not O(fleet): the bytes Redis sends
the client are counted, since that is what cost seconds at 10,000 sessions.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from core import fleet_stats
from core.clock import ManualClock
from core.history import ConnectedHistory
from core.models import ProxyStatus, Status
from core.sessions import at_rest
from core.store import Liveness, ReservationRefused, Store, id_order
from tests.aof_redis import AofRedis

PROXIES = [f"socks5h://u:p@127.0.0.1:{port}" for port in range(1, 7)]
LATER = [f"socks5h://u:p@127.0.0.1:{port}" for port in range(7, 11)]  # added, removed
CAP = 4
TIMEOUT = 1_000
STATUSES = [s.value for s in Status]
REASONS = [None, "starting", "crash_loop", "no_proxy_capacity", "stopped", "connection_lost"]


@pytest.fixture
async def store(aof_redis: AofRedis) -> AsyncIterator[Store]:
    """A store on a Redis of its own that can be restarted (its data kept in an AOF)."""
    store = Store.connect(aof_redis.url)
    for url in PROXIES:
        await store.add_proxy(url)
    yield store
    await store.close()


async def _truth(store: Store) -> dict[str, dict[str, str | None]]:
    """Every session's status, reason, lastPing and created, read key by key."""
    r = store.redis
    found = {}
    fields = ("status", "reason", "lastPing", "created")
    for sid in map(str, await r.smembers("wafleet:sessions")):
        values = await r.mget([f"session:{sid}:{f}" for f in fields])
        found[sid] = {
            f: None if v is None else str(v) for f, v in zip(fields, values, strict=True)
        }
    return found


async def _scored(store: Store, key: str) -> list[tuple[str, float]]:
    """A sorted set's members with their scores, lowest first."""
    found: list[tuple[str, float]] = await store.redis.zrange(  # type: ignore[assignment]
        key, 0, -1, withscores=True
    )
    return [(str(member), float(score)) for member, score in found]


async def _check(store: Store, now: int) -> None:
    """Every index and count equals what the records say."""
    truth = await _truth(store)
    ordered = sorted(truth, key=id_order)
    index = await _scored(store, "wafleet:session_order")
    assert [sid for sid, _ in index] == ordered
    assert all(score == id_order(sid)[0] for sid, score in index)

    # The listing, walked in pages of any size, is the whole fleet in id order, once.
    walked: list[str] = []
    cursor: str | None = None
    while True:
        page, cursor, total = await store.session_page(cursor, random.randint(1, 7))
        assert total == len(truth)
        walked += [r.id for r in page]
        if cursor is None:
            break
    assert walked == [sid for sid in ordered if truth[sid]["status"] is not None]
    assert await store.session_ids() == ordered

    counted = Counter(t["status"] for t in truth.values() if t["status"] is not None)
    assert await store.status_counts() == dict(counted)
    stats = await fleet_stats.read(store, CAP)
    assert stats.by_status == {s: counted.get(s, 0) for s in STATUSES} | dict(counted)
    assert stats.sessions == sum(counted.values())
    sample = await ConnectedHistory(store.redis, ManualClock()).sample(store)  # the chart
    assert (sample.connected, sample.sessions) == (counted["connected"], sum(counted.values()))

    # The watchdog's rule over every record, against the rule over what liveness hands it.
    def stale(s: Liveness) -> bool:
        return not at_rest(s) and now - (s.last_ping or s.created) > TIMEOUT

    everyone = [
        Liveness(
            sid,
            str(t["status"]),
            t["reason"],
            int(t["lastPing"]) if t["lastPing"] else None,
            int(t["created"] or 0),
        )
        for sid, t in truth.items()
        if t["status"] is not None
    ]
    handed = await store.liveness(now - TIMEOUT)
    assert [s.id for s in handed] == sorted((s.id for s in handed), key=id_order)
    assert {s.id for s in handed if stale(s)} == {s.id for s in everyone if stale(s)}
    by_id = {s.id: s for s in everyone}
    assert all(by_id[s.id] == s for s in handed)  # what it is handed is what Redis holds
    await _check_loads(store)


async def _check_loads(store: Store) -> None:
    """The proxy load index holds every pooled active proxy with its count, and no other."""
    loads = await _scored(store, "wafleet:proxy_load")
    pool = await _pool(store)
    assert {url: int(n) for url, n in loads} == {
        url: n for url, (status, n) in pool.items() if status == ProxyStatus.ACTIVE
    }


async def _pool(store: Store) -> dict[str, tuple[str | None, int]]:
    """Every pooled proxy's status and count, read key by key."""
    found = {}
    for url in map(str, await store.redis.smembers("wafleet:proxies")):
        status, count = await store.redis.mget(f"proxy:{url}:status", f"proxy:{url}:sessions")
        found[url] = (None if status is None else str(status), int(count or 0))
    return found


async def _least_loaded_by_hand(store: Store) -> str | None:
    """The load-distribution rule over every proxy: the active one with the
    fewest sessions under the cap, the smallest URL of a tie."""
    usable = [
        (n, url) for url, (s, n) in (await _pool(store)).items() if s == "active" and n < CAP
    ]
    return min(usable)[1] if usable else None


async def _mixed_operations(store: Store, rng: random.Random, now: int, steps: int) -> None:
    """Provisions (with and without phone or proxy), status and reason writes, QRs, links,
    pings old and new, proxy failures and failovers, deletes and restores of deleted ids."""
    deleted: list[tuple[str, str | None, str]] = []
    for _ in range(steps):
        ids = sorted(map(str, await store.redis.smembers("wafleet:sessions")), key=id_order)
        op = rng.choice(
            ["reserve"] * 4
            + ["status", "ping", "qr", "link", "fail", "release", "restore"]
            + ["add proxy", "remove proxy", "recount"]
        )
        sid = rng.choice(ids) if ids else None
        if op == "reserve" or sid is None:
            phone = rng.choice(["", f"9725012345{rng.randint(10, 30)}"])
            proxy = rng.choice(["", "", rng.choice(PROXIES)])
            expected = await _least_loaded_by_hand(store)
            why = ""
            try:
                _, chosen = await store.reserve(
                    phone, proxy, CAP, 4, now - rng.randint(0, 3 * TIMEOUT)
                )
            except ReservationRefused as refused:
                chosen, why = None, refused.why
            if not phone and not proxy:  # no sticky proxy, none named: the least loaded
                assert chosen == expected, why
        elif op == "add proxy":
            await store.add_proxy(rng.choice(LATER))
        elif op == "remove proxy":
            await store.remove_proxy(rng.choice(PROXIES + LATER + LATER))
        elif op == "recount":
            await store.recount()
        elif op == "status":
            status = rng.choice(STATUSES)
            await store.set_fields(sid, status=status, reason=rng.choice(REASONS))
        elif op == "ping":
            await store.touch_ping(sid, now - rng.randint(0, 3 * TIMEOUT))
        elif op == "qr":
            await store.set_qr(sid, "2@qr", now + 60_000, 60_000)
        elif op == "link":
            await store.mark_connected(sid, f"9725099{rng.randint(10000, 10020)}", now)
        elif op == "fail":
            url = rng.choice(PROXIES)
            await store.set_proxy_status(url, rng.choice(list(ProxyStatus)))
            for moved in await store.sessions_on(url):
                await store.failover(moved, CAP)
        elif op == "release":
            record = await store.get_session(sid)
            assert record is not None
            assert await store.release(sid)
            deleted.append((sid, record.phone, record.proxy))
        elif op == "restore" and deleted:
            old, old_phone, proxy = deleted.pop(rng.randrange(len(deleted)))
            await store.restore_session(old, old_phone, proxy, CAP, now - 5 * TIMEOUT, now)
        # After every step, not only at the end: a provision that meets a wrong entry puts
        # it right, which would hide a script that forgot to.
        await _check_loads(store)


async def test_every_index_equals_the_records_after_mixed_operations_and_a_redis_restart(
    store: Store, aof_redis: AofRedis
) -> None:
    rng = random.Random(11)
    now = 10_000_000
    await _mixed_operations(store, rng, now, 150)
    assert len(await store.session_ids()) > 10  # the mix left a fleet worth checking
    await _check(store, now)

    aof_redis.stop()
    aof_redis.start()  # the store's pooled connections reconnect by themselves
    await _check(store, now)
    await _mixed_operations(store, rng, now, 150)
    await _check(store, now + TIMEOUT)

    # A failed restore puts back a snapshot: the index comes back with the sessions.
    snapshot = await store.fleet_snapshot()
    await _mixed_operations(store, rng, now, 40)
    await store.restore_fleet(snapshot)
    await _check(store, now)


async def test_data_from_before_the_index_is_indexed_on_first_read(store: Store) -> None:
    for i in range(9):
        await store.reserve("", PROXIES[i % 3], CAP, 4, 1)
    await store.release("worker_4")
    # As an older wafleet left it: the sessions set, and no order index.
    await store.redis.delete("wafleet:session_order")
    page, cursor, total = await store.session_page(None, 3)
    assert ([r.id for r in page], cursor, total) == (
        ["worker_1", "worker_2", "worker_3"],
        "worker_3",
        8,
    )
    page, cursor, _ = await store.session_page(cursor, 3)
    assert [r.id for r in page] == ["worker_5", "worker_6", "worker_7"]
    assert await store.redis.zcard("wafleet:session_order") == 8

    # A snapshot taken before the index (a restore puts it back as it was): built again.
    snapshot = await store.fleet_snapshot()
    old = type(snapshot)(tuple(k for k in snapshot.keys if k[0] != b"wafleet:session_order"))
    await store.restore_fleet(old)
    assert not await store.redis.exists("wafleet:session_order")
    ids = ["worker_1", "worker_2", "worker_3", "worker_5"]
    ids += ["worker_6", "worker_7", "worker_8", "worker_9"]
    assert await store.session_ids() == ids
    assert not await store.index_sessions()  # right already: nothing rewritten

    # The proxy load index, absent in older data, is built by the first provision.
    await store.redis.delete("wafleet:proxy_load")
    assert (await store.reserve("", "", CAP, 4, 1))[1] == PROXIES[3]  # the first empty one
    await _check_loads(store)
    # An index gone wrong (a hand edit, an older version's crash) is rebuilt by recount.
    await store.redis.zadd("wafleet:proxy_load", {PROXIES[4]: 3, LATER[0]: 0})
    assert await store.recount() == 0  # the counts were right
    await _check_loads(store)
    # A proxy added, then removed, leaves the index as it found it.
    assert await store.add_proxy(LATER[1])
    assert await store.redis.zscore("wafleet:proxy_load", LATER[1]) == 0
    assert await store.remove_proxy(LATER[1]) == 1
    await _check_loads(store)

    # Sessions gone from the set by other hands (a reconcile's orphans): gone from the
    # listing, down to the last one; an emptied set must not pass for an index that agreed.
    ids = await store.session_ids()
    await store.redis.srem("wafleet:sessions", ids[-1])
    assert await store.session_ids() == ids[:-1]
    await store.redis.delete("wafleet:sessions")
    assert await store.session_ids() == []
    assert await store.session_page(None, 3) == ([], None, 0)


async def _bytes_sent(redis: aioredis.Redis) -> int:
    return int((await redis.info("stats"))["total_net_output_bytes"])


async def test_a_page_stats_and_a_quiet_watchdog_pass_read_little_of_a_big_fleet(
    store: Store,
) -> None:
    """At 3,000 sessions the ids alone are ~40 kB and the records ~1 MB; a page of 5, the
    counts, and a watchdog pass with nothing overdue must each get a few kB at most."""
    now = 50_000_000
    await store.add_proxy(big := "socks5h://u:p@127.0.0.1:99")
    for _ in range(3_000):
        await store.reserve("", big, 10_000, 4, now)
    await store.session_page(None, 5)  # a first read may build the index: not measured

    for read in (
        lambda: store.session_page("worker_1500", 5),
        lambda: store.status_counts(),
        lambda: store.liveness(now - TIMEOUT),
    ):
        before = await _bytes_sent(store.redis)
        await read()
        # INFO's own reply (~1.5 kB) is in the count.
        assert await _bytes_sent(store.redis) - before < 8_000

    page, cursor, total = await store.session_page("worker_1500", 5)
    assert ([r.id for r in page], cursor, total) == (
        [f"worker_{n}" for n in range(1501, 1506)],
        "worker_1505",
        3_000,
    )
    assert await store.status_counts() == {"pending": 3_000}
    assert await store.liveness(now - TIMEOUT) == []
    assert len(await store.liveness(now + 1)) == 3_000  # a millisecond later all are overdue


async def _calls(redis: aioredis.Redis, *commands: str) -> int:
    """How many times Redis ran these commands since its stats were reset (inside scripts
    included): what a script reads, since its work never crosses the wire."""
    stats = await redis.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in commands)


async def test_a_provision_reads_a_few_proxies_of_a_big_pool(store: Store) -> None:
    """At 2,500 proxies a provision that read every one of them took minutes to seed 10,000
    sessions. With 1,000 in the pool, one reads a handful, and still picks the least loaded."""
    many = [f"socks5h://u:p@127.0.0.1:{port}" for port in range(20_000, 21_000)]
    for url in many:
        await store.add_proxy(url)
    await store.set_proxy_status(many[0], ProxyStatus.BAD)
    expected = await _least_loaded_by_hand(store)
    await store.redis.config_resetstat()
    _, chosen = await store.reserve("", "", CAP, 4, 1)
    assert chosen == expected
    assert await _calls(store.redis, "get", "sismember", "smembers", "mget") < 50
