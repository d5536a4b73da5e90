"""What the Docker and Swarm runners share: the engine client, and how they read the engine.

The Docker SDK blocks on every call, and creating a client already asks the engine for its
API version, so the client is made lazily, off the event loop, once per runner.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import docker
from docker.errors import APIError, DockerException

SESSION_LABEL = "wafleet.session"
INSTANCE_LABEL = "wafleet.instance"
SPEC_LABEL = "wafleet.spec"  # the WorkerSpec's fingerprint (see SessionService.reconcile)
CONTAINER_PREFIX = "wa_session_"
SESSION_MOUNT = "/app/session"


def container_name(session_id: str) -> str:
    """The container (docker) or service (swarm) of a session: a fixed name
    (``wa_session_<id>``) that operators and their tools look for."""
    return f"{CONTAINER_PREFIX}{session_id}"


class EngineClient:
    """One Docker SDK client per runner, created on first use (``base_url``: DOCKER_HOST or
    the local socket when None)."""

    def __init__(self, base_url: str | None) -> None:
        self.base_url = base_url
        self._client: Any = None
        self._lock = asyncio.Lock()

    async def get(self) -> Any:
        async with self._lock:
            if self._client is None:
                self._client = await asyncio.to_thread(self.new)
            return self._client

    def new(self) -> Any:
        """A fresh client (blocking): for a thread that needs its own, like an event stream."""
        if self.base_url is not None:
            return docker.DockerClient(base_url=self.base_url, version="auto")
        return docker.from_env(version="auto")

    async def close(self) -> None:
        if self._client is not None:
            await asyncio.to_thread(self._client.close)
            self._client = None


def folder_owner(path: Path) -> str:
    """``uid:gid`` of a session folder: the worker runs as its owner, so it can write there."""
    st = path.stat()
    return f"{st.st_uid}:{st.st_gid}"


def engine_reason(exc: DockerException) -> str:
    """The engine's own words for a refusal, without the SDK's request dump."""
    if isinstance(exc, APIError):
        return str(exc.explanation or exc)
    return str(exc)
