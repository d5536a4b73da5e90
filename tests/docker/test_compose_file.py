"""docker-compose.yml, the one-host deployment: it parses, and it runs the images the build makes.

Checked with Docker Compose itself (``docker-compose config``, Debian's compose; the compose
plugin of newer engines reads the same files), from a copy of the file and of
``docker-compose.override.yml`` beside ``.env.example`` as its ``.env``, as an operator
starts. The images it names must be the tags ``scripts/build-images.sh`` gives by default, or
``docker compose up`` would look for images nobody built.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]  # PyYAML comes with schemathesis (dev)

from tests.docker.conftest import ORCH_IMAGE, ROOT, WORKER_IMAGE, Images

pytestmark = pytest.mark.docker


def _build_default(name: str) -> str:
    script = (ROOT / "scripts" / "build-images.sh").read_text()
    found = re.search(rf"^{name}=\$\{{{name}:-([^}}]+)\}}$", script, re.MULTILINE)
    assert found, f"{name} has no default in build-images.sh"
    return found.group(1)


def test_docker_compose_yml_parses_and_names_the_built_images(
    docker_images: Images, tmp_path: Path
) -> None:
    # docker_images: scripts/docker-engine.sh has run, and it installs docker-compose.
    compose = shutil.which("docker-compose")
    assert compose, "docker-compose missing: scripts/docker-engine.sh installs it"
    for name in ("docker-compose.yml", "docker-compose.override.yml"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copy(ROOT / ".env.example", tmp_path / ".env")
    done = subprocess.run(
        [compose, "--profile", "build", "config"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    config: dict[str, Any] = yaml.safe_load(done.stdout)
    services = config["services"]
    assert _build_default("ORCH_TAG") == ORCH_IMAGE
    assert _build_default("WORKER_TAG") == WORKER_IMAGE
    assert services["orchestrator"]["image"] == ORCH_IMAGE
    assert services["worker"]["image"] == WORKER_IMAGE
    assert services["orchestrator"]["environment"]["WORKER_IMAGE"] == WORKER_IMAGE
    assert services["orchestrator"]["build"]["dockerfile"] == "Dockerfile"
    assert services["worker"]["build"]["dockerfile"] == "worker/Dockerfile"
    assert "--appendonly" in services["redis"]["command"]
    # docker-compose.override.yml, read with it by default, publishes the API on ORCH_PORT.
    [port] = services["orchestrator"]["ports"]
    assert (str(port["published"]), port["target"]) == ("3001", 3000)
    assert config["networks"]["default"]["name"] == "wafleet"
