"""RUNNER=swarm on a real two-node swarm: placement, crashes, adoption, no room, node loss,
split brain. The tests run in this order: the last two take the second node down."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from collections import Counter
from typing import Any

import pytest

from core.docker_engine import INSTANCE_LABEL, SESSION_LABEL, SPEC_LABEL
from tests.fleet import Fleet, eventually
from tests.swarm.conftest import (
    ROOT,
    SWARM_OPTIONS,
    WORKER_IMAGE,
    Swarm,
    instance_of,
    placement,
    running_task,
    services,
)

pytestmark = [pytest.mark.swarm, pytest.mark.timeout(300)]

PHONES = [f"9725010000{n:02d}" for n in range(1, 11)]
FLEET_SIZE = 8  # the 8 sessions: each node holds at least 2


async def _link_all(fleet: Fleet, n: int) -> list[str]:
    return await _link_all_from(fleet, 0, n)


async def _link_all_from(fleet: Fleet, first: int, n: int) -> list[str]:
    """Provision and link ``n`` sessions with the phones from ``PHONES[first]`` on."""
    phones = PHONES[first : first + n]
    sessions = [await fleet.provision(phone) for phone in phones]
    for session, phone in zip(sessions, phones, strict=True):
        await fleet.scan(await fleet.qr(session["id"], 60), phone)
    for session in sessions:
        await fleet.wait_status(session["id"], "connected", 60)
    return [s["id"] for s in sessions]


async def test_sessions_are_spread_over_both_nodes_with_labels_env_mount_and_memory(
    fleet: Fleet, swarm: Swarm
) -> None:
    sids = await _link_all(fleet, FLEET_SIZE)
    nodes = placement(swarm, fleet)
    assert set(nodes) == set(sids)
    per_node = Counter(nodes.values())
    assert set(per_node) == {swarm.manager_node, swarm.second_node}, per_node
    assert min(per_node.values()) >= 2, per_node
    for sid in sids:
        [service] = services(swarm.manager, fleet, sid)
        spec = service.attrs["Spec"]
        assert spec["Name"] == f"wa_session_{sid}"
        assert spec["Mode"] == {"Replicated": {"Replicas": 1}}
        labels = {SESSION_LABEL: sid, INSTANCE_LABEL: instance_of(fleet)}
        # The service also carries its spec's fingerprint, which reconcile compares.
        assert {k: v for k, v in spec["Labels"].items() if k != SPEC_LABEL} == labels
        assert len(spec["Labels"][SPEC_LABEL]) == 24
        container = spec["TaskTemplate"]["ContainerSpec"]
        assert container["Labels"] == labels
        assert container["Image"].startswith(WORKER_IMAGE)
        env = dict(item.split("=", 1) for item in container["Env"])
        assert env["SESSION_ID"] == sid
        assert env["SESSION_DIR"] == "/app/session"
        # only its own derived webhook secret, never the master one or another session's
        assert fleet.env["WEBHOOK_SECRET"] not in json.dumps(container)
        assert not any(other in json.dumps(container) for other in sids if other != sid)
        [mount] = container["Mounts"]
        assert mount["Target"] == "/app/session"
        assert mount["Source"] == str((fleet.sessions_dir / sid).resolve())
        resources = spec["TaskTemplate"]["Resources"]
        assert resources["Reservations"]["MemoryBytes"] == 32 * 1024 * 1024
        assert resources["Limits"]["MemoryBytes"] == 256 * 1024 * 1024
        assert spec["TaskTemplate"]["RestartPolicy"]["Condition"] == "none"
        assert spec["TaskTemplate"]["Placement"]["Preferences"] == [
            {"Spread": {"SpreadDescriptor": "node.id"}}
        ]


async def test_a_killed_worker_container_is_noticed_and_restarted(
    fleet: Fleet, swarm: Swarm
) -> None:
    sid = (await _link_all(fleet, 1))[0]
    [service] = services(swarm.manager, fleet, sid)
    task = running_task(service)
    assert task is not None
    engine = swarm.manager if task["NodeID"] == swarm.manager_node else swarm.second
    container_id = task["Status"]["ContainerStatus"]["ContainerID"]
    engine.containers.get(container_id).kill()

    async def replaced() -> bool:
        found = services(swarm.manager, fleet, sid)
        new = running_task(found[0]) if len(found) == 1 else None
        return new is not None and new["ID"] != task["ID"]

    await eventually(replaced, 20, "a new task for the killed worker")
    await fleet.wait_status(sid, "connected", 30)
    assert len(await fleet.events(sid, "QR_CODE")) == 1  # saved credentials, no new QR
    assert "worker_crashed" in fleet.log()


async def test_serve_restarted_adopts_services_and_removes_orphans(
    fleet: Fleet, swarm: Swarm
) -> None:
    sids = await _link_all(fleet, 2)
    before = {s.id for s in services(swarm.manager, fleet)}
    fleet.kill()
    await fleet.redis.srem("wafleet:sessions", sids[1])  # its service is an orphan now
    fleet.start()
    await eventually(
        lambda: _log_has(fleet, "1 adopted, 0 started, 1 orphan(s) removed"), 30, "reconcile"
    )
    after = {s.id for s in services(swarm.manager, fleet)}
    assert len(after) == 1 and after < before  # adopted, not duplicated; the orphan gone
    await fleet.wait_status(sids[0], "connected")


async def _log_has(fleet: Fleet, text: str) -> bool:
    return text in fleet.log()


@pytest.mark.parametrize(
    "fleet_options", [{**SWARM_OPTIONS, "WORKER_MEMORY_RESERVATION": "100000g"}]
)
async def test_a_worker_no_node_has_room_for_says_so(fleet: Fleet, swarm: Swarm) -> None:
    sid = (await fleet.provision(PHONES[0]))["id"]

    async def parked() -> dict[str, Any] | None:
        status = await fleet.status(sid)
        return status if status.get("reason") == "unschedulable" else None

    parked_status = await eventually(parked, 40, "the session to say unschedulable")
    assert parked_status["status"] == "failed"
    assert "unschedulable session=" + sid in fleet.log()  # the alert, as the chat gets it
    assert services(swarm.manager, fleet, sid) == []  # not left pending


async def test_delete_removes_the_service_and_folder_and_releases_the_slot(
    fleet: Fleet, swarm: Swarm
) -> None:
    sid = (await _link_all(fleet, 1))[0]
    proxy = await fleet.text(f"session:{sid}:proxy")
    status, body = await fleet.call("DELETE", f"/api/sessions/{sid}")
    assert (status, body) == (200, {"deleted": sid})
    assert services(swarm.manager, fleet, sid) == []
    assert not (fleet.sessions_dir / sid).exists()
    assert await fleet.redis.get(f"proxy:{proxy}:sessions") == "0"
    await asyncio.sleep(1)  # and nothing brings it back
    assert services(swarm.manager, fleet) == []


async def test_dead_proxy_replaces_the_service_with_the_new_proxy_url(
    fleet: Fleet, swarm: Swarm
) -> None:
    sid = (await _link_all(fleet, 1))[0]
    [old] = services(swarm.manager, fleet, sid)
    old_url = await fleet.text(f"session:{sid}:proxy")
    assert _env(old)["PROXY_URL"] == old_url
    next(p for p in fleet.proxies if p.url == old_url).proc.kill()

    async def moved() -> str | None:
        url = await fleet.text(f"session:{sid}:proxy")
        status = (await fleet.status(sid))["status"]
        return url if url != old_url and status == "connected" else None

    new_url = await eventually(moved, 30, "failover to the other proxy")
    [new] = services(swarm.manager, fleet, sid)
    assert new.id != old.id
    assert _env(new)["PROXY_URL"] == new_url
    assert len(await fleet.events(sid, "QR_CODE")) == 1  # no new QR


def _env(service: Any) -> dict[str, str]:
    items = service.attrs["Spec"]["TaskTemplate"]["ContainerSpec"]["Env"]
    return dict(item.split("=", 1) for item in items)


async def test_rolling_backup_and_restore_on_the_swarm(fleet: Fleet, swarm: Swarm) -> None:
    sids = await _link_all(fleet, FLEET_SIZE)
    before = {sid: services(swarm.manager, fleet, sid)[0].id for sid in sids}
    nodes = placement(swarm, fleet)
    tasks = {sid: running_task(services(swarm.manager, fleet, sid)[0]) for sid in sids}
    remote = {sid for sid, node in nodes.items() if node == swarm.second_node}
    assert 0 < len(remote) < FLEET_SIZE, nodes
    connects = {sid: (await fleet.device(sid))["connectCount"] for sid in sids}
    t0 = time.monotonic()
    status, made = await fleet.call("POST", "/api/v1/backups/create")
    took = time.monotonic() - t0
    assert status == 201, made
    assert made["sessions"] == FLEET_SIZE and made["mode"] == "rolling"
    # Every worker was held still while its folder was copied: frozen with docker pause on
    # the manager, stopped (service scaled to 0 and back) on the other node.
    assert set(made["pausesMs"]) == set(sids), made
    for sid in sids:
        [service] = services(swarm.manager, fleet, sid)
        assert service.id == before[sid]  # the same service, not a new one
        task = running_task(service)
        assert task is not None
        if sid in remote:  # a new task: the old one was really stopped, then it reconnected

            async def back(sid: str = sid) -> bool:
                device = await fleet.device(sid)
                return bool(device["connected"] and device["connectCount"] == connects[sid] + 1)

            await eventually(back, 30, f"{sid} connected again after its stop")
            assert task["ID"] != tasks[sid]["ID"]  # type: ignore[index]
        else:  # frozen in place: the same task, the same connection
            assert task["ID"] == tasks[sid]["ID"]  # type: ignore[index]
            device = await fleet.device(sid)
            assert device["connected"] and device["connectCount"] == connects[sid], device
        await fleet.wait_status(sid, "connected", 30)
        assert len(await fleet.events(sid, "QR_CODE")) == 1  # saved credentials, no new QR
    assert "worker_crashed" not in fleet.log()  # the stops were asked for, not crashes
    paused = {
        kind: sorted(ms for sid, ms in made["pausesMs"].items() if (sid in remote) == is_remote)
        for kind, is_remote in (("manager (docker pause)", False), ("remote (scaled to 0)", True))
    }
    print(f"rolling backup of {FLEET_SIZE} sessions took {took:.1f} s; pauses ms: {paused}")
    status, _ = await fleet.call("DELETE", f"/api/sessions/{sids[0]}")
    assert status == 200
    status, report = await fleet.call(
        "POST", f"/api/v1/backups/restore/{made['id']}", {"waitSeconds": 40}
    )
    assert status == 200, report
    assert sorted(report["connected"]) == sorted(sids)
    for sid in sids:
        assert len(services(swarm.manager, fleet, sid)) == 1
        assert await fleet.events(sid, "QR_CODE") == []  # no new QR since the restore


async def test_node_lost_sessions_come_back_on_the_manager_with_one_grouped_alert(
    fleet: Fleet, swarm: Swarm
) -> None:
    sids = await _link_all(fleet, FLEET_SIZE)
    nodes = placement(swarm, fleet)
    lost = sorted(sid for sid, node in nodes.items() if node == swarm.second_node)
    assert lost, nodes
    before = {sid: await fleet.device(sid) for sid in lost}
    os.kill(swarm.second_pid(), signal.SIGTERM)  # the node's engine stops
    try:

        async def moved() -> bool:
            now = placement(swarm, fleet)
            return all(now.get(sid) == swarm.manager_node for sid in lost)

        await eventually(moved, 60, "the lost node's sessions running on the manager")
        for sid in lost:

            async def back(sid: str = sid) -> dict[str, Any] | None:
                device = await fleet.device(sid)
                again = device["connectCount"] > before[sid]["connectCount"]
                return device if again and device["connected"] else None

            device = await eventually(back, 30, f"{sid} connected again at the network")
            await fleet.wait_status(sid, "connected", 30)
            assert device["ip"] == before[sid]["ip"]  # same proxy
            assert len(await fleet.events(sid, "QR_CODE")) == 1  # no new QR
        await eventually(lambda: _log_has(fleet, "node_lost session="), 70, "the grouped alert")
        alerts = [line for line in fleet.log().splitlines() if "node_lost session=" in line]
        assert len(alerts) == 1, alerts
        assert f"with {len(lost)} session(s)" in alerts[0]
        assert f"moved to {swarm.manager_node}:{len(lost)}" in alerts[0]
        assert "worker_crashed" not in fleet.log()  # one event, not N crashes
        assert all(sid in sids for sid in lost)
        await _second_engine_up()
        # The node back: Swarm spreads the next sessions onto it again.
        await eventually(lambda: _node_ready(swarm), 30, "the second node ready again")
        [new] = await _link_all_from(fleet, FLEET_SIZE, 1)
        assert placement(swarm, fleet)[new] == swarm.second_node
    finally:
        await _second_engine_up()


async def _second_engine_up() -> None:
    up = await asyncio.to_thread(
        subprocess.run,
        [str(ROOT / "scripts" / "swarm-engine.sh"), "up"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "SWARM_IMAGES": WORKER_IMAGE},
    )
    assert up.returncode == 0, up.stderr


async def _node_ready(swarm: Swarm) -> bool:
    node = swarm.manager.nodes.get(swarm.second_node)
    return bool(node.attrs["Status"]["State"] == "ready")


async def test_split_brain_settles_on_one_connected_worker_per_session(
    fleet: Fleet, swarm: Swarm
) -> None:
    await _link_all(fleet, FLEET_SIZE)
    nodes = placement(swarm, fleet)
    cut = sorted(sid for sid, node in nodes.items() if node == swarm.second_node)
    assert cut, nodes
    # SIGKILL: the engine dies, its containers keep running under their shims.
    os.kill(swarm.second_pid(), signal.SIGKILL)

    async def moved() -> bool:
        now = placement(swarm, fleet)
        return all(now.get(sid) == swarm.manager_node for sid in cut)

    await eventually(moved, 60, "replacements on the manager")

    async def settled() -> bool:
        for sid in cut:
            device = await fleet.device(sid)
            if not device["connected"] or device["replacedCount"] < 1:
                return False
        return True

    await eventually(settled, 30, "each copy replaced once")
    for sid in cut:  # the old copy's late "replaced" does not mark it disconnected
        await fleet.wait_status(sid, "connected", 30)
    counts = {sid: (await fleet.device(sid))["connectCount"] for sid in cut}
    for _ in range(300):  # 30 s without flapping
        for sid in cut:
            device = await fleet.device(sid)
            assert device["connected"], device
            assert device["connectCount"] == counts[sid], device
        await asyncio.sleep(0.1)
    for sid in cut:
        assert (await fleet.status(sid))["status"] == "connected"
