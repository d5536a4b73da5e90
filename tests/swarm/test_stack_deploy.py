"""The production deployment itself: ``docker stack deploy`` of deploy/wafleet-stack.yml.

The very file an operator deploys, on the real two-node swarm, with test values only where they
must differ: loopback ports, this test's proxies and simulated network, the images built from
this tree, folders of its own. Redis (the Debian image of ``scripts/docker-engine.sh redis``)
and ``wafleet serve`` run as the stack's services on the manager; a session provisioned through
the deployed serve's REST API becomes a worker service, its QR is scanned at simwa, and it
turns ``connected``. Then ``docker stack rm`` and every trace removed.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from core.docker_engine import INSTANCE_LABEL, SESSION_LABEL
from tests.fleet import eventually
from tests.swarm.conftest import ROOT, WORKER_IMAGE, Swarm, _script
from wafleet import devstack

pytestmark = [pytest.mark.swarm, pytest.mark.timeout(600)]

STACK_FILE = ROOT / "deploy" / "wafleet-stack.yml"
ORCH_IMAGE = os.environ.get("SWARM_ORCH_IMAGE", "wafleet-orchestrator:swarm")
REDIS_IMAGE = os.environ.get("SWARM_REDIS_IMAGE", "wafleet-redis:bookworm")
ORCH_LABEL = "wafleet.orchestrator"
PHONE = "972501234567"
UID = 10001


@pytest.fixture(scope="module")
def redis_image(swarm: Swarm) -> str:
    """The stack's Redis image, made like the base image, on both nodes."""
    made = subprocess.run(
        [str(ROOT / "scripts" / "docker-engine.sh"), "redis"],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "REDIS_IMAGE": REDIS_IMAGE},
    )
    assert made.returncode == 0, made.stderr[-2000:]
    up = _script("up", env={"SWARM_IMAGES": f"{WORKER_IMAGE} {REDIS_IMAGE}"})
    assert up.returncode == 0, up.stderr[-2000:]
    return REDIS_IMAGE


@dataclass
class Deployed:
    name: str
    api: str
    api_key: str
    simwa: str
    secrets: list[str]


def _docker(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def stack_dir() -> Iterator[Path]:
    """A folder the container's uid 10001 can reach (pytest's own tmp is root's, mode 700)."""
    top = Path(tempfile.mkdtemp(prefix="wafleet-stack-", dir="/var/tmp"))
    top.chmod(0o755)
    try:
        yield top
    finally:
        shutil.rmtree(top, ignore_errors=True)


@pytest.fixture
async def deployed(swarm: Swarm, redis_image: str, stack_dir: Path) -> AsyncIterator[Deployed]:
    name = f"wafleet-t{secrets.token_hex(3)}"
    sessions_dir, backups_dir = stack_dir / "sessions", stack_dir / "backups"
    for folder in (sessions_dir, backups_dir):
        folder.mkdir()
        os.chown(folder, UID, UID)
    proxies = [devstack.start_proxy(stack_dir, n) for n in (1, 2)]
    simwa, simwa_port = devstack.start_simwa(stack_dir)
    api_port, redis_port = devstack.free_port(), devstack.free_port()
    api_key, redis_password = secrets.token_hex(16), secrets.token_hex(16)
    version = secrets.token_hex(3)
    secrets_file, redis_conf = stack_dir / "wafleet-secrets.env", stack_dir / "redis.conf"
    secrets_file.write_text(
        "# serve's secret settings\n"
        f"API_KEY={api_key}\n"
        f"WEBHOOK_SECRET={secrets.token_hex(16)}\n"
        f"REDIS_URL=redis://:{redis_password}@127.0.0.1:{redis_port}/0\n"
        + "".join(f"PROXY_URL_{n}={p.url}\n" for n, p in enumerate(proxies, 1))
    )
    redis_conf.write_text(f"requirepass {redis_password}\n")
    env = {
        "HTTP_HOST": "127.0.0.1",
        "HTTP_PORT": str(api_port),
        "REDIS_PORT": str(redis_port),
        "SESSIONS_DIR": str(sessions_dir),
        "BACKUPS_DIR": str(backups_dir),
        "ORCH_IMAGE": ORCH_IMAGE,
        "WORKER_IMAGE": WORKER_IMAGE,
        "REDIS_IMAGE": redis_image,
        "WA_DRIVER": "sim",
        "SIMWA_URL": f"ws://localhost:{simwa_port}/ws",
        "WORKER_MEMORY_RESERVATION": "32m",
        "DOCKER_GID": str(os.stat("/var/run/docker.sock").st_gid),
        "WAFLEET_SECRETS_FILE": str(secrets_file),
        "REDIS_CONF_FILE": str(redis_conf),
        "SECRETS_VERSION": version,
        "LOG_FORMAT": "text",
    }
    node_label = _docker("node", "update", "--label-add", f"{ORCH_LABEL}=true", swarm.manager_node)
    assert node_label.returncode == 0, node_label.stderr
    deploy = _docker("stack", "deploy", "-c", str(STACK_FILE), name, env=env)
    stack = Deployed(
        name,
        f"http://127.0.0.1:{api_port}",
        api_key,
        f"http://127.0.0.1:{simwa_port}",
        [f"wafleet_env_{version}", f"wafleet_redis_conf_{version}"],
    )
    try:
        assert deploy.returncode == 0, deploy.stderr
        yield stack
    finally:
        for service in ("orchestrator", "redis"):
            logs = _docker("service", "logs", "--raw", "--tail", "30", f"{name}_{service}")
            print(f"--- {name}_{service} (last 30 lines) ---\n{logs.stdout}{logs.stderr}")
        _docker("stack", "rm", name)
        # The workers are serve's, not the stack's: they outlive `stack rm` on purpose.
        for service in swarm.manager.services.list(filters={"label": SESSION_LABEL}):
            env_list = service.attrs["Spec"]["TaskTemplate"]["ContainerSpec"].get("Env", [])
            if f"SIMWA_URL=ws://localhost:{simwa_port}/ws" in env_list:
                service.remove()
        await _until_gone(swarm, name)
        for secret in stack.secrets:
            _docker("secret", "rm", secret)
        _docker("node", "update", "--label-rm", ORCH_LABEL, swarm.manager_node)
        for proxy in proxies:
            proxy.proc.kill()
        simwa.stop()


async def _until_gone(swarm: Swarm, name: str) -> None:
    """The stack's containers gone, then its Redis volume removed."""

    async def gone() -> bool:
        # The low-level listing: the SDK's inspects each one, and they are going away.
        found = swarm.manager.api.containers(
            all=True, filters={"label": f"com.docker.stack.namespace={name}"}
        )
        return not found

    await eventually(gone, 60, f"the containers of stack {name} gone")
    await eventually(
        lambda: _volume_removed(f"{name}_redis-data"), 30, f"the volume of stack {name} removed"
    )


async def _volume_removed(volume: str) -> bool:
    if _docker("volume", "inspect", volume).returncode != 0:
        return True
    _docker("volume", "rm", volume)
    return False


async def test_the_stack_file_deploys_and_links_a_session(
    deployed: Deployed, swarm: Swarm
) -> None:
    headers = {"X-API-Key": deployed.api_key}
    async with aiohttp.ClientSession(headers=headers) as http:

        async def healthy() -> bool:
            try:
                async with http.get(deployed.api + "/healthz") as r:
                    return r.status == 200
            except aiohttp.ClientError:
                return False

        await eventually(healthy, 120, "the deployed serve answering /healthz")
        async with http.post(deployed.api + "/api/sessions/provision", json={"phone": PHONE}) as r:
            assert r.status == 201, await r.text()
            sid = (await r.json())["id"]

        async def qr() -> str | None:
            async with http.get(f"{deployed.api}/api/sessions/{sid}/qr") as r:
                return str((await r.json())["qr"]) if r.status == 200 else None

        code = await eventually(qr, 90, "the first QR from a worker service")
        async with http.post(
            deployed.simwa + "/control/scan", json={"qr": code, "phone": PHONE}
        ) as r:
            assert r.status == 200, await r.text()

        async def connected() -> dict[str, Any] | None:
            async with http.get(f"{deployed.api}/api/sessions/{sid}/status") as r:
                body: dict[str, Any] = await r.json()
            return body if body.get("status") == "connected" else None

        status = await eventually(connected, 60, "the session connected")
        assert status["phone"] == PHONE
        async with http.get(deployed.simwa + "/control/devices") as r:
            [device] = [d for d in await r.json() if d["sessionId"] == sid]
        assert device["connected"] and device["phone"] == PHONE

    # The worker is a Swarm service of the deployed serve, not of the stack.
    [worker] = swarm.manager.services.list(filters={"name": f"wa_session_{sid}"})
    assert worker.attrs["Spec"]["Labels"][SESSION_LABEL] == sid
    assert INSTANCE_LABEL in worker.attrs["Spec"]["Labels"]
    # serve and Redis run on the labelled manager; no port is published; the secrets are
    # files, never in a service's spec.
    for service in ("orchestrator", "redis"):
        [found] = swarm.manager.services.list(filters={"name": f"{deployed.name}_{service}"})
        spec = found.attrs["Spec"]
        assert not found.attrs.get("Endpoint", {}).get("Ports"), found.attrs["Endpoint"]
        assert "node.role == manager" in spec["TaskTemplate"]["Placement"]["Constraints"]
        assert deployed.api_key not in json.dumps(spec)
        tasks = [t for t in found.tasks() if t["Status"]["State"] == "running"]
        assert [t["NodeID"] for t in tasks] == [swarm.manager_node]
