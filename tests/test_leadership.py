"""The leader's lease and its fence, against a real redis-server.

A frozen leader is played by a monotonic clock that jumps (what a thawed process sees) while
Redis expires its lease and another replica wins: exactly the moment the fence is for.
"""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from core import keys
from core.cluster_bus import ClusterBus
from core.errors import ConfigError
from core.fleet_maintenance import FleetMaintenance
from core.leadership import Leadership, LostLeadership, acting_as_leader
from core.redis_locks import RedisLocks
from core.settings import Settings
from tests.fleet import API_KEY, WEBHOOK_SECRET
from wafleet.leader_work import claim_once


class JumpingClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


async def test_a_leader_frozen_past_its_lease_is_fenced_and_steps_down(
    redis_client: aioredis.Redis,
) -> None:
    """Would catch: a leader that trusts Redis alone (thawed, it acts before it hears that
    it lost), a renewal that takes back a lease another replica won, and a session lock or a
    scheduled run granted to a stale fencing token."""
    clock = JumpingClock()
    a = Leadership(redis_client, "replica-a", 3_000, monotonic=clock)
    b = Leadership(redis_client, "replica-b", 3_000)
    heard: list[bool] = []

    async def listener(leading: bool) -> None:
        heard.append(leading)

    a.on_change(listener)
    await a.step()
    await b.step()
    assert a.is_leader() and a.token == 1 and not b.is_leader()
    assert await b.current() == "replica-a"
    old = a.value
    assert old is not None
    locks = RedisLocks(redis_client, "session")

    # replica-a freezes: its clock jumps past the lease, Redis expires it, replica-b wins.
    clock.now += 10
    await redis_client.pexpire(keys.LEADER, 1)
    await asyncio.sleep(0.01)
    await b.step()
    assert b.is_leader() and b.token == 2
    # Thawed, before its lease loop has run: its own clock says it no longer leads.
    assert not a.is_leader() and a.left_s() == 0
    with acting_as_leader(old):
        with pytest.raises(LostLeadership):
            a.ensure()
        with pytest.raises(LostLeadership):
            async with locks["worker_1"]:
                pass
    # Had its clock not shown the pause (a stall inside Redis, a slow network), Redis's
    # fence still refuses the stale token.
    clock.now -= 10
    assert a.is_leader()
    with acting_as_leader(old):
        with pytest.raises(LostLeadership):
            await a.fence()
        with pytest.raises(LostLeadership):
            async with locks["worker_1"]:
                pass
    with pytest.raises(LostLeadership):
        await a.claim_once(keys.job_run("backup", "1"), 60)
    assert await redis_client.exists(keys.job_run("backup", "1")) == 0
    assert await redis_client.exists(keys.lock("session", "worker_1")) == 0
    # Its next round: the renewal is refused (it never takes the lease back), it steps down.
    await a.step()
    assert heard == [True, False] and not a.is_leader()
    assert await b.current() == "replica-b"
    # The current leader's own work is not refused.
    assert b.value is not None
    with acting_as_leader(b.value):
        await b.fence()
        async with locks["worker_1"]:
            assert await redis_client.exists(keys.lock("session", "worker_1")) == 1
    assert await b.claim_once(keys.job_run("backup", "2"), 60)
    assert not await b.claim_once(keys.job_run("backup", "2"), 60)  # once


async def test_a_clean_stop_hands_the_lease_over_at_once_and_a_restart_reclaims_its_own(
    redis_client: aioredis.Redis,
) -> None:
    """Would catch: a stopping leader that keeps its lease to the end (a whole lease with
    no leader), and a replica restarted under its own name that waits out its dead
    predecessor's lease (no watchdog for that long after every restart)."""
    a = Leadership(redis_client, "replica-a", 60_000)
    b = Leadership(redis_client, "replica-b", 60_000)
    await a.step()
    assert a.token == 1
    again = Leadership(redis_client, "replica-a", 60_000)  # replica-a, restarted after a kill
    await again.step()
    assert again.token == 2 and again.is_leader()
    await b.step()
    assert not b.is_leader()  # another name never takes a live lease
    await again.resign()
    assert not again.is_leader() and await redis_client.exists(keys.LEADER) == 0
    await b.step()
    assert b.is_leader() and b.token == 3


def test_lease_and_replica_name_are_checked_at_start() -> None:
    """Would catch: a lease too short for a Telegram poll to end inside it, or a name that
    cannot be told apart in Redis, accepted silently."""
    base = {"API_KEY": API_KEY, "WEBHOOK_SECRET": WEBHOOK_SECRET}
    assert Settings.from_env(base).leader_lease_ms == 5_000
    assert Settings.from_env({**base, "HTTP_PORT": "3100"}).replica_id.endswith(":3100")
    for bad in ("999", "2999", "600001", "five"):
        with pytest.raises(ConfigError, match="LEADER_LEASE_MS"):
            Settings.from_env({**base, "LEADER_LEASE_MS": bad})
    with pytest.raises(ConfigError, match="SERVE_ID"):
        Settings.from_env({**base, "SERVE_ID": "a b"})
    assert Settings.from_env({**base, "SERVE_ID": "eu-1:3000"}).replica_id == "eu-1:3000"


class Mirror:
    maintenance_elsewhere: str | None = None


async def test_a_restore_on_one_replica_holds_every_replica_off_the_fleet(
    redis_client: aioredis.Redis,
) -> None:
    """Would catch: a restore's maintenance kept in the restoring process only: the leader
    (another replica) would restart the workers the restore stops, and operators on other
    replicas would provision into a fleet being replaced; and a second restore at once."""
    here, there = Mirror(), Mirror()
    a = FleetMaintenance(redis_client, ClusterBus(redis_client, "a"), "a", here)
    b = FleetMaintenance(redis_client, ClusterBus(redis_client, "b"), "b", there)
    assert await a.claim("a restore")
    assert not await b.claim("a restore")  # one at a time, fleet-wide
    await a.look()
    await b.look()
    assert here.maintenance_elsewhere is None  # its own: the service knows it already
    assert there.maintenance_elsewhere == "a restore (another replica)"
    await a.claim(None)
    await b.look()
    assert there.maintenance_elsewhere is None
    assert await b.claim("a restore")
    await b.claim(None)
    assert await redis_client.exists(keys.MAINTENANCE) == 0


async def test_a_lost_node_is_claimed_by_one_replica_whichever_sees_it(
    redis_client: aioredis.Redis,
) -> None:
    """Every replica's swarm watch sees a node go down. Gated on "am I the leader now", the
    move and its alert were lost when the node took the leader with it (all followers until
    its lease expired); claimed in Redis, exactly one replica acts, whichever it is."""
    replicas = [claim_once(redis_client, 60_000) for _ in range(3)]
    first = await asyncio.gather(*(claim("node_lost:n1") for claim in replicas))
    assert sorted(first) == [False, False, True]
    assert await replicas[2]("node_lost:n2")  # another node is another claim
    assert not await replicas[0]("node_lost:n2")
