"""Benchmarks of the Swarm runner, against their targets, on the real two-node swarm.

Starts real stacks on loopback (redis-server, microsocks, simwa, ``wafleet serve``, worker
services or containers with host networking) and prints one table of medians over several runs:

- provision → first QR at the API, ``RUNNER=swarm`` next to ``RUNNER=docker`` (target < 2 s)
- node lost (the worker node's engine stopped) → every session that ran there connected again
  on the manager, with Swarm's default dispatcher heartbeat (5 s; target < 25 s) and with
  ``--dispatcher-heartbeat 1s`` (target < 8 s)
- rolling backup: how long each session was really offline. A worker on the manager is frozen
  with ``docker pause`` (its connection stays open: the pause is its cost); one on the other
  node is stopped (scaled to 0 and back), and simwa is polled for the time its device was
  disconnected.

Needs the engine, the images and the swarm: scripts/docker-engine.sh, scripts/build-images.sh,
then ``SWARM_IMAGES=<worker image> scripts/swarm-engine.sh up`` (left up afterwards, with a 1 s
heartbeat as the script sets it).
Usage: python bench/swarm_bench.py [--runs 3] [--image wafleet-worker:latest]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import docker

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import bench_fleet, poll, remove_engine_workers, row, table_header  # noqa: E402

from core.docker_engine import SESSION_LABEL  # noqa: E402
from tests.fleet import Fleet  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
POLL_S = 0.05
WIDTH = 50
SECOND_SOCK = "unix:///run/wafleet-swarm2.sock"
SECOND_PID = Path("/var/lib/wafleet-swarm2/dockerd.pid")


@asynccontextmanager
async def stack(runner: str, image: str, phones: int) -> AsyncIterator[Fleet]:
    """A fleet on loopback with ``runner``; every worker it made removed afterwards."""
    env = {
        "RUNNER": runner,
        "WORKER_IMAGE": image,
        "WORKER_NETWORK": "host",
        "WORKER_MEMORY_RESERVATION": "32m",
        "LOG_LEVEL": "WARNING",
        "PING_TIMEOUT_MS": "30000",
        "WATCHDOG_INTERVAL_MS": "5000",
    }
    proxies = (phones + 3) // 4
    async with bench_fleet(runner, proxies, env, cleanup=remove_engine_workers) as fleet:
        yield fleet


async def provision_to_qr(fleet: Fleet, phone: str) -> tuple[str, float]:
    t0 = time.perf_counter()
    sid = (await fleet.provision(phone))["id"]

    async def qr() -> str | None:
        status, body = await fleet.call("GET", f"/api/sessions/{sid}/qr")
        return body["qr"] if status == 200 else None

    code = await poll(qr, 30, f"the first QR of {sid}")
    elapsed = time.perf_counter() - t0
    assert await fleet.scan(code, phone) == 200
    await fleet.wait_status(sid, "connected", 60)
    return sid, elapsed


async def qr_times(runner: str, image: str, runs: int) -> list[float]:
    async with stack(runner, image, runs + 1) as fleet:
        await provision_to_qr(fleet, "972500000999")  # warm-up
        return [(await provision_to_qr(fleet, f"97250000{n:04d}"))[1] for n in range(runs)]


def node_of(engine: Any, sid: str) -> str | None:
    for service in engine.services.list(filters={"label": f"{SESSION_LABEL}={sid}"}):
        for task in service.tasks():
            if task["Status"]["State"] == "running" and task["DesiredState"] == "running":
                return str(task["NodeID"])
    return None


def heartbeat(period: str) -> None:
    subprocess.run(["docker", "swarm", "update", "--dispatcher-heartbeat", period], check=True)


def stop_second_engine() -> None:
    """SIGTERM: the engine stops (its containers with it), the node goes down."""
    os.kill(int(SECOND_PID.read_text()), signal.SIGTERM)


def swarm_engine_up(image: str) -> None:
    subprocess.run(
        [str(ROOT / "scripts" / "swarm-engine.sh"), "up"],
        check=True,
        capture_output=True,
        env={**os.environ, "SWARM_IMAGES": image},
        timeout=300,
    )


async def node_ready(engine: Any, node: str) -> bool:
    return bool(engine.nodes.get(node).attrs["Status"]["State"] == "ready")


async def node_loss(image: str, runs: int, period: str) -> list[float]:
    """Seconds from the worker node's engine stopped to all its sessions connected again."""
    await asyncio.to_thread(heartbeat, period)
    engine = docker.from_env()
    manager = engine.info()["Swarm"]["NodeID"]
    second = docker.DockerClient(base_url=SECOND_SOCK).info()["Swarm"]["NodeID"]
    times: list[float] = []
    try:
        async with stack("swarm", image, 4 * runs) as fleet:
            for run in range(runs):
                sids = [
                    (await provision_to_qr(fleet, f"9725001{run:02d}{n:03d}"))[0] for n in range(4)
                ]
                lost = [sid for sid in sids if node_of(engine, sid) == second]
                before = {sid: (await fleet.device(sid))["connectCount"] for sid in lost}
                t0 = time.perf_counter()
                stop_second_engine()

                async def back(lost: list[str] = lost, before: dict[str, int] = before) -> bool:
                    for sid in lost:
                        device = await fleet.device(sid)
                        again = device["connectCount"] > before[sid] and device["connected"]
                        if not again or node_of(engine, sid) != manager:
                            return False
                    return True

                await poll(back, 120, f"{len(lost)} session(s) connected on the manager")
                times.append(time.perf_counter() - t0)
                print(f"  heartbeat {period}: {len(lost)} session(s) back in {times[-1]:.1f} s")
                await asyncio.to_thread(swarm_engine_up, image)
                await poll(lambda: node_ready(engine, second), 60, "the node ready again")
                for sid in sids:  # room for the next run's sessions
                    await fleet.call("DELETE", f"/api/sessions/{sid}")
    finally:
        await asyncio.to_thread(heartbeat, "1s")
        engine.close()
    return times


async def backup_offline(image: str, sessions: int) -> tuple[list[float], list[float], float]:
    """(seconds offline of each session on the other node, ms paused of each on the
    manager, seconds the whole backup took)."""
    engine = docker.from_env()
    manager = engine.info()["Swarm"]["NodeID"]
    async with stack("swarm", image, sessions) as fleet:
        sids = [(await provision_to_qr(fleet, f"97250020{n:04d}"))[0] for n in range(sessions)]
        remote = {sid for sid in sids if node_of(engine, sid) != manager}
        down_since: dict[str, float] = {}
        offline: dict[str, float] = {}
        done = asyncio.Event()

        async def watch() -> None:
            while not done.is_set() or down_since:
                for sid in remote:
                    connected = (await fleet.device(sid))["connected"]
                    now = time.perf_counter()
                    if not connected and sid not in down_since:
                        down_since[sid] = now
                    elif connected and sid in down_since:
                        offline[sid] = offline.get(sid, 0.0) + now - down_since.pop(sid)
                await asyncio.sleep(POLL_S)

        watcher = asyncio.create_task(watch())
        t0 = time.perf_counter()
        status, made = await fleet.call("POST", "/api/v1/backups/create")
        took = time.perf_counter() - t0
        assert status == 201, made
        done.set()
        await asyncio.wait_for(watcher, 60)
        paused = [ms for sid, ms in made["pausesMs"].items() if sid not in remote]
    engine.close()
    return [offline.get(sid, 0.0) for sid in sorted(remote)], paused, took


async def bench(args: argparse.Namespace) -> None:
    docker_qr = await qr_times("docker", args.image, args.runs)
    swarm_qr = await qr_times("swarm", args.image, args.runs)
    loss_default = await node_loss(args.image, args.runs, "5s")
    loss_fast = await node_loss(args.image, args.runs, "1s")
    offline, paused, took = await backup_offline(args.image, args.backup_sessions)
    print(f"\nSwarm runner, {args.runs} runs, median (min, max); image {args.image}\n")
    print(table_header(WIDTH))
    print(row("provision → first QR, RUNNER=docker", docker_qr, "s", "< 2", WIDTH))
    print(row("provision → first QR, RUNNER=swarm", swarm_qr, "s", "< 2", WIDTH))
    print(
        row("node lost → its sessions connected, heartbeat 5s", loss_default, "s", "< 25", WIDTH)
    )
    print(row("node lost → sessions connected, heartbeat 1s", loss_fast, "s", "< 8", WIDTH))
    print(row(f"backup: offline per remote session (n={len(offline)})", offline, "s", "", WIDTH))
    print(
        row(f"backup: docker pause per manager session (n={len(paused)})", paused, "ms", "", WIDTH)
    )
    print(row(f"backup of {args.backup_sessions} sessions, whole", [took], "s", "", WIDTH))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--backup-sessions", type=int, default=8)
    parser.add_argument("--image", default="wafleet-worker:latest")
    args = parser.parse_args()
    asyncio.run(bench(args))


if __name__ == "__main__":
    main()
