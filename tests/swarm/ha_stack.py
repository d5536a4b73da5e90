"""deploy/wafleet-ha-stack.yml on the three managers of ``swarm-engine.sh up3``, for the test.

Node wafleet.ha=1 is engine 2 (127.0.0.2): the stack's first Redis primary, and the node the
test stops, since the main engine (127.0.0.1) must stay. Node 2 is engine 3 (127.0.0.3) and
node 3 the main engine. Everything the stack needs from outside is made here: the folders
standing for the shared storage, proxies, the simulated network, the two secret files, free
ports on all three addresses. ``remove`` takes all of it away again, on every engine.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker

from core.docker_engine import SESSION_LABEL
from tests.fleet import eventually
from tests.swarm.conftest import ROOT
from wafleet import devstack

STACK_FILE = ROOT / "deploy" / "wafleet-ha-stack.yml"
HA_LABEL = "wafleet.ha"
UID = 10001
MASTER = "wafleet"
# wafleet.ha slot -> (address, engine socket); slot 1 is the node the test stops.
SLOTS = {
    1: ("127.0.0.2", "/run/wafleet-swarm2.sock"),
    2: ("127.0.0.3", "/run/wafleet-swarm3.sock"),
    3: ("127.0.0.1", "/var/run/docker.sock"),
}
ENGINE2_PIDFILE = Path("/var/lib/wafleet-swarm2/dockerd.pid")


def docker_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def engine(slot: int) -> Any:
    """A docker.DockerClient of the engine of node ``slot``."""
    return docker.DockerClient(base_url=f"unix://{SLOTS[slot][1]}", timeout=30)


def _free_everywhere() -> int:
    """A port free on all three node addresses (each node binds its own)."""
    while True:
        port = devstack.free_port()
        try:
            for address, _ in SLOTS.values():
                with socket.socket() as probe:
                    probe.bind((address, port))
        except OSError:
            continue
        return port


@dataclass
class HaStack:
    name: str
    nodes: dict[int, str]  # slot -> node id
    api_key: str
    redis_password: str
    http_port: int
    redis_port: int
    sentinel_port: int
    simwa: str
    top: Path
    secret_names: list[str]
    procs: list[devstack.Proc] = field(default_factory=list)
    deploy_error: str | None = None

    def api(self, slot: int) -> str:
        return f"http://{SLOTS[slot][0]}:{self.http_port}"

    def redis_address(self, slot: int) -> str:
        return f"{SLOTS[slot][0]}:{self.redis_port}"

    def sentinel(self, slot: int) -> tuple[str, int]:
        return SLOTS[slot][0], self.sentinel_port


def deploy(
    name: str, nodes: dict[int, str], images: dict[str, str], telegram: dict[str, str]
) -> HaStack:
    """``docker stack deploy`` of the HA file with this test's values; ``telegram`` adds the
    bot's settings (the fake Bot API server) to serve's secret settings. A refused deploy is
    the stack's ``deploy_error``: what was made is still there for ``remove_stack``."""
    top = Path(tempfile.mkdtemp(prefix="wafleet-ha-", dir="/var/tmp"))
    top.chmod(0o755)  # the containers' uid 10001 must reach the shared folders
    sessions_dir, backups_dir = top / "sessions", top / "backups"
    for folder in (sessions_dir, backups_dir):
        folder.mkdir()
        os.chown(folder, UID, UID)
    proxies = [devstack.start_proxy(top, n) for n in (1, 2)]
    simwa, simwa_port = devstack.start_simwa(top)
    http_port, redis_port, sentinel_port = (_free_everywhere() for _ in range(3))
    api_key, redis_password, version = (
        secrets.token_hex(16),
        secrets.token_hex(16),
        secrets.token_hex(3),
    )
    settings = {
        "API_KEY": api_key,
        "WEBHOOK_SECRET": secrets.token_hex(16),
        # The host is not used with Sentinel: the password and the database are.
        "REDIS_URL": f"redis://:{redis_password}@{SLOTS[1][0]}:{redis_port}/0",
        **{f"PROXY_URL_{n}": p.url for n, p in enumerate(proxies, 1)},
        "WORKER_UNSCHEDULABLE_MS": "5000",
        # No careful-sending pauses: the messages of the test leave at once.
        "MESSAGES_PER_MINUTE": "0",
        "MESSAGES_PER_DAY": "0",
        "MESSAGE_PAUSE_MIN_MS": "0",
        "MESSAGE_PAUSE_MAX_MS": "0",
        "TYPING_MS_PER_CHAR": "1",
        "TYPING_MAX_MS": "30",
        **telegram,
    }
    secrets_file, redis_conf = top / "wafleet-secrets.env", top / "redis.conf"
    secrets_file.write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
    redis_conf.write_text(f"requirepass {redis_password}\n")
    env = {
        **{f"NODE{slot}_ADDR": address for slot, (address, _) in SLOTS.items()},
        **{f"NODE{slot}_DOCKER_SOCK": sock for slot, (_, sock) in SLOTS.items()},
        "HTTP_PORT": str(http_port),
        "REDIS_PORT": str(redis_port),
        "SENTINEL_PORT": str(sentinel_port),
        "SENTINEL_DOWN_AFTER_MS": "1000",
        "SESSIONS_DIR": str(sessions_dir),
        "BACKUPS_DIR": str(backups_dir),
        "ORCH_IMAGE": images["orchestrator"],
        "WORKER_IMAGE": images["worker"],
        "REDIS_IMAGE": images["redis"],
        "WA_DRIVER": "sim",
        "SIMWA_URL": f"ws://localhost:{simwa_port}/ws",
        "WORKER_MEMORY_RESERVATION": "32m",
        "DOCKER_GID": str(os.stat("/var/run/docker.sock").st_gid),
        "WAFLEET_SECRETS_FILE": str(secrets_file),
        "REDIS_CONF_FILE": str(redis_conf),
        "SECRETS_VERSION": version,
        "LOG_FORMAT": "text",
    }
    stack = HaStack(
        name,
        nodes,
        api_key,
        redis_password,
        http_port,
        redis_port,
        sentinel_port,
        f"http://127.0.0.1:{simwa_port}",
        top,
        [f"wafleet_env_{version}", f"wafleet_redis_conf_{version}"],
        [simwa, *(p.proc for p in proxies)],
    )
    for slot, node in nodes.items():
        labelled = docker_cli("node", "update", "--label-add", f"{HA_LABEL}={slot}", node)
        assert labelled.returncode == 0, labelled.stderr
    deployed = docker_cli("stack", "deploy", "-c", str(STACK_FILE), name, env=env)
    if deployed.returncode != 0:
        stack.deploy_error = deployed.stderr
    return stack


def is_ours(stack: HaStack, service: Any) -> bool:
    """A worker service of this stack's serve (they are not the stack's: serve makes them)."""
    env = service.attrs["Spec"]["TaskTemplate"]["ContainerSpec"].get("Env", [])
    return f"SIMWA_URL=ws://localhost:{stack.simwa.rsplit(':', 1)[1]}/ws" in env


def worker_services(stack: HaStack) -> list[Any]:
    client = engine(3)
    try:
        found = client.services.list(filters={"label": SESSION_LABEL})
        return [service for service in found if is_ours(stack, service)]
    finally:
        client.close()


def print_logs(stack: HaStack) -> None:
    for service in ("serve-1", "serve-2", "serve-3", "sentinel-2", "sentinel-3"):
        logs = docker_cli("service", "logs", "--raw", "--tail", "60", f"{stack.name}_{service}")
        print(f"--- {stack.name}_{service} (last 60 lines) ---\n{logs.stdout}{logs.stderr}")


async def remove_stack(stack: HaStack) -> None:
    """The stack, its workers, containers, volumes, secrets and node labels, on every engine."""
    docker_cli("stack", "rm", stack.name)
    for service in worker_services(stack):
        with contextlib.suppress(docker.errors.NotFound):
            service.remove()
    clients = {slot: engine(slot) for slot in SLOTS}
    try:

        async def gone() -> bool:
            for client in clients.values():
                found = client.api.containers(
                    all=True, filters={"label": f"com.docker.stack.namespace={stack.name}"}
                )
                if found:
                    return False
            return True

        await eventually(gone, 90, f"the containers of stack {stack.name} gone")
        for client in clients.values():
            for volume in client.volumes.list(filters={"name": stack.name + "_"}):
                with contextlib.suppress(docker.errors.APIError):
                    volume.remove(force=True)
    finally:
        for client in clients.values():
            client.close()
    for secret in stack.secret_names:
        docker_cli("secret", "rm", secret)
    for node in stack.nodes.values():
        docker_cli("node", "update", "--label-rm", HA_LABEL, node)
    for proc in stack.procs:
        proc.kill()
    shutil.rmtree(stack.top, ignore_errors=True)
