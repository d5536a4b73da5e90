"""``RUNNER=swarm``: one Docker Swarm service per session, across the swarm's nodes.

Each worker is a replicated service ``wa_session_<id>`` with one replica, labelled
``wafleet.session=<id>`` and ``wafleet.instance=<instance>`` on the service and on its
containers, with the docker runner's environment and the session folder bind-mounted at
``/app/session``. ``SESSIONS_DIR`` must therefore be the same shared path on every node (NFS,
CephFS, ...): a task may start on any node and must find the session's credentials there.

Swarm's restart policy is ``none``: wafleet's orchestrator already restarts crashed workers,
counts crashes and parks crash loops; a Swarm that restarted them as well would fight it (two
restarts for one crash, crash loops Swarm never gives up on). Swarm still does what only it
can do: place each task on a node with room (memory reservation), spread sessions over nodes,
honour ``WORKER_CONSTRAINTS``.

One watcher polls the tasks of the watched services and the nodes: it reports ended tasks,
moves the tasks of a lost node and gives up on tasks no node has room for
(``core/swarm_watch.py``). This module is the service life cycle.

``pause`` (rolling backups) must leave the session's files still while they are copied. A task on
the manager's own node is frozen with ``docker pause`` (milliseconds, its connection stays open).
There is no cross-node ``docker pause``: the engine of another node is not reachable from here,
only the swarm's API is. So a task elsewhere is *stopped*: its service is scaled to 0 replicas
and ``pause`` returns once Swarm reports the task shut down (the container has exited), and
``resume`` scales it back to 1 and returns once the new task runs. That session is offline
for the stop, the copy, a worker start and its reconnect (seconds, measured in
``bench/swarm_bench.py``), one session at a time; the watcher ignores the stop it asked for.

What every engine runner does alike (per-session locks, the ownership check before a stop,
``docker pause``) is ``core/engine_runner.py``'s. Every Docker SDK call blocks, so each runs
in ``asyncio.to_thread``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from docker.errors import DockerException, NotFound
from docker.types import (
    Mount,
    Resources,
    RestartPolicy,
    ServiceMode,
)
from docker.utils import parse_bytes

from core.docker_engine import SESSION_LABEL, SESSION_MOUNT, container_name, engine_reason
from core.engine_runner import EngineRunnerError
from core.errors import ConfigError
from core.notifier import Notifier
from core.runner import NodeInfo, WorkerHandle, WorkerSpec
from core.swarm_watch import ALIVE, ENDED, SwarmWatching, Watch, node_names, task_state

log = logging.getLogger("wafleet.runner.swarm")

# A sim worker measured ~23 MB (~30 MB as a container), an idle neonize worker ~39 MB
# (docs/performance.md): room for both, so Swarm never packs more workers on a node than its
# memory holds.
DEFAULT_RESERVATION = "96m"
DEFAULT_LIMIT = "256m"
RESCALE_WAIT_S = 30.0  # how long ``resume`` waits for a task scaled back to 1 to run


class SwarmRunnerError(EngineRunnerError):
    """A worker service could not be created or changed."""


class SwarmRunner(SwarmWatching):
    name = "swarm"
    kind = "service"
    inspect = "inspect_service"
    labels_at = "Spec"
    error = SwarmRunnerError

    def __init__(
        self,
        instance: str,
        image: str = "wafleet-worker:latest",
        network: str = "host",
        *,
        sessions_dir: Path,
        stop_grace_s: float = 5.0,
        memory_reservation: str = DEFAULT_RESERVATION,
        memory_limit: str = DEFAULT_LIMIT,
        constraints: tuple[str, ...] = (),
        notifier: Notifier | None = None,
        claim: Callable[[str], Awaitable[bool]] | None = None,
        base_url: str | None = None,
        poll_s: float = 1.0,
        unschedulable_after_s: float = 30.0,
        user: str | None = None,
    ) -> None:
        """``sessions_dir`` is SESSIONS_DIR: checked here, on the manager, because every
        node bind-mounts it; ``constraints`` are Swarm placement constraints
        (``node.labels.wafleet==worker``); ``notifier`` receives the node-loss alert;
        ``claim``, with several serve replicas, makes one of them the one to move a lost
        node's sessions."""
        if not sessions_dir.is_dir():
            raise ConfigError(
                f"SESSIONS_DIR {sessions_dir} does not exist on this manager; with RUNNER=swarm "
                "it must be the same shared path on every node"
            )
        super().__init__(
            instance, image, network, stop_grace_s=stop_grace_s, base_url=base_url, user=user
        )
        self.sessions_dir = sessions_dir
        self.memory_reservation = parse_bytes(memory_reservation)
        self.memory_limit = parse_bytes(memory_limit)
        self.constraints = constraints
        self.notifier = notifier
        self.claim = claim
        self.poll_s = poll_s
        self.unschedulable_after_s = unschedulable_after_s
        self._watcher = None
        self._own_node: str | None = None

    # Runner ---------------------------------------------------------------------------------

    async def start(self, spec: WorkerSpec) -> WorkerHandle:
        sid = spec.session_id
        async with self._lock(sid):
            await self._stop_locked(sid)
            client = await self._engine.get()
            env = self._worker_env(spec)
            kwargs: dict[str, Any] = {
                "name": container_name(sid),
                # The fingerprint only on the service: reconcile compares it with Redis.
                "labels": self._worker_labels(spec),
                "container_labels": self._worker_labels(spec, fingerprint=False),
                "env": [f"{k}={v}" for k, v in env.items()],
                "mounts": [Mount(SESSION_MOUNT, str(spec.session_dir.resolve()), type="bind")],
                "networks": [self.network],
                "resources": Resources(
                    mem_limit=self.memory_limit, mem_reservation=self.memory_reservation
                ),
                "restart_policy": RestartPolicy(condition="none"),
                "mode": ServiceMode("replicated", replicas=1),
                "constraints": list(self.constraints),
                # A spread preference acts within one service; with one replica each, what
                # spreads sessions is the scheduler's own choice of the node running the
                # fewest tasks. Stated anyway, so a service scaled up never stacks on a node.
                "preferences": [("spread", "node.id")],
                "user": self._worker_user(spec),
                "init": True,
                "stop_grace_period": int(self.stop_grace_s * 1e9),
                "log_driver": "json-file",
                "log_driver_options": {"max-size": "10m", "max-file": "3"},
            }
            service = await self._create(client.services.create, sid, kwargs)
            self._watched[sid] = Watch(service.id)
            self._ensure_watcher()
            log.info("started worker %s (service %s)", sid, service.id[:12])
            return WorkerHandle(sid, service.id)

    def fingerprint(self, spec: WorkerSpec) -> str:
        # What the service runs matters too: a new WORKER_IMAGE, limits or constraints replace it.
        return spec.fingerprint(
            self.image,
            self.network,
            str(self.memory_reservation),
            str(self.memory_limit),
            ",".join(self.constraints),
        )

    async def running(self) -> dict[str, WorkerHandle]:
        services = await self._services()
        if not services:
            return {}
        tasks = await self._latest_tasks([s["ID"] for s in services])
        nodes = await self._node_states()
        handles: dict[str, WorkerHandle] = {}
        for service in services:
            handle = self._handle(self._labels(service), service["ID"])
            task = tasks.get(service["ID"])
            if handle is None or task is None or task_state(task) not in ALIVE:
                continue
            if nodes.get(task.get("NodeID", "")) != "ready":
                continue  # on a lost node: not alive as far as we can tell
            handles[handle.session_id] = handle
        return handles

    async def nodes(self) -> list[NodeInfo]:
        """Every node of the swarm, with this instance's sessions whose newest task is alive
        on it (a node that is down still shows the sessions Swarm has not moved off yet)."""
        client = await self._engine.get()
        nodes = await asyncio.to_thread(client.api.nodes)
        services = await self._services()
        tasks = await self._latest_tasks([s["ID"] for s in services]) if services else {}
        placed: dict[str, list[str]] = {}
        for service in services:
            sid = self._labels(service).get(SESSION_LABEL)
            task = tasks.get(service["ID"])
            if sid and task is not None and task_state(task) in ALIVE and task.get("NodeID"):
                placed.setdefault(task["NodeID"], []).append(sid)
        names = node_names(nodes)
        return [
            NodeInfo(
                n["ID"],
                names[n["ID"]],
                str(n.get("Status", {}).get("State", "unknown")),
                str(n.get("Spec", {}).get("Availability", "active")),
                tuple(sorted(placed.get(n["ID"], ()))),
            )
            for n in sorted(nodes, key=lambda n: names[n["ID"]])
        ]

    async def adopt(self, handle: WorkerHandle) -> None:
        if handle.session_id in self._watched:
            return
        info = await self._adoptable(handle)
        if info is None:
            return
        self._watched[handle.session_id] = Watch(info["ID"])
        self._ensure_watcher()
        log.info("adopted worker %s (service %s)", handle.session_id, info["ID"][:12])

    async def pause(self, session_id: str) -> bool:
        """Freeze a task on this node; stop one elsewhere (scale to 0). False: none runs."""
        async with self._lock(session_id):
            watch = self._watched.get(session_id)
            task = await self._running_task(watch)
            if watch is None or task is None:
                return False
            if task.get("NodeID") != await self._own_node_id():
                return await self._scale_down(session_id, watch, task)
            container = task["Status"].get("ContainerStatus", {}).get("ContainerID")
        return bool(container) and await self._freeze(container)

    async def resume(self, session_id: str) -> None:
        watch = self._watched.get(session_id)
        if watch is not None and watch.scaled_down:
            async with self._lock(session_id):
                await self._scale_up(session_id, watch)
            return
        container = await self._local_container(session_id)
        if container is not None:
            await self._thaw(container)

    # internals ------------------------------------------------------------------------------

    async def _services(self) -> list[dict[str, Any]]:
        """This instance's services."""
        client = await self._engine.get()
        found: list[dict[str, Any]] = await asyncio.to_thread(
            client.api.services, filters={"label": self._instance_filter()}
        )
        return found

    async def _remove(self, session_id: str, info: dict[str, Any]) -> None:
        client = await self._engine.get()
        with contextlib.suppress(NotFound):
            await asyncio.to_thread(client.api.remove_service, info["ID"])
        log.info("stopped worker %s (service %s)", session_id, info["ID"][:12])
        await self._wait_stopped(session_id)

    async def _wait_stopped(self, session_id: str) -> None:
        """Until the removed service's container is gone (bounded): its folder may go next.

        Containers are seen on this manager's engine only; one on another node stops within
        the same grace period, but we cannot watch it from here.
        """
        client = await self._engine.get()
        deadline = time.monotonic() + self.stop_grace_s + 5
        filters = {"label": [self._instance_filter(), f"{SESSION_LABEL}={session_id}"]}
        while time.monotonic() < deadline:
            found = await asyncio.to_thread(client.api.containers, filters=filters)
            if not found:
                return
            await asyncio.sleep(0.2)

    async def _own_node_id(self) -> str:
        if self._own_node is None:
            client = await self._engine.get()
            info = await asyncio.to_thread(client.info)
            self._own_node = str(info["Swarm"]["NodeID"])
        return self._own_node

    async def _running_task(self, watch: Watch | None) -> dict[str, Any] | None:
        """The newest task of a watched service, if it is running."""
        if watch is None:
            return None
        task = (await self._latest_tasks([watch.service_id])).get(watch.service_id)
        return task if task is not None and task_state(task) == "running" else None

    async def _local_container(self, session_id: str) -> str | None:
        """The container id of the session's running task, if it runs on this node."""
        task = await self._running_task(self._watched.get(session_id))
        if task is None or task.get("NodeID") != await self._own_node_id():
            return None
        container: str | None = task["Status"].get("ContainerStatus", {}).get("ContainerID")
        return container

    async def _scale(self, service_id: str, replicas: int) -> None:
        client = await self._engine.get()
        service = await asyncio.to_thread(client.services.get, service_id)
        await asyncio.to_thread(service.scale, replicas)

    async def _scale_down(self, sid: str, watch: Watch, task: dict[str, Any]) -> bool:
        """Stop a task on another node for a backup: scale to 0, until its container exited.

        True once Swarm reports the task ended. If it does not within the stop grace (its
        node unreachable, say), the service goes back to 1 replica and the answer is False:
        the folder is then copied without a pause, as the caller is told.
        """
        watch.scaled_down = True
        try:
            await self._scale(watch.service_id, 0)
        except DockerException as exc:
            watch.scaled_down = False
            log.warning("cannot stop %s for a backup: %s", sid, engine_reason(exc))
            return False
        deadline = time.monotonic() + self.stop_grace_s + 10
        while time.monotonic() < deadline:
            now = await self._task(task["ID"])
            if now is None or task_state(now) in ENDED:
                log.info("worker %s stopped for a backup (scaled to 0)", sid)
                return True
            await asyncio.sleep(0.2)
        log.warning("worker %s did not stop for a backup in time; copying it live", sid)
        await self._scale_up(sid, watch)
        return False

    async def _scale_up(self, sid: str, watch: Watch) -> None:
        """Back to 1 replica after a backup; returns once the new task runs (bounded)."""
        try:
            await self._scale(watch.service_id, 1)
        except DockerException as exc:
            # Left to the watcher: the ended task is reported as an exit, and restarted.
            log.warning("cannot scale %s back to 1: %s", sid, engine_reason(exc))
            watch.scaled_down = False
            return
        deadline = time.monotonic() + RESCALE_WAIT_S
        while time.monotonic() < deadline:
            task = (await self._latest_tasks([watch.service_id])).get(watch.service_id)
            # Running; or ended already, which the watcher reports as an exit.
            if (
                task is not None
                and task.get("DesiredState") == "running"
                and (task_state(task) == "running" or task_state(task) in ENDED)
            ):
                break
            await asyncio.sleep(0.2)
        else:
            log.warning("worker %s not running %.0fs after the backup", sid, RESCALE_WAIT_S)
        watch.created = time.monotonic()  # a task still pending now waits its own bound
        watch.scaled_down = False
        log.info("worker %s started again after the backup", sid)
