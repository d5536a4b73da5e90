"""What the Docker and Swarm runners share once: one engine, one worker per session on it.

Both keep a session's worker under the name ``wa_session_<id>`` labelled with the session and
this wafleet's instance; both serialize start and stop per session, refuse to touch a worker
another instance labelled, freeze a container with ``docker pause`` (a 409 means "not running"
or "not paused", not an error), and report exits to the callbacks. Only what a worker *is*
differs (a container, a service) and how its end is noticed (an event stream, a poller), so
a subclass says how to inspect one (``inspect``, ``labels_at``), how to remove one
(``_remove``) and how to stop watching (``_stop_watching``).

Every Docker SDK call blocks, so each one runs in ``asyncio.to_thread``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from docker.errors import APIError, DockerException, NotFound

from core.docker_engine import (
    INSTANCE_LABEL,
    SESSION_LABEL,
    SESSION_MOUNT,
    SPEC_LABEL,
    EngineClient,
    container_name,
    engine_reason,
    folder_owner,
)
from core.runner import ExitCallback, WorkerExit, WorkerHandle, WorkerSpec
from core.tasks import TaskGroup

W = TypeVar("W")  # what a runner keeps about a worker whose exit it reports


class EngineRunnerError(RuntimeError):
    """A worker could not be started or changed on the engine (missing image, name taken,
    a worker of another wafleet instance, an engine error)."""


class EngineRunner(Generic[W]):
    """The part of a runner on a Docker engine that does not depend on what a worker is."""

    name: str
    kind: str  # what a worker is on the engine, for messages: container, service
    inspect: str  # the SDK's low-level call that inspects one: inspect_container, ...
    labels_at: str  # where its labels are in that answer: Config, Spec
    error: type[EngineRunnerError] = EngineRunnerError

    def __init__(
        self,
        instance: str,
        image: str,
        network: str,
        *,
        stop_grace_s: float,
        base_url: str | None,
        user: str | None,
    ) -> None:
        self.instance = instance
        self.image = image
        self.network = network
        self.stop_grace_s = stop_grace_s
        self.base_url = base_url
        self.user = user
        self._engine = EngineClient(base_url)
        self._locks: dict[str, asyncio.Lock] = {}
        # session id -> what is watched of the worker whose exit is reported.
        self._watched: dict[str, W] = {}
        self._callbacks: list[ExitCallback] = []
        self._tasks = TaskGroup()

    def on_exit(self, callback: ExitCallback) -> None:
        self._callbacks.append(callback)

    async def stop(self, session_id: str) -> None:
        async with self._lock(session_id):
            await self._stop_locked(session_id)

    async def close(self) -> None:
        self._watched.clear()
        await self._stop_watching()
        await self._tasks.cancel()
        await self._engine.close()

    # for the subclasses ---------------------------------------------------------------------

    async def _remove(self, session_id: str, info: dict[str, Any]) -> None:
        """Stop and remove the session's worker (``info``: the engine's view of it)."""
        raise NotImplementedError

    async def _stop_watching(self) -> None:
        """Stop noticing exits (``close``)."""
        raise NotImplementedError

    def _lock(self, session_id: str) -> asyncio.Lock:
        return self._locks.setdefault(session_id, asyncio.Lock())

    async def _stop_locked(self, session_id: str) -> None:
        """Stop and remove the session's worker, under its lock; a no-op if there is none."""
        # Forget it first: the end of a worker we stop is not an exit to report.
        self._watched.pop(session_id, None)
        info = await self._own(session_id)
        if info is not None:
            await self._remove(session_id, info)

    def _worker_env(self, spec: WorkerSpec) -> dict[str, str]:
        """The worker's environment, its session folder made (it is bind-mounted)."""
        spec.session_dir.mkdir(parents=True, exist_ok=True)
        return {**spec.env, "SESSION_DIR": SESSION_MOUNT}

    def _worker_labels(self, spec: WorkerSpec, *, fingerprint: bool = True) -> dict[str, str]:
        """Whose worker it is; with what it was started (``fingerprint``, for reconcile)."""
        labels = {SESSION_LABEL: spec.session_id, INSTANCE_LABEL: self.instance}
        if fingerprint:
            labels[SPEC_LABEL] = self.fingerprint(spec)
        return labels

    def _worker_user(self, spec: WorkerSpec) -> str:
        """``uid:gid`` the worker runs as: USER, or the owner of the session folder (so the
        worker can write its files)."""
        return self.user or folder_owner(spec.session_dir)

    async def _create(self, create: Callable[..., Any], sid: str, options: dict[str, Any]) -> Any:
        """``create(image, **options)`` off the loop; a refusal becomes ``error``."""
        try:
            return await asyncio.to_thread(create, self.image, **options)
        except DockerException as exc:
            raise self.error(
                f"cannot create the {self.kind} of {sid}: {engine_reason(exc)}"
            ) from exc

    def _instance_filter(self) -> str:
        """The engine's label filter for this instance's workers."""
        return f"{INSTANCE_LABEL}={self.instance}"

    def _handle(
        self, labels: dict[str, str], ref: str, paused: bool = False
    ) -> WorkerHandle | None:
        """The handle of a worker found on the engine; None if it is not a session's."""
        sid = labels.get(SESSION_LABEL)
        if not sid:
            return None
        return WorkerHandle(sid, ref, fingerprint=labels.get(SPEC_LABEL), paused=paused)

    def fingerprint(self, spec: WorkerSpec) -> str:
        raise NotImplementedError

    def _labels(self, info: dict[str, Any]) -> dict[str, str]:
        labels: dict[str, str] = info[self.labels_at].get("Labels") or {}
        return labels

    async def _inspect(self, ref: str) -> dict[str, Any] | None:
        """The engine's view of a worker (by name or id); None if there is none."""
        client = await self._engine.get()
        try:
            info: dict[str, Any] = await asyncio.to_thread(getattr(client.api, self.inspect), ref)
        except NotFound:
            return None
        return info

    async def _own(self, session_id: str) -> dict[str, Any] | None:
        """The session's worker, None if there is none; one that another wafleet instance
        labelled is refused (``error``), never touched."""
        name = container_name(session_id)
        info = await self._inspect(name)
        if info is None:
            return None
        owner = self._labels(info).get(INSTANCE_LABEL)
        if owner != self.instance:
            raise self.error(
                f"{self.kind} {name} belongs to another wafleet instance ({owner!r}); "
                "not touching it"
            )
        return info

    async def _adoptable(self, handle: WorkerHandle) -> dict[str, Any] | None:
        """The worker ``handle`` names, if it is this instance's worker of that session."""
        info = await self._inspect(handle.ref)
        if info is None:
            return None
        labels = self._labels(info)
        if (
            labels.get(INSTANCE_LABEL) != self.instance
            or labels.get(SESSION_LABEL) != handle.session_id
        ):
            return None
        return info

    async def _freeze(self, container: str) -> bool:
        """``docker pause`` (the cgroup freezer: processes stop, sockets stay open); False if
        the container is gone or not running."""
        client = await self._engine.get()
        try:
            await asyncio.to_thread(client.api.pause, container)
        except NotFound:
            return False
        except APIError as exc:
            if exc.status_code == 409:  # not running (or already paused)
                return False
            raise
        return True

    async def _thaw(self, container: str) -> None:
        """``docker unpause``; a no-op if the container is gone or not paused."""
        client = await self._engine.get()
        try:
            await asyncio.to_thread(client.api.unpause, container)
        except NotFound:
            pass
        except APIError as exc:
            if exc.status_code != 409:  # 409: not paused
                raise

    def _notify(self, session_id: str, ended: WorkerExit) -> None:
        """Tell every callback that the session's worker ended (on the loop)."""
        for callback in self._callbacks:
            self._tasks.spawn(callback(session_id, ended), name=f"exit-{session_id}")
