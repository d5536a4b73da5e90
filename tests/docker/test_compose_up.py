"""docker-compose.yml brought up the way the README tells a newcomer, and taken down again.

In a fresh folder: ``.env`` from ``.env.example`` with the test's values, ``sessions`` and
``backups`` owned by uid 10001, the images of ``scripts/build-images.sh`` (the tier's
``docker_images`` fixture runs it) and ``up -d``. The only addition is
``tests/docker/compose.test.yml``, named by ``COMPOSE_FILE`` in that ``.env`` so every command
stays the README's: this engine makes no bridge networks, so the override puts Redis and the
orchestrator on the host's network, listening on loopback.

Through the published API: a session linked (simwa and a microsocks proxy on loopback, as in the
rest of the tier), the orchestrator restarted with Compose (the worker container is adopted: no
new container, QR or pairing), a message delivered, and the README's way down leaving nothing
running. Cleanup runs whatever happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import docker
import pytest
import redis.asyncio as aioredis

from core.docker_engine import SESSION_LABEL
from tests.docker.conftest import ORCH_IMAGE, ROOT, WORKER_IMAGE, Images
from tests.fleet import API_KEY, PHONE, WEBHOOK_SECRET, Fleet, eventually
from tests.messaging import FAST, OUTSIDE, send, sent_by, wait_message
from wafleet import devstack

pytestmark = pytest.mark.docker

REDIS_IMAGE = "wafleet-redis:bookworm"
BASE_IMAGE = "wafleet-base:bookworm"
OVERRIDE = ROOT / "tests" / "docker" / "compose.test.yml"
# The README's way down, verbatim (the test checks the README still says it).
STOP_ORCHESTRATOR = "stop orchestrator"
REMOVE_WORKERS = "docker ps -aq --filter label=wafleet.session | xargs -r docker rm -f"
# The folder's name is the Compose project's; a clone of the repository is called this.
PROJECT = "wafleet"
# Compose waits 10 s for a container to stop; the orchestrator leaves its workers running.
COMPOSE_TIMEOUT_S = 180


def compose_command() -> list[str]:
    """``docker compose`` where the engine has the plugin, else Debian's ``docker-compose``
    (which ``scripts/docker-engine.sh`` installs); the README gives both."""
    plugin = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
    if plugin.returncode == 0:
        return ["docker", "compose"]
    found = shutil.which("docker-compose")
    assert found, "no `docker compose`, no docker-compose (scripts/docker-engine.sh installs it)"
    return [found]


@pytest.fixture(scope="module")
def redis_image(docker_images: Images) -> str:
    """The README's Redis for hosts with no registry (``scripts/docker-engine.sh redis``)."""
    made = subprocess.run(
        [str(ROOT / "scripts" / "docker-engine.sh"), "redis"],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert made.returncode == 0, made.stderr[-3000:]
    return REDIS_IMAGE


def set_env(text: str, values: dict[str, str]) -> str:
    """``.env.example``'s text with ``values`` in place, as an operator edits it: each
    ``NAME=`` line given its value; a name the file does not have is appended."""
    lines = text.splitlines()
    left = dict(values)
    for i, line in enumerate(lines):
        name = line.partition("=")[0]
        if not line.startswith("#") and name in left:
            lines[i] = f"{name}={left.pop(name)}"
    lines += [f"{name}={value}" for name, value in left.items()]
    return "\n".join(lines) + "\n"


class Compose:
    """Compose run in ``folder`` as an operator's shell does: there, with ``PWD`` set to it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.argv = compose_command()
        self.env = {**os.environ, "PWD": str(folder)}
        for name in ("COMPOSE_FILE", "COMPOSE_PROJECT_NAME"):  # only the .env's may count
            self.env.pop(name, None)

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [*self.argv, *args],
            cwd=self.folder,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=COMPOSE_TIMEOUT_S,
            check=False,
        )
        if check:
            assert done.returncode == 0, f"compose {' '.join(args)}:\n{done.stderr[-3000:]}"
        return done

    def shell(self, line: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["bash", "-c", line],
            cwd=self.folder,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=COMPOSE_TIMEOUT_S,
            check=False,
        )
        assert done.returncode == 0, f"{line}:\n{done.stderr[-3000:]}"
        return done


def project_containers(client: Any) -> list[Any]:
    label = f"com.docker.compose.project={PROJECT}"
    return list(client.containers.list(all=True, filters={"label": label}))


def workers_of(client: Any, folder: Path) -> list[Any]:
    """Worker containers whose session folder is under ``folder`` (this test's, no other's)."""
    found = client.containers.list(all=True, filters={"label": SESSION_LABEL})
    return [
        c
        for c in found
        if any(m["Source"].startswith(f"{folder}/") for m in c.attrs.get("Mounts", []))
    ]


@dataclass
class Stack:
    proxy: devstack.Proxy
    simwa_port: int
    compose: Compose
    client: Any  # docker.DockerClient (the SDK is untyped)
    redis_image: str


@pytest.fixture
def stack(tmp_path: Path, redis_image: str, docker_images: Images) -> Iterator[Stack]:
    """Simwa and one proxy on loopback, and the Compose folder; taken down whatever happens."""
    proxy = devstack.start_proxy(tmp_path, 1)
    simwa, simwa_port = devstack.start_simwa(tmp_path)
    folder = tmp_path / PROJECT
    folder.mkdir()
    compose = Compose(folder)
    client = docker.from_env()
    up = folder / ".env"
    try:
        yield Stack(proxy, simwa_port, compose, client, redis_image)
    finally:
        # Each step on its own: one that fails (or hangs) must not keep the next from running.
        with contextlib.suppress(subprocess.TimeoutExpired):
            if up.exists():
                logs = compose.run("logs", "--no-color", "--tail", "60", check=False)
                print(f"--- compose logs (last 60 lines each) ---\n{logs.stdout}{logs.stderr}")
        with contextlib.suppress(subprocess.TimeoutExpired):
            if up.exists():  # first, so it starts no worker again
                compose.run("stop", "--timeout", "5", "orchestrator", check=False)
        for container in workers_of(client, folder):
            with contextlib.suppress(docker.errors.DockerException):
                container.remove(force=True)
        with contextlib.suppress(subprocess.TimeoutExpired):
            if up.exists():
                compose.run("down", "--volumes", "--timeout", "5", check=False)
        for container in project_containers(client):  # should Compose itself have failed
            with contextlib.suppress(docker.errors.DockerException):
                container.remove(force=True)
        client.close()
        proxy.proc.kill()
        simwa.stop()


@pytest.mark.timeout(300)
async def test_compose_up_links_adopts_on_restart_sends_and_goes_down_clean(
    stack: Stack, tmp_path: Path
) -> None:
    compose, client = stack.compose, stack.client
    folder = compose.folder
    readme = (ROOT / "README.md").read_text()
    assert REMOVE_WORKERS in readme and f"compose {STOP_ORCHESTRATOR}" in readme

    # --- as the README says -----------------------------------------------------------------
    orch_port, redis_port = devstack.free_port(), devstack.free_port()
    for name in ("docker-compose.yml", "docker-compose.override.yml"):  # the clone's
        shutil.copy(ROOT / name, folder / name)
    shutil.copy(OVERRIDE, folder / OVERRIDE.name)
    values = {
        "API_KEY": API_KEY,
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
        "PROXY_URL_1": stack.proxy.url,
        "WA_DRIVER": "sim",
        "SIMWA_URL": f"ws://localhost:{stack.simwa_port}/ws",
        "DOCKER_GID": str(os.stat("/var/run/docker.sock").st_gid),
        "ORCH_PORT": str(orch_port),
        "BASE_IMAGE": BASE_IMAGE,
        "REDIS_IMAGE": stack.redis_image,
        "LOG_LEVEL": "DEBUG",
        **FAST,
        # The test's own: the override's Redis port, and the override itself.
        "REDIS_PORT": str(redis_port),
        "COMPOSE_FILE": f"docker-compose.yml:{OVERRIDE.name}",
    }
    env_text = set_env((ROOT / ".env.example").read_text(), values)
    (folder / ".env").write_text(env_text)
    for name in ("sessions", "backups"):
        (folder / name).mkdir()
        os.chown(folder / name, 10001, 10001)
    up = await asyncio.to_thread(compose.run, "up", "-d")
    assert "orchestrator" in up.stderr + up.stdout
    await asyncio.to_thread(devstack.wait_reconciled, orch_port, 60)

    running = {c.labels["com.docker.compose.service"]: c for c in project_containers(client)}
    assert sorted(running) == ["orchestrator", "redis"]
    orchestrator = running["orchestrator"]
    assert orchestrator.attrs["Config"]["User"] == "10001:10001"
    assert orchestrator.attrs["Config"]["Image"] == ORCH_IMAGE
    assert running["redis"].attrs["Config"]["Image"] == REDIS_IMAGE

    async with (
        aiohttp.ClientSession() as http,
        aioredis.Redis.from_url(f"redis://127.0.0.1:{redis_port}/0", decode_responses=True) as r,
    ):
        fleet = Fleet(tmp_path, "", [stack.proxy], stack.simwa_port, {}, http, r, port=orch_port)
        # The README's check.
        status, stats = await fleet.call("GET", "/api/v1/dashboard/stats")
        assert status == 200, stats
        status, _ = await fleet.call("GET", "/api/v1/dashboard/stats", headers={"X-API-Key": "x"})
        assert status == 401

        # --- a session, linked -------------------------------------------------------------
        sid = (await fleet.provision(PHONE))["id"]
        [worker] = [c for c in workers_of(client, folder) if c.status == "running"]
        assert worker.name == f"wa_session_{sid}"
        assert worker.attrs["Config"]["Image"] == WORKER_IMAGE
        assert worker.attrs["Config"]["User"] == "10001:10001"
        assert worker.attrs["Mounts"][0]["Source"] == f"{folder}/sessions/{sid}"
        code = await fleet.qr(sid, timeout=60)
        assert await fleet.scan(code) == 200
        await fleet.wait_status(sid, "connected", timeout=60)
        assert (folder / "sessions" / sid / "creds.json").exists()
        device = await fleet.device(sid)

        # --- the orchestrator restarted: the worker is adopted ----------------------------
        started = orchestrator.attrs["State"]["StartedAt"]
        await asyncio.to_thread(compose.run, "restart", "orchestrator")
        orchestrator.reload()
        assert orchestrator.attrs["State"]["StartedAt"] != started  # it did restart
        await asyncio.to_thread(devstack.wait_reconciled, orch_port, 60)
        logs = await asyncio.to_thread(compose.run, "logs", "--no-color", "orchestrator")
        assert "reconciled: 1 adopted, 0 started, 0 orphan(s) removed" in logs.stdout
        await fleet.wait_status(sid, "connected")
        [still] = [c for c in workers_of(client, folder) if c.status == "running"]
        assert still.id == worker.id
        assert len(await fleet.events(sid, "QR_CODE")) == 1  # no new QR
        after = await fleet.device(sid)
        assert after["connectCount"] == device["connectCount"]  # never even reconnected
        async with http.get(fleet.simwa + "/control/devices") as answer:
            devices = [d for d in await answer.json() if d["phone"] == PHONE]
        assert len(devices) == 1, devices  # no new pairing

        # --- a message, delivered ---------------------------------------------------------
        mid = (await send(fleet, sid, OUTSIDE, "hello from compose"))["id"]
        await wait_message(fleet, sid, mid, {"delivered", "read"})
        seen = await sent_by(fleet, PHONE)
        mine = [(m["to"], m["text"]) for m in seen if m["to"] == OUTSIDE]  # no keep-alives
        assert mine == [(OUTSIDE, "hello from compose")]

    # --- the README's way down --------------------------------------------------------------
    await asyncio.to_thread(compose.run, *STOP_ORCHESTRATOR.split())
    await asyncio.to_thread(compose.shell, REMOVE_WORKERS)
    await asyncio.to_thread(compose.run, "down")

    async def nothing_left() -> bool:
        alive = [c.name for c in client.containers.list(filters={"name": "wa_session_"})]
        return not alive and not project_containers(client)

    await eventually(nothing_left, 10, "no worker and no Compose container left")
    assert (folder / "sessions" / sid / "creds.json").exists()  # the data stays
