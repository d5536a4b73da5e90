"""A node lost and the fleet run from the other two: deploy/wafleet-ha-stack.yml, three managers.

The very file an operator deploys for high availability, on the three managers of
``swarm-engine.sh up3``: a ``serve`` replica, a Redis and a Sentinel on each node, workers as
Swarm services anywhere. Sessions are provisioned and linked at the simulated network, the
leader ``serve`` and the Redis primary are made to share one node, messages are accepted, and
then that node's engine is stopped (SIGTERM to its dockerd, as a machine going down). Within
30 s the other two run the fleet: a surviving replica answers, names a new leader and the
promoted Redis primary, every session is connected again (the lost node's workers on another
node), every message accepted before the loss was sent exactly once, and the chat got one
grouped alert. Then the node comes back: its Redis becomes a replica of the promoted primary
and its ``serve`` a follower. The times of each step are printed.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from redis.asyncio.sentinel import MasterNotFoundError, Sentinel

from core.docker_engine import SESSION_LABEL
from tests import fake_telegram
from tests.fake_telegram import CHAT, FakeTelegram, bot_env
from tests.fleet import eventually
from tests.swarm import ha_stack
from tests.swarm.conftest import ROOT, WORKER_IMAGE, Swarm, _script, running_task
from tests.swarm.ha_stack import ENGINE2_PIDFILE, MASTER, SLOTS, HaStack

pytestmark = [pytest.mark.swarm, pytest.mark.timeout(900)]

telegram = fake_telegram.telegram  # the fixture

ORCH_IMAGE = os.environ.get("SWARM_ORCH_IMAGE", "wafleet-orchestrator:swarm")
REDIS_IMAGE = os.environ.get("SWARM_REDIS_IMAGE", "wafleet-redis:bookworm")
PHONES = [f"97250300000{n}" for n in range(1, 7)]  # six sessions: two or so per node
OUTSIDE = "14155550123"
MESSAGES_PER_SESSION = 2
WITHIN_S = 30.0
LOST, SURVIVORS = 1, (2, 3)
ALERT = "grouped alert in the chat"  # wafleet.ha slots: node 1 (engine 2) is the one stopped


@pytest.fixture(scope="module")
def three_managers(swarm: Swarm) -> Iterator[dict[int, str]]:
    """The swarm as three managers with every image on every engine; slot -> node id.
    Afterwards back to the two nodes the rest of the tier expects."""
    made = subprocess.run(
        [str(ROOT / "scripts" / "docker-engine.sh"), "redis"],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "REDIS_IMAGE": REDIS_IMAGE},
    )
    assert made.returncode == 0, made.stderr[-2000:]
    up = _script("up3", env={"SWARM_IMAGES": f"{WORKER_IMAGE} {ORCH_IMAGE} {REDIS_IMAGE}"})
    assert up.returncode == 0, up.stderr[-2000:]
    nodes = {}
    for slot in SLOTS:
        client = ha_stack.engine(slot)
        nodes[slot] = client.info()["Swarm"]["NodeID"]
        client.close()
    try:
        yield nodes
    finally:
        back = _script("up", env={"SWARM_IMAGES": WORKER_IMAGE})
        print(back.stderr)


@pytest.fixture
async def ha(three_managers: dict[int, str], telegram: FakeTelegram) -> AsyncIterator[HaStack]:
    bot = {k: str(v) for k, v in bot_env(telegram).items()}
    stack = ha_stack.deploy(
        f"wafleet-ha{secrets.token_hex(3)}",
        three_managers,
        {"orchestrator": ORCH_IMAGE, "worker": WORKER_IMAGE, "redis": REDIS_IMAGE},
        bot,
    )
    try:
        assert stack.deploy_error is None, stack.deploy_error
        yield stack
    finally:
        if not _engine2_running():  # the stopped node back first, so its containers go too
            up = await asyncio.to_thread(_script, "up3", env={"SWARM_IMAGES": ""})
            print(up.stderr)
        ha_stack.print_logs(stack)
        await ha_stack.remove_stack(stack)


def _engine2_running() -> bool:
    try:
        os.kill(int(ENGINE2_PIDFILE.read_text()), 0)
    except (OSError, ValueError):
        return False
    return True


class Api:
    """The REST API of one replica, with the admin key."""

    def __init__(self, http: aiohttp.ClientSession, stack: HaStack) -> None:
        self.http, self.stack = http, stack

    async def call(
        self, slot: int, method: str, path: str, body: dict[str, Any] | None = None
    ) -> tuple[int, Any]:
        async with self.http.request(
            method,
            self.stack.api(slot) + path,
            json=body,
            headers={"X-API-Key": self.stack.api_key},
        ) as answer:
            return answer.status, await answer.json(content_type=None)

    async def answers(self, slot: int, method: str, path: str) -> Any:
        """The body of a 200, or None (not up, or not yet able to answer)."""
        try:
            status, body = await self.call(slot, method, path)
        except (TimeoutError, aiohttp.ClientError):
            return None
        return body if status == 200 else None

    async def simwa(self, path: str, body: dict[str, Any] | None = None) -> Any:
        method = "POST" if body is not None else "GET"
        async with self.http.request(method, self.stack.simwa + path, json=body) as answer:
            assert answer.status == 200, await answer.text()
            return await answer.json()


async def _sentinel_primary(stack: HaStack, slot: int) -> str | None:
    """Which primary the Sentinel of node ``slot`` names (None: it does not answer)."""
    host, port = stack.sentinel(slot)
    sentinel = Sentinel([(host, port)], socket_timeout=2, socket_connect_timeout=2)
    try:
        found = await sentinel.discover_master(MASTER)
    except (MasterNotFoundError, aioredis.RedisError, OSError):
        return None
    finally:
        for client in sentinel.sentinels:
            await client.aclose()
    return f"{found[0]}:{found[1]}"


def _placement(stack: HaStack) -> dict[str, str]:
    """session id -> node id of its running task."""
    found = {}
    for service in ha_stack.worker_services(stack):
        task = running_task(service)
        if task is not None:
            found[service.attrs["Spec"]["Labels"][SESSION_LABEL]] = task["NodeID"]
    return found


async def _every_replica_up(api: Api) -> dict[str, Any] | None:
    views = [await api.answers(slot, "GET", "/api/v1/cluster") for slot in SLOTS]
    if any(view is None for view in views):
        return None
    ids = {r["id"] for r in views[0]["replicas"]}
    return views[0] if ids == {"serve-1", "serve-2", "serve-3"} and views[0]["leader"] else None


async def _lead_from_node_1(api: Api, stack: HaStack) -> None:
    """serve-1 leads, beside the Redis primary: the others stop until it has the lease."""
    view = await eventually(lambda: _every_replica_up(api), 180, "three replicas, one leader")
    if view["leader"] == "serve-1":
        return
    for n in (2, 3):
        assert ha_stack.docker_cli("service", "scale", f"{stack.name}_serve-{n}=0").returncode == 0

    async def serve_1_leads() -> bool:
        found = await api.answers(1, "GET", "/api/v1/cluster")
        return found is not None and found["leader"] == "serve-1"

    await eventually(serve_1_leads, 60, "serve-1 the leader")
    for n in (2, 3):
        assert ha_stack.docker_cli("service", "scale", f"{stack.name}_serve-{n}=1").returncode == 0
    await eventually(lambda: _every_replica_up(api), 120, "the three replicas back")


async def _link(api: Api, slot: int, phone: str) -> str:
    status, body = await api.call(slot, "POST", "/api/sessions/provision", {"phone": phone})
    assert status == 201, body
    sid = str(body["id"])

    async def qr() -> str | None:
        found = await api.answers(slot, "GET", f"/api/sessions/{sid}/qr")
        return str(found["qr"]) if found else None

    code = await eventually(qr, 120, f"the QR of {sid}")
    await api.simwa("/control/scan", {"qr": code, "phone": phone})
    return sid


async def _devices(api: Api) -> dict[str, dict[str, Any]]:
    return {d["sessionId"]: d for d in await api.simwa("/control/devices")}


async def test_a_lost_node_with_the_leader_and_the_redis_primary(
    ha: HaStack, telegram: FakeTelegram
) -> None:
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        api = Api(http, ha)
        await _lead_from_node_1(api, ha)
        assert await _sentinel_primary(ha, 2) == ha.redis_address(LOST)

        async def replicas_synced() -> bool:
            primary = ha.redis_address(LOST)
            return all([await _replica_of(ha, primary, slot) for slot in SLOTS if slot != LOST])

        # Both replicas through their first sync: until then a promise has nothing to wait
        # for, and the first provision would be a 503 (right, but not what is tested here).
        await eventually(replicas_synced, 120, "both Redis replicas in sync")
        # Sessions provisioned through every replica in turn, each linked at the network.
        sids = [await _link(api, 1 + n % 3, phone) for n, phone in enumerate(PHONES)]
        phone_of = dict(zip(sids, PHONES, strict=True))

        async def all_connected() -> bool:
            for sid in sids:
                found = await api.answers(3, "GET", f"/api/sessions/{sid}/status")
                if found is None or found["status"] != "connected":
                    return False
            return True

        await eventually(all_connected, 120, "every session connected")
        placed = await eventually(
            lambda: _check_placed(ha, sids), 60, "every session's task running"
        )
        lost = sorted(sid for sid, node in placed.items() if node == ha.nodes[LOST])
        assert lost, placed  # the spread put some workers on the node that goes
        before = await _devices(api)
        # Messages accepted (202) by the leader, the last ones just before the loss.
        accepted: list[tuple[str, str, str]] = []  # (session, message id, text)
        for round_ in range(MESSAGES_PER_SESSION):
            for sid in sids:
                text = f"ha {sid} #{round_} {secrets.token_hex(3)}"
                body = {"to": OUTSIDE, "text": text}
                status, answer = await api.call(1, "POST", f"/api/sessions/{sid}/messages", body)
                assert status == 202, answer
                accepted.append((sid, str(answer["id"]), text))

        t0 = time.monotonic()
        os.kill(int(ENGINE2_PIDFILE.read_text()), signal.SIGTERM)  # node 1 goes down
        seen: dict[str, float] = {}
        checks: dict[str, Callable[[], Awaitable[bool]]] = {
            "node seen down": lambda: _node_down(ha),
            "Redis primary promoted": lambda: _promoted(ha),
            "new leader named by a survivor": lambda: _new_leader(api),
            "every session connected": lambda: _reconnected(api, ha, sids, lost, before),
            "every message sent once": lambda: _sent_once(api, accepted, phone_of),
            ALERT: lambda: _alerted(telegram),
        }
        while len(seen) < len(checks) and time.monotonic() - t0 < WITHIN_S + 30:
            for what, check in checks.items():
                if what not in seen and await check():
                    seen[what] = time.monotonic() - t0
            await asyncio.sleep(0.25)
        timings = "; ".join(f"{what} {at:.1f} s" for what, at in seen.items())
        print(f"after the engine of node 1 stopped ({len(lost)} of {len(sids)} sessions on it,")
        print(f"{len(accepted)} messages accepted before): {timings}")
        missing = [what for what in checks if what not in seen]
        late = {what: at for what, at in seen.items() if at > WITHIN_S}
        assert not [m for m in missing if m != ALERT], f"not in {WITHIN_S + 30:.0f} s: {missing}"
        assert not late, f"later than {WITHIN_S:.0f} s: {late}"
        # The survivors' view: a new leader; the Sentinels agree on the promoted primary.
        view = await api.answers(3, "GET", "/api/v1/cluster")
        promoted = await _sentinel_primary(ha, 3)
        assert view["leader"] in ("serve-2", "serve-3"), view
        assert promoted == await _sentinel_primary(ha, 2) != ha.redis_address(LOST)
        await asyncio.sleep(3)  # nothing more comes: each message once
        assert await _sent_once(api, accepted, phone_of)

        # The node back: its Redis follows the new primary, its serve follows the new leader.
        t1 = time.monotonic()
        up = await asyncio.to_thread(_script, "up3", env={"SWARM_IMAGES": ""})
        assert up.returncode == 0, up.stderr[-2000:]
        assert promoted is not None
        await eventually(lambda: _replica_of(ha, promoted), 120, "node 1's Redis a replica")
        back = time.monotonic() - t1
        await eventually(lambda: _follows(api, view["leader"]), 60, "serve-1 back, following")
        print(f"node 1 back: its Redis in sync with {promoted} {back:.1f} s after its engine")
        print(f"started again, serve-1 following {time.monotonic() - t1:.1f} s after")

        # Last, what the operator reads: the cluster names the promoted primary and its two
        # replicas, and the chat got one grouped alert for the lost node, naming what moved.
        view = await api.answers(3, "GET", "/api/v1/cluster")
        assert view["redis"] == {"primary": promoted, "replicas": 2}, view
        chat = [call.text for call in telegram.calls_of("sendMessage", chat=CHAT)]
        assert ALERT not in missing, f"no node-lost alert in the chat, which got: {chat}"
        [alert] = _node_lost_alerts(telegram)
        noun = "session" if len(lost) == 1 else "sessions"  # the catalogue's plural forms
        assert f"{len(lost)} {noun} moved, 0 not moved" in alert, alert


async def _replica_of(stack: HaStack, primary: str, slot: int = LOST) -> bool:
    """The Redis node of ``slot`` is a replica of ``primary`` and done syncing (link up)."""
    client = aioredis.Redis(
        host=SLOTS[slot][0],
        port=stack.redis_port,
        password=stack.redis_password,
        socket_timeout=2,
        socket_connect_timeout=2,
        decode_responses=True,
    )
    try:
        info = await client.info("replication")
    except (aioredis.RedisError, OSError):
        return False
    finally:
        await client.aclose()
    return (
        info.get("role") == "slave"
        and f"{info.get('master_host')}:{info.get('master_port')}" == primary
        and info.get("master_link_status") == "up"
    )


async def _follows(api: Api, leader: str) -> bool:
    view = await api.answers(LOST, "GET", "/api/v1/cluster")
    if view is None or view["leader"] != leader:
        return False
    return any(r["id"] == "serve-1" and not r["leader"] for r in view["replicas"])


async def _check_placed(stack: HaStack, sids: list[str]) -> dict[str, str] | None:
    placed = await asyncio.to_thread(_placement, stack)
    return placed if set(placed) == set(sids) else None


async def _node_down(stack: HaStack) -> bool:
    client = ha_stack.engine(3)
    try:
        node = await asyncio.to_thread(client.nodes.get, stack.nodes[LOST])
        return bool(node.attrs["Status"]["State"] == "down")
    finally:
        client.close()


async def _promoted(stack: HaStack) -> bool:
    names = [await _sentinel_primary(stack, slot) for slot in SURVIVORS]
    return names[0] is not None and names[0] == names[1] != stack.redis_address(LOST)


async def _new_leader(api: Api) -> bool:
    for slot in SURVIVORS:
        view = await api.answers(slot, "GET", "/api/v1/cluster")
        if view is not None and view["leader"] in ("serve-2", "serve-3"):
            return True
    return False


async def _reconnected(
    api: Api, stack: HaStack, sids: list[str], lost: list[str], before: dict[str, Any]
) -> bool:
    devices = await _devices(api)
    placed = await asyncio.to_thread(_placement, stack)
    for sid in sids:
        found = await api.answers(3, "GET", f"/api/sessions/{sid}/status")
        if found is None or found["status"] != "connected" or not devices[sid]["connected"]:
            return False
        if sid in lost:  # a new worker on a surviving node, connected again
            if placed.get(sid) not in {stack.nodes[n] for n in SURVIVORS}:
                return False
            if devices[sid]["connectCount"] <= before[sid]["connectCount"]:
                return False
    return True


async def _sent_once(
    api: Api, accepted: list[tuple[str, str, str]], phone_of: dict[str, str]
) -> bool:
    by_phone: dict[str, list[str]] = {}
    for phone in set(phone_of.values()):
        by_phone[phone] = [m["text"] for m in await api.simwa(f"/control/messages?phone={phone}")]
    for sid, mid, text in accepted:
        found = await api.answers(3, "GET", f"/api/sessions/{sid}/messages/{mid}")
        if found is None or found["status"] not in ("sent", "delivered", "read"):
            return False
        count = by_phone[phone_of[sid]].count(text)
        assert count <= 1, f"{text!r} sent {count} times"
        if count != 1:
            return False
    return True


def _node_lost_alerts(fake: FakeTelegram) -> list[str]:
    texts = [call.text for call in fake.calls_of("sendMessage", chat=CHAT)]
    return [text for text in texts if "node lost" in text.lower()]


async def _alerted(fake: FakeTelegram) -> bool:
    return bool(_node_lost_alerts(fake))
