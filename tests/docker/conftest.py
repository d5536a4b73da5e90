"""The Docker tier: a real Docker Engine, images built from the current tree, RUNNER=docker.

Once per test session: ``scripts/docker-engine.sh`` (install/start the engine, base image) and
``scripts/build-images.sh`` with ``BUILD_NETWORK=none`` (wheelhouse, then both images, built
from this working tree with no network inside the build). If the engine cannot start here
(exit 2 or 3), every Docker test is reported SKIPPED with the script's own words; any other
failure is an error. Never a silent pass. ``WAFLEET_DOCKER_BUILD=0`` reuses the images as they
are (to iterate on the tests; the build test then reports itself skipped).

The ``fleet`` fixture is the main tier's one (redis, microsocks, simwa, ``wafleet serve``) with
``RUNNER=docker``; containers use host networking, so they reach serve's webhook and the
proxies on loopback. Teardown stops serve first (so nothing restarts a worker), then removes
every container of the test's wafleet instance.
"""

from __future__ import annotations

import hashlib
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
WORKER_IMAGE = "wafleet-worker:latest"
ORCH_IMAGE = "wafleet-orchestrator:latest"
DOCKER_OPTIONS = {"RUNNER": "docker", "WORKER_IMAGE": WORKER_IMAGE, "WORKER_NETWORK": "host"}
# The first Docker test also pays for the engine and the image build.
FIRST_TEST_TIMEOUT_S = 900


@dataclass(frozen=True)
class Images:
    build_log: Path
    # Digest of the tree's wafleet sources when the build took its copy (people edit on).
    tree_digest: str


def tree_digest() -> str:
    """Digest of the wafleet package's Python sources in this working tree."""
    h = hashlib.sha256()
    for path in sorted((ROOT / "wafleet").rglob("*.py")):
        if "__pycache__" not in path.parts:
            h.update(str(path.relative_to(ROOT / "wafleet")).encode() + b"\0")
            h.update(path.read_bytes() + b"\0")
    return h.hexdigest()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    first = next((i for i in items if i.get_closest_marker("docker")), None)
    if first is not None:
        # In front of the test's own timeout marker, if it has one: pytest-timeout takes the first.
        first.add_marker(pytest.mark.timeout(FIRST_TEST_TIMEOUT_S), append=False)


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


@pytest.fixture(scope="session")
def docker_images(tmp_path_factory: pytest.TempPathFactory) -> Images:
    engine = subprocess.run(
        [str(ROOT / "scripts" / "docker-engine.sh")],
        capture_output=True,
        text=True,
        timeout=FIRST_TEST_TIMEOUT_S,
    )
    if engine.returncode in (2, 3):
        reason = _tail(engine.stderr, 8) or f"exit {engine.returncode}"
        banner = f"DOCKER TIER SKIPPED: the Docker Engine cannot start here: {reason}"
        print(f"\n{'!' * 78}\n{banner}\n{'!' * 78}", flush=True)
        pytest.skip(banner)
    if engine.returncode != 0:
        pytest.fail(
            f"scripts/docker-engine.sh failed with exit {engine.returncode}:\n"
            f"{_tail(engine.stderr)}",
            pytrace=False,
        )
    log = tmp_path_factory.mktemp("images") / "build-images.log"
    if os.environ.get("WAFLEET_DOCKER_BUILD") == "0":
        # For iterating on the tests only: the images as they are, and the build test skips.
        return Images(log, "")
    digest = tree_digest()  # build-images.sh copies the tree in its first second
    with log.open("wb") as out:
        build = subprocess.run(
            [str(ROOT / "scripts" / "build-images.sh")],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "BUILD_NETWORK": "none"},
            timeout=FIRST_TEST_TIMEOUT_S,
        )
    if build.returncode != 0:
        pytest.fail(
            f"scripts/build-images.sh failed with exit {build.returncode}:\n"
            f"{_tail(log.read_text(errors='replace'), 40)}",
            pytrace=False,
        )
    return Images(log, digest)


@pytest.fixture(scope="session")
def docker_client(docker_images: Images) -> Iterator[Any]:
    client = docker.from_env()
    yield client
    client.close()


@pytest.fixture
def fleet_options(docker_images: Images) -> dict[str, Any]:
    return dict(DOCKER_OPTIONS)


def instance_of(fleet: Fleet) -> str:
    return instance_id(Settings.from_env(fleet.env))


def containers(
    client: Any, fleet: Fleet, sid: str | None = None, *, alive: bool = True
) -> list[Any]:
    """This fleet's worker containers (of one session when ``sid`` is given)."""
    labels = [f"{INSTANCE_LABEL}={instance_of(fleet)}"]
    if sid is not None:
        labels.append(f"{SESSION_LABEL}={sid}")
    filters: dict[str, Any] = {"label": labels}
    if alive:
        filters["status"] = "running"
    return list(client.containers.list(all=not alive, filters=filters))


@pytest.fixture
async def fleet(fleet: Fleet, docker_client: Any) -> AsyncIterator[Fleet]:
    try:
        yield fleet
    finally:
        fleet.stop()  # first, so no die event is answered with a new container
        for container in containers(docker_client, fleet, alive=False):
            name = container.name
            try:
                logs = container.logs(tail=30).decode(errors="replace")
            except docker.errors.DockerException as exc:
                logs = f"(no logs: {exc})"
            print(f"--- docker logs {name} (last 30 lines) ---\n{logs}")
            container.remove(force=True)
        if (fleet.workdir / "serve.log").exists():
            print(f"--- serve.log (last 40 lines) ---\n{_tail(fleet.log(), 40)}")
