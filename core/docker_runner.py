"""``RUNNER=docker``: one container per session, through the Docker Engine API.

Each worker is a container named ``wa_session_<id>`` labelled ``wafleet.session=<id>`` and
``wafleet.instance=<instance>``; the instance label is how a new ``serve`` finds (``running``)
and adopts its workers after a restart, and how two wafleet instances on one engine never
touch each other's containers. The session folder is bind-mounted at ``/app/session``.

Exits are noticed from the engine's event stream (``die`` events of this instance's
containers), read by a dedicated thread that reconnects with backoff when the stream breaks
(an engine restart) and then reconciles what it watches against what still runs, so a
container that died while the stream was down is reported too. Every Docker SDK call blocks,
so each one runs in ``asyncio.to_thread``; the SDK client is created lazily for the same
reason (it asks the engine for its API version).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Iterator
from typing import Any

from docker.errors import APIError, DockerException, NotFound
from docker.types import LogConfig

from core.docker_engine import SESSION_LABEL, SESSION_MOUNT, container_name, engine_reason
from core.engine_runner import EngineRunner, EngineRunnerError
from core.runner import NodeInfo, WorkerExit, WorkerHandle, WorkerSpec, this_host

log = logging.getLogger("wafleet.runner.docker")

BACKOFF_MIN_S = 0.5
BACKOFF_MAX_S = 30.0


class DockerRunnerError(EngineRunnerError):
    """A worker container could not be started (missing image, name taken, engine error)."""


class DockerRunner(EngineRunner[str]):  # watched: session id -> container id
    name = "docker"
    kind = "container"
    inspect = "inspect_container"
    labels_at = "Config"
    error = DockerRunnerError

    def __init__(
        self,
        instance: str,
        image: str = "wafleet-worker:latest",
        network: str = "host",
        *,
        stop_grace_s: float = 5.0,
        mem_limit: str = "256m",
        pids_limit: int = 256,
        base_url: str | None = None,
        user: str | None = None,
        command: list[str] | None = None,
    ) -> None:
        """``network`` is WORKER_NETWORK: ``host`` or the name of a Docker network.

        ``base_url`` is the engine's address (default: DOCKER_HOST or the local socket).
        ``user`` is the container's ``uid:gid`` (default: the owner of the session folder,
        so the worker can write its files). ``command`` replaces the image's command
        (``wafleet worker``); meant for smoke tests only.
        """
        super().__init__(
            instance, image, network, stop_grace_s=stop_grace_s, base_url=base_url, user=user
        )
        self.mem_limit = mem_limit
        self.pids_limit = pids_limit
        self.command = command
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = threading.Event()
        self._events_thread: threading.Thread | None = None
        self._stream: Any = None
        self._stream_lock = threading.Lock()

    # Runner ---------------------------------------------------------------------------------

    async def start(self, spec: WorkerSpec) -> WorkerHandle:
        sid = spec.session_id
        async with self._lock(sid):
            await self._stop_locked(sid)
            client = await self._engine.get()
            self._ensure_events()
            env = self._worker_env(spec)
            kwargs: dict[str, Any] = {
                "name": container_name(sid),
                "labels": self._worker_labels(spec),
                "environment": env,
                "volumes": {
                    str(spec.session_dir.resolve()): {"bind": SESSION_MOUNT, "mode": "rw"}
                },
                "network_mode": self.network,
                "mem_limit": self.mem_limit,
                "pids_limit": self.pids_limit,
                "log_config": LogConfig(
                    type=LogConfig.types.JSON, config={"max-size": "10m", "max-file": "3"}
                ),
                # tini as PID 1: SIGTERM from ``docker stop`` reaches the worker's handlers.
                "init": True,
                "user": self._worker_user(spec),
                "detach": True,
            }
            if self.command is not None:
                kwargs["command"] = self.command
            # create, then start: ``run`` would try to pull a missing image from a registry.
            container = await self._create(client.containers.create, sid, kwargs)
            cid: str = container.id
            # Watched before it starts, so even an immediate death is reported.
            self._watched[sid] = cid
            try:
                await asyncio.to_thread(container.start)
            except DockerException as exc:
                self._watched.pop(sid, None)
                with contextlib.suppress(DockerException):
                    await asyncio.to_thread(container.remove, force=True)
                raise DockerRunnerError(
                    f"cannot start the container of {sid}: {engine_reason(exc)}"
                ) from exc
            log.info("started worker %s (container %s)", sid, cid[:12])
            return WorkerHandle(sid, cid)

    async def pause(self, session_id: str) -> bool:
        return await self._freeze(container_name(session_id))

    async def resume(self, session_id: str) -> None:
        await self._thaw(container_name(session_id))

    def fingerprint(self, spec: WorkerSpec) -> str:
        # The image and how the container runs matter too: a new WORKER_IMAGE replaces it.
        return spec.fingerprint(self.image, self.network, repr(self.command))

    async def running(self) -> dict[str, WorkerHandle]:
        client = await self._engine.get()
        # Paused ones too: a rolling backup that died with ``serve`` leaves its worker frozen,
        # alive and connected; it is adopted and resumed, not replaced.
        found = await asyncio.to_thread(
            client.api.containers,
            filters={"label": [self._instance_filter()], "status": ["running", "paused"]},
        )
        handles = (
            self._handle(c.get("Labels") or {}, c["Id"], paused=c.get("State") == "paused")
            for c in found
        )
        return {h.session_id: h for h in handles if h is not None}

    async def nodes(self) -> list[NodeInfo]:
        # One engine beside ``serve``: its containers run on this host.
        return [this_host(await self.running())]

    async def adopt(self, handle: WorkerHandle) -> None:
        sid = handle.session_id
        if sid in self._watched:
            return
        info = await self._adoptable(handle)
        if info is None or not info["State"].get("Running"):
            return
        self._ensure_events()
        self._watched[sid] = info["Id"]
        log.info("adopted worker %s (container %s)", sid, info["Id"][:12])

    # internals ------------------------------------------------------------------------------

    async def _stop_watching(self) -> None:
        self._closing.set()
        self._close_stream()
        if self._events_thread is not None:
            await asyncio.to_thread(self._events_thread.join, 10)
            self._events_thread = None

    async def _remove(self, session_id: str, info: dict[str, Any]) -> None:
        client = await self._engine.get()
        cid = info["Id"]
        if info["State"].get("Running"):
            with contextlib.suppress(NotFound):
                grace = max(0, round(self.stop_grace_s))
                await asyncio.to_thread(client.api.stop, cid, timeout=grace)
            log.info("stopped worker %s (container %s)", session_id, cid[:12])
        try:
            await asyncio.to_thread(client.api.remove_container, cid, force=True)
        except NotFound:
            pass
        except APIError as exc:
            if exc.status_code != 409:  # 409: a removal is already in progress
                raise

    # exit notice ----------------------------------------------------------------------------

    def _ensure_events(self) -> None:
        if self._events_thread is not None or self._closing.is_set():
            return
        self._loop = asyncio.get_running_loop()
        self._events_thread = threading.Thread(
            target=self._events_main, name=f"docker-events-{self.instance}", daemon=True
        )
        self._events_thread.start()

    def _events_main(self) -> None:
        """Thread: follow ``die`` events of this instance's containers until ``close``."""
        loop = self._loop
        assert loop is not None
        backoff = BACKOFF_MIN_S
        filters = {
            "type": "container",
            "event": "die",
            "label": [self._instance_filter()],
        }
        while not self._closing.is_set():
            client: Any = None
            try:
                client = self._engine.new()
                stream = client.events(decode=True, filters=filters)
                with self._stream_lock:
                    self._stream = stream
                if self._closing.is_set():
                    break
                # Subscribed: whatever died before now (stream down, engine restart) is found
                # by reconciling; whatever dies from now on arrives as an event.
                loop.call_soon_threadsafe(self._spawn_reconcile)
                backoff = BACKOFF_MIN_S
                for event in _iter(stream):
                    loop.call_soon_threadsafe(self._on_die_event, event)
                if not self._closing.is_set():
                    log.warning("docker event stream ended; reconnecting")
            except Exception as exc:
                if self._closing.is_set() or loop.is_closed():
                    break
                log.warning("docker event stream failed (%s); retrying in %.1fs", exc, backoff)
            finally:
                self._close_stream()
                if client is not None:
                    with contextlib.suppress(Exception):
                        client.close()
            if self._closing.wait(backoff):
                break
            backoff = min(backoff * 2, BACKOFF_MAX_S)

    def _close_stream(self) -> None:
        with self._stream_lock:
            stream, self._stream = self._stream, None
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.close()

    def _spawn_reconcile(self) -> None:
        if not self._closing.is_set():
            self._tasks.spawn(self._reconcile(), name="docker-reconcile")

    async def _reconcile(self) -> None:
        """Report watched containers that are no longer running."""
        client = await self._engine.get()
        for sid, cid in list(self._watched.items()):
            try:
                info = await asyncio.to_thread(client.api.inspect_container, cid)
            except NotFound:
                self._report(sid, cid, None)
                continue
            except DockerException as exc:
                log.warning("cannot inspect worker %s: %s", sid, engine_reason(exc))
                continue
            state = info["State"]
            # Only a finished container is dead: one still "created" is about to start
            # (we watch it from before its start), and a "paused" one is being backed up.
            if state.get("Status") in ("exited", "dead"):
                self._report(sid, cid, state.get("ExitCode"))

    def _on_die_event(self, event: dict[str, Any]) -> None:
        actor = event.get("Actor") or {}
        attrs = actor.get("Attributes") or {}
        sid = attrs.get(SESSION_LABEL)
        cid = actor.get("ID") or event.get("id")
        if not sid or not cid:
            return
        code = attrs.get("exitCode")
        self._report(sid, cid, int(code) if code is not None and str(code).isdigit() else None)

    def _report(self, sid: str, cid: str, code: int | None) -> None:
        """On the loop: report an exit once, and only of the container we watch for ``sid``."""
        if self._watched.get(sid) != cid:
            return
        del self._watched[sid]
        log.warning("worker %s (container %s) exited with %s", sid, cid[:12], code)
        self._notify(sid, WorkerExit.of_code(code))


def _iter(stream: Any) -> Iterator[dict[str, Any]]:
    yield from stream
