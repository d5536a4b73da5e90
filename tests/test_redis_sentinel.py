"""The Redis side of high availability, on a real Sentinel group (tests/sentinel_redis.py):
the client that follows a promotion, the errors that mean "switching", and the promise that
waits for a replica on the connection that wrote."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from core import redis_client
from core.promise import NotReplicated, Promises
from tests.sentinel_redis import SentinelGroup


def sentinel_client(group: SentinelGroup) -> aioredis.Redis:
    addresses = tuple(("127.0.0.1", s.port) for s in group.sentinels)
    return redis_client.via_sentinel(addresses, "wafleet", group.first_primary.url)


@pytest.fixture
async def client(sentinel_group: SentinelGroup) -> AsyncIterator[aioredis.Redis]:
    found = sentinel_client(sentinel_group)
    yield found
    await found.aclose()


def replica_pid(group: SentinelGroup) -> int:
    (replica,) = [n for n in group.nodes if n is not group.first_primary]
    assert replica.proc is not None
    return replica.proc.popen.pid


async def test_a_promise_waits_on_the_connection_that_wrote(
    sentinel_group: SentinelGroup, client: aioredis.Redis
) -> None:
    """Caught: a WAIT run on whatever pooled connection is free. A connection that wrote
    nothing "has" every replica already, so its WAIT answers at once and the 2xx promises a
    write the replica never got (here: a replica frozen with SIGSTOP, still connected)."""
    other = sentinel_client(sentinel_group)
    pid = replica_pid(sentinel_group)
    promises = Promises(client, replicas=1, wait_ms=300)
    await promises.keep(0)  # replica running: kept
    os.kill(pid, signal.SIGSTOP)
    try:
        await other.set("written-elsewhere", "1")  # another connection's write
        # The trap: a WAIT alone, on a connection that wrote nothing, says 1 replica at once.
        started = time.monotonic()
        assert await client.wait(1, 300) == 1
        assert time.monotonic() - started < 0.2
        with pytest.raises(NotReplicated) as refused:
            await promises.keep(0)
        assert refused.value.code == "redis_unavailable"
    finally:
        os.kill(pid, signal.SIGCONT)
        await other.aclose()
    await promises.keep(0)  # the replica caught up: kept again
    assert await client.get("written-elsewhere") == "1"


async def test_concurrent_promises_share_one_wait(client: aioredis.Redis) -> None:
    """Caught: one WAIT per answer (a burst of 200 answers = 200 replica round trips on 200
    pooled connections), and a promise that joins a WAIT already under way (that WAIT was
    sent before its writes, so it would not cover them)."""
    promises = Promises(client, replicas=1, wait_ms=1000)
    await asyncio.gather(*(promises.keep(0) for _ in range(200)))
    assert promises.waits <= 3  # the first alone, the rest in one or two batches
    before = promises.waits
    await promises.keep(0)  # a later promise never rides on a finished WAIT
    assert promises.waits == before + 1


async def test_the_client_follows_a_promotion_and_keeps_what_was_promised(
    sentinel_group: SentinelGroup, client: aioredis.Redis
) -> None:
    """Caught: a client that keeps talking to the address it started with (REDIS_URL);
    errors during the switch that the API would answer with a 500 (every failure while the
    primary is gone must be one that ``switching`` recognises: a 503 for the caller); and a
    request that spanned the switch answered with its 2xx, though what it wrote before the
    switch may be lost (a WAIT retried on the new primary would pass)."""
    promises = Promises(client, replicas=1, wait_ms=1000)
    await client.set("before", "kept")
    first = sentinel_group.first_primary.port
    assert await redis_client.primary_view(client) == (f"127.0.0.1:{first}", 1)
    await promises.keep(0)
    since = promises.switches()  # a request that began here...
    old = sentinel_group.kill_primary()
    killed = time.monotonic()
    failures: list[BaseException] = []
    promoted: float | None = None
    n = 0
    while time.monotonic() - killed < 30:
        n += 1
        try:
            await client.set(f"during:{n}", n)
        except Exception as exc:
            failures.append(exc)
            continue
        promoted = time.monotonic()
        break
    assert promoted is not None, failures[-1:]
    assert [f for f in failures if not redis_client.switching(f)] == []
    new_port, _ = await sentinel_group.wait_promoted(old.port)
    assert (await client.info("server"))["tcp_port"] == new_port
    assert redis_client.primary_switches(client) == 1
    assert await redis_client.primary_view(client) == (f"127.0.0.1:{new_port}", 0)
    with pytest.raises(NotReplicated):  # ...and ends after the switch: a 503, not its 2xx
        await promises.keep(since)
    assert await client.get("before") == "kept"
    print(f"writes failed for {promoted - killed:.2f} s ({len(failures)} errors) until {new_port}")


async def test_replies_of_a_switch_are_told_from_bugs(
    sentinel_group: SentinelGroup,
) -> None:
    """Caught: READONLY (a demoted primary) or MASTERDOWN (a replica cut from its primary)
    answered as a 500 instead of a 503 to retry; and the opposite, a real bug (WRONGTYPE)
    hidden as 'Redis unavailable'."""
    (replica,) = [n for n in sentinel_group.nodes if n is not sentinel_group.first_primary]
    async with aioredis.Redis(port=replica.port) as direct:
        with pytest.raises(ResponseError) as readonly:
            await direct.set("x", "1")
        assert redis_client.switching(readonly.value)
        await direct.config_set("replica-serve-stale-data", "no")
        await direct.replicaof("127.0.0.1", 1)  # a primary that is not
        with pytest.raises(ResponseError) as masterdown:
            await direct.get("x")
        assert "MASTER is down" in str(masterdown.value)
        assert redis_client.switching(masterdown.value)
    async with aioredis.Redis(port=sentinel_group.first_primary.port) as primary:
        await primary.set("a-string", "1")
        with pytest.raises(ResponseError) as wrongtype:
            await primary.lpush("a-string", "2")
        assert not redis_client.switching(wrongtype.value)
        await primary.set("not-a-number", "x")
        with pytest.raises(ResponseError) as not_a_number:
            await primary.incr("not-a-number")
        assert not redis_client.switching(not_a_number.value)
        # A reply redis-py has no class for keeps its code: UNBLOCKED, from a demoted primary.
        unblocked = ResponseError("UNBLOCKED force unblock from blocking operation")
        assert redis_client.switching(unblocked)


async def test_one_redis_is_its_own_primary_with_no_replicas(redis_server: str) -> None:
    """Caught: the cluster view of a single Redis (no Sentinel) naming no address or
    failing, as if a Sentinel pool were always there."""
    client = redis_client.from_url(redis_server)
    try:
        port = redis_server.rsplit(":", 1)[1].split("/")[0]
        assert await redis_client.primary_view(client) == (f"127.0.0.1:{port}", 0)
        assert redis_client.primary_switches(client) == 0
    finally:
        await client.aclose()


async def test_a_read_never_stays_on_a_primary_the_sentinels_replaced(
    sentinel_group: SentinelGroup, client: aioredis.Redis
) -> None:
    """Caught: a pooled connection kept to the old primary after the Sentinels promoted its
    replica (redis-py asks them only when it makes a new connection). A primary frozen and
    thawed answered reads there with data the new primary had moved past: "no such message"
    for one accepted a moment before, a wrong answer where the API owes a 2xx or a 503."""
    first = sentinel_group.first_primary.port
    assert (await client.info("server"))["tcp_port"] == first  # the pool holds a connection
    with SentinelGroup.client(sentinel_group.sentinels[0].port) as sentinel:
        sentinel.execute_command("SENTINEL", "FAILOVER", "wafleet")  # the old one lives on
    new_port, _ = await sentinel_group.wait_promoted(first)
    await asyncio.sleep(redis_client.REDISCOVER_S)
    assert (await client.info("server"))["tcp_port"] == new_port
    assert (await client.info("replication"))["role"] == "master"
