"""The swarm tier: RUNNER=swarm on a real two-node Docker Swarm on this machine.

Once per test session ``scripts/swarm-engine.sh up`` turns the engine of
``scripts/docker-engine.sh`` into a manager and starts a second dockerd that joins as a worker
(127.0.0.2), with the worker image copied to it; ``down`` at the end leaves the swarm, stops
that engine and removes its folders. If the second engine cannot start (exit 2 or 3), every
swarm test is reported SKIPPED with the script's words. The worker image is built from this
tree under its own tag (``SWARM_WORKER_IMAGE``), unless ``WAFLEET_SWARM_BUILD=0``.

The ``fleet`` fixture is the main tier's (redis, microsocks, simwa, ``wafleet serve``) with
``RUNNER=swarm``; workers use host networking, so they reach everything on loopback, and both
nodes share this machine's file system, which stands for the shared ``SESSIONS_DIR`` mount.
Teardown stops serve first, then removes every service of the test's wafleet instance.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest

from core.docker_engine import INSTANCE_LABEL, SESSION_LABEL
from core.settings import Settings
from tests.fleet import Fleet
from wafleet.serve import instance_id

ROOT = Path(__file__).resolve().parents[2]
WORKER_IMAGE = os.environ.get("SWARM_WORKER_IMAGE", "wafleet-worker:swarm")
SECOND_SOCK = "/run/wafleet-swarm2.sock"
SETUP_TIMEOUT_S = 900


@dataclass(frozen=True)
class Swarm:
    manager: Any  # docker.DockerClient of the manager
    second: Any  # docker.DockerClient of the second engine
    manager_node: str
    second_node: str

    def second_pid(self) -> int:
        return int(Path("/var/lib/wafleet-swarm2/dockerd.pid").read_text())


def _script(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ROOT / "scripts" / "swarm-engine.sh"), *args],
        capture_output=True,
        text=True,
        timeout=SETUP_TIMEOUT_S,
        env={**os.environ, **(env or {})},
    )


def _skip(reason: str) -> None:
    banner = f"SWARM TIER SKIPPED: {reason}"
    print(f"\n{'!' * 78}\n{banner}\n{'!' * 78}", flush=True)
    pytest.skip(banner)


@pytest.fixture(scope="session")
def swarm() -> Iterator[Swarm]:
    engine = subprocess.run(
        [str(ROOT / "scripts" / "docker-engine.sh")], capture_output=True, text=True, timeout=900
    )
    if engine.returncode in (2, 3):
        _skip(f"the Docker Engine cannot start here: {engine.stderr.strip()[-400:]}")
    if os.environ.get("WAFLEET_SWARM_BUILD") != "0":
        build = subprocess.run(
            [str(ROOT / "scripts" / "build-images.sh")],
            capture_output=True,
            text=True,
            timeout=SETUP_TIMEOUT_S,
            env={
                **os.environ,
                "WORKER_TAG": WORKER_IMAGE,
                "ORCH_TAG": "wafleet-orchestrator:swarm",
                "BUILD_NETWORK": "none",
            },
        )
        if build.returncode != 0:
            pytest.fail(f"build-images.sh failed:\n{build.stdout[-2000:]}", pytrace=False)
    up = _script("up", env={"SWARM_IMAGES": WORKER_IMAGE})
    if up.returncode in (2, 3):
        _script("down")
        _skip(f"the two-node swarm cannot start here: {up.stderr.strip()[-400:]}")
    if up.returncode != 0:
        _script("down")
        pytest.fail(f"swarm-engine.sh up failed:\n{up.stderr[-2000:]}", pytrace=False)
    manager = docker.from_env()
    second = docker.DockerClient(base_url=f"unix://{SECOND_SOCK}")
    try:
        yield Swarm(
            manager,
            second,
            manager.info()["Swarm"]["NodeID"],
            second.info()["Swarm"]["NodeID"],
        )
    finally:
        manager.close()
        second.close()
        down = _script("down")
        print(down.stderr)


SWARM_OPTIONS = {
    "RUNNER": "swarm",
    "WORKER_IMAGE": WORKER_IMAGE,
    "WORKER_NETWORK": "host",
    "WORKER_MEMORY_RESERVATION": "32m",
    "WORKER_UNSCHEDULABLE_MS": "5000",
    "PING_TIMEOUT_MS": "20000",
    "proxies": 3,  # 12 slots: the tests' 8 sessions, and one more once a lost node is back
    "start": False,  # SESSIONS_DIR (the "shared mount") must exist before serve starts
}


@pytest.fixture
def fleet_options(swarm: Swarm) -> dict[str, Any]:
    return dict(SWARM_OPTIONS)


def instance_of(fleet: Fleet) -> str:
    return instance_id(Settings.from_env(fleet.env))


def services(client: Any, fleet: Fleet, sid: str | None = None) -> list[Any]:
    """This fleet's worker services (of one session when ``sid`` is given)."""
    labels = [f"{INSTANCE_LABEL}={instance_of(fleet)}"]
    if sid is not None:
        labels.append(f"{SESSION_LABEL}={sid}")
    return list(client.services.list(filters={"label": labels}))


def running_task(service: Any) -> dict[str, Any] | None:
    """The one task Swarm wants running and that runs. A task left on a lost node still
    reads "running" (its node cannot say otherwise) but is no longer wanted."""
    tasks = [
        t
        for t in service.tasks()
        if t["Status"]["State"] == "running" and t["DesiredState"] == "running"
    ]
    return tasks[0] if len(tasks) == 1 else None


def placement(swarm: Swarm, fleet: Fleet) -> dict[str, str]:
    """session id -> the node its running task is on, as the engine itself says."""
    found = {}
    for service in services(swarm.manager, fleet):
        task = running_task(service)
        if task is not None:
            found[service.attrs["Spec"]["Labels"][SESSION_LABEL]] = task["NodeID"]
    return found


@pytest.fixture
async def fleet(fleet: Fleet, swarm: Swarm) -> AsyncIterator[Fleet]:
    fleet.sessions_dir.mkdir(parents=True, exist_ok=True)
    fleet.start()
    try:
        yield fleet
    finally:
        fleet.stop()  # first, so nothing answers a task's end with a new service
        for service in services(swarm.manager, fleet):
            service.remove()
        if (fleet.workdir / "serve.log").exists():
            tail = "\n".join(fleet.log().splitlines()[-40:])
            print(f"--- serve.log (last 40 lines) ---\n{tail}")
