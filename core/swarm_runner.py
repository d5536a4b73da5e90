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

One watcher polls the tasks of the watched services (and the nodes) every ``poll_s``:

- a task that ended (exited, failed, rejected) is reported through the exit callback like the
  docker runner's ``die`` events, so the orchestrator restarts it;
- a task left running on a node that went down is rescheduled here (a forced update of its
  service, so Swarm places a new task on a node that is up) and *not* reported as a crash:
  the lost node is one event, reported as one grouped ``NODE_LOST`` alert (node, sessions,
  where they went) once the moved tasks run again;
- a task Swarm cannot place (no node has room) is removed after ``unschedulable_after_s`` and
  reported with ``EXIT_UNSCHEDULABLE``, so the session says why instead of pending forever.

``pause`` (rolling backups) must leave the session's files still while they are copied. A task on
the manager's own node is frozen with ``docker pause`` (milliseconds, its connection stays open).
There is no cross-node ``docker pause``: the engine of another node is not reachable from here,
only the swarm's API is. So a task elsewhere is *stopped*: its service is scaled to 0 replicas
and ``pause`` returns once Swarm reports the task shut down (the container has exited), and
``resume`` scales it back to 1 and returns once the new task runs. That session is offline
for the stop, the copy, a worker start and its reconnect (seconds, measured in
``bench/swarm_bench.py``), one session at a time; the watcher ignores the stop it asked for.

Every Docker SDK call blocks, so each runs in ``asyncio.to_thread``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from docker.errors import APIError, DockerException, NotFound
from docker.types import (
    Mount,
    Resources,
    RestartPolicy,
    ServiceMode,
)
from docker.utils import parse_bytes

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
from core.docker_runner import DockerRunnerError
from core.errors import ConfigError
from core.notifier import Alert, AlertKind, Done, Notifier
from core.runner import EXIT_UNSCHEDULABLE, ExitCallback, NodeInfo, WorkerHandle, WorkerSpec
from core.tasks import TaskGroup

log = logging.getLogger("wafleet.runner.swarm")

# Task states (Docker's ``TaskState``) by what they mean for the worker.
ENDED = frozenset({"complete", "failed", "shutdown", "rejected", "orphaned", "remove"})
WAITING = frozenset({"new", "pending"})  # not placed on a node yet
ALIVE = frozenset({"assigned", "accepted", "preparing", "ready", "starting", "running"})
# A sim worker measured ~23 MB (~30 MB as a container), an idle neonize worker ~39 MB
# (docs/performance.md): room for both, so Swarm never packs more workers on a node than its
# memory holds.
DEFAULT_RESERVATION = "96m"
DEFAULT_LIMIT = "256m"
NODE_LOST_WAIT_S = 60.0  # how long the grouped alert waits for the moved tasks to run
RESCALE_WAIT_S = 30.0  # how long ``resume`` waits for a task scaled back to 1 to run


class SwarmRunnerError(DockerRunnerError):
    """A worker service could not be created or changed."""


@dataclass
class _Watch:
    """A service whose task we follow."""

    service_id: str
    created: float = field(default_factory=time.monotonic)
    node: str | None = None  # where its task last ran
    moving: bool = False  # rescheduled off a lost node; its new task has not run yet
    scaled_down: bool = False  # scaled to 0 by ``pause`` (a backup), not an exit to report


class SwarmRunner:
    name = "swarm"

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
        base_url: str | None = None,
        poll_s: float = 1.0,
        unschedulable_after_s: float = 30.0,
        user: str | None = None,
    ) -> None:
        """``sessions_dir`` is SESSIONS_DIR: checked here, on the manager, because every
        node bind-mounts it; ``constraints`` are Swarm placement constraints
        (``node.labels.wafleet==worker``); ``notifier`` receives the node-loss alert."""
        if not sessions_dir.is_dir():
            raise ConfigError(
                f"SESSIONS_DIR {sessions_dir} does not exist on this manager; with RUNNER=swarm "
                "it must be the same shared path on every node"
            )
        self.instance = instance
        self.image = image
        self.network = network
        self.sessions_dir = sessions_dir
        self.stop_grace_s = stop_grace_s
        self.memory_reservation = parse_bytes(memory_reservation)
        self.memory_limit = parse_bytes(memory_limit)
        self.constraints = constraints
        self.notifier = notifier
        self.base_url = base_url
        self.poll_s = poll_s
        self.unschedulable_after_s = unschedulable_after_s
        self.user = user
        self._engine = EngineClient(base_url)
        self._locks: dict[str, asyncio.Lock] = {}
        self._watched: dict[str, _Watch] = {}
        self._callbacks: list[ExitCallback] = []
        self._tasks = TaskGroup()
        self._watcher: asyncio.Task[None] | None = None
        self._own_node: str | None = None

    def on_exit(self, callback: ExitCallback) -> None:
        self._callbacks.append(callback)

    # Runner ---------------------------------------------------------------------------------

    async def start(self, spec: WorkerSpec) -> WorkerHandle:
        sid = spec.session_id
        async with self._lock(sid):
            await self._stop_locked(sid)
            client = await self._engine.get()
            spec.session_dir.mkdir(parents=True, exist_ok=True)
            env = dict(spec.env)
            env["SESSION_DIR"] = SESSION_MOUNT
            labels = {SESSION_LABEL: sid, INSTANCE_LABEL: self.instance}
            # Only on the service: reconcile compares it with what Redis says now.
            service_labels = {**labels, SPEC_LABEL: self.fingerprint(spec)}
            kwargs: dict[str, Any] = {
                "name": container_name(sid),
                "labels": service_labels,
                "container_labels": labels,
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
                "user": self.user or folder_owner(spec.session_dir),
                "init": True,
                "stop_grace_period": int(self.stop_grace_s * 1e9),
                "log_driver": "json-file",
                "log_driver_options": {"max-size": "10m", "max-file": "3"},
            }
            try:
                service = await asyncio.to_thread(client.services.create, self.image, **kwargs)
            except DockerException as exc:
                raise SwarmRunnerError(
                    f"cannot create the service of {sid}: {engine_reason(exc)}"
                ) from exc
            self._watched[sid] = _Watch(service.id)
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

    async def stop(self, session_id: str) -> None:
        async with self._lock(session_id):
            await self._stop_locked(session_id)

    async def running(self) -> dict[str, WorkerHandle]:
        client = await self._engine.get()
        services = await asyncio.to_thread(
            client.api.services, filters={"label": f"{INSTANCE_LABEL}={self.instance}"}
        )
        if not services:
            return {}
        tasks = await self._latest_tasks([s["ID"] for s in services])
        nodes = await self._node_states()
        handles: dict[str, WorkerHandle] = {}
        for service in services:
            sid = (service["Spec"].get("Labels") or {}).get(SESSION_LABEL)
            task = tasks.get(service["ID"])
            if not sid or task is None or _state(task) not in ALIVE:
                continue
            if nodes.get(task.get("NodeID", "")) != "ready":
                continue  # on a lost node: not alive as far as we can tell
            spec_labels = service["Spec"].get("Labels") or {}
            handles[sid] = WorkerHandle(
                sid, service["ID"], fingerprint=spec_labels.get(SPEC_LABEL)
            )
        return handles

    async def nodes(self) -> list[NodeInfo]:
        """Every node of the swarm, with this instance's sessions whose newest task is alive
        on it (a node that is down still shows the sessions Swarm has not moved off yet)."""
        client = await self._engine.get()
        nodes = await asyncio.to_thread(client.api.nodes)
        services = await asyncio.to_thread(
            client.api.services, filters={"label": f"{INSTANCE_LABEL}={self.instance}"}
        )
        tasks = await self._latest_tasks([s["ID"] for s in services]) if services else {}
        placed: dict[str, list[str]] = {}
        for service in services:
            sid = (service["Spec"].get("Labels") or {}).get(SESSION_LABEL)
            task = tasks.get(service["ID"])
            if sid and task is not None and _state(task) in ALIVE and task.get("NodeID"):
                placed.setdefault(task["NodeID"], []).append(sid)
        names = _node_names(nodes)
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
        client = await self._engine.get()
        try:
            info = await asyncio.to_thread(client.api.inspect_service, handle.ref)
        except NotFound:
            return
        labels = info["Spec"].get("Labels") or {}
        if (
            labels.get(INSTANCE_LABEL) != self.instance
            or labels.get(SESSION_LABEL) != handle.session_id
        ):
            return
        self._watched[handle.session_id] = _Watch(info["ID"])
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
        if not container:
            return False
        client = await self._engine.get()
        try:
            await asyncio.to_thread(client.api.pause, container)
        except NotFound:
            return False
        except APIError as exc:
            if exc.status_code == 409:
                return False
            raise
        return True

    async def resume(self, session_id: str) -> None:
        watch = self._watched.get(session_id)
        if watch is not None and watch.scaled_down:
            async with self._lock(session_id):
                await self._scale_up(session_id, watch)
            return
        container = await self._local_container(session_id)
        if container is None:
            return
        client = await self._engine.get()
        try:
            await asyncio.to_thread(client.api.unpause, container)
        except NotFound:
            pass
        except APIError as exc:
            if exc.status_code != 409:
                raise

    async def close(self) -> None:
        self._watched.clear()
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        await self._tasks.cancel()
        await self._engine.close()

    # internals ------------------------------------------------------------------------------

    def _lock(self, session_id: str) -> asyncio.Lock:
        return self._locks.setdefault(session_id, asyncio.Lock())

    async def _stop_locked(self, session_id: str) -> None:
        # Forget it first: the end of a task we stop is not an exit to report.
        self._watched.pop(session_id, None)
        client = await self._engine.get()
        name = container_name(session_id)
        try:
            info = await asyncio.to_thread(client.api.inspect_service, name)
        except NotFound:
            return
        labels = info["Spec"].get("Labels") or {}
        if labels.get(INSTANCE_LABEL) != self.instance:
            raise SwarmRunnerError(
                f"service {name} belongs to another wafleet instance "
                f"({labels.get(INSTANCE_LABEL)!r}); not touching it"
            )
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
        filters = {"label": [f"{INSTANCE_LABEL}={self.instance}", f"{SESSION_LABEL}={session_id}"]}
        while time.monotonic() < deadline:
            found = await asyncio.to_thread(client.api.containers, filters=filters)
            if not found:
                return
            await asyncio.sleep(0.2)

    async def _latest_tasks(self, service_ids: list[str]) -> dict[str, dict[str, Any]]:
        """service id -> its newest task."""
        client = await self._engine.get()
        tasks = await asyncio.to_thread(client.api.tasks, filters={"service": service_ids})
        wanted = set(service_ids)
        latest: dict[str, dict[str, Any]] = {}
        for task in sorted(tasks, key=_age_key):
            if task.get("ServiceID") in wanted:  # not a prefix match of another service
                latest[task["ServiceID"]] = task
        return latest

    async def _node_states(self) -> dict[str, str]:
        client = await self._engine.get()
        nodes = await asyncio.to_thread(client.api.nodes)
        return {n["ID"]: n["Status"]["State"] for n in nodes}

    async def _own_node_id(self) -> str:
        if self._own_node is None:
            client = await self._engine.get()
            info = await asyncio.to_thread(client.info)
            self._own_node = str(info["Swarm"]["NodeID"])
        return self._own_node

    async def _running_task(self, watch: _Watch | None) -> dict[str, Any] | None:
        """The newest task of a watched service, if it is running."""
        if watch is None:
            return None
        task = (await self._latest_tasks([watch.service_id])).get(watch.service_id)
        return task if task is not None and _state(task) == "running" else None

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

    async def _scale_down(self, sid: str, watch: _Watch, task: dict[str, Any]) -> bool:
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
            if now is None or _state(now) in ENDED:
                log.info("worker %s stopped for a backup (scaled to 0)", sid)
                return True
            await asyncio.sleep(0.2)
        log.warning("worker %s did not stop for a backup in time; copying it live", sid)
        await self._scale_up(sid, watch)
        return False

    async def _scale_up(self, sid: str, watch: _Watch) -> None:
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
                and (_state(task) == "running" or _state(task) in ENDED)
            ):
                break
            await asyncio.sleep(0.2)
        else:
            log.warning("worker %s not running %.0fs after the backup", sid, RESCALE_WAIT_S)
        watch.created = time.monotonic()  # a task still pending now waits its own bound
        watch.scaled_down = False
        log.info("worker %s started again after the backup", sid)

    async def _task(self, task_id: str) -> dict[str, Any] | None:
        client = await self._engine.get()
        try:
            task: dict[str, Any] = await asyncio.to_thread(client.api.inspect_task, task_id)
        except NotFound:
            return None
        return task

    # the watcher ----------------------------------------------------------------------------

    def _ensure_watcher(self) -> None:
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.get_running_loop().create_task(
                self._watch_loop(), name=f"swarm-watch-{self.instance}"
            )

    async def _watch_loop(self) -> None:
        while True:
            try:
                await self._poll()
            except DockerException as exc:
                log.warning("cannot read the swarm's tasks: %s", engine_reason(exc))
            except Exception:
                log.exception("swarm watcher failed; retrying")
            await asyncio.sleep(self.poll_s)

    async def _poll(self) -> None:
        if not self._watched:
            return
        watched = dict(self._watched)
        tasks = await self._latest_tasks([w.service_id for w in watched.values()])
        nodes = await self._node_states()
        lost: dict[str, list[str]] = {}
        for sid, watch in watched.items():
            task = tasks.get(watch.service_id)
            if task is None or self._watched.get(sid) is not watch or watch.scaled_down:
                continue
            state = _state(task)
            node = task.get("NodeID") or None
            if node and nodes.get(node, "down") != "ready" and state not in WAITING:
                if not watch.moving or node != watch.node:
                    lost.setdefault(node, []).append(sid)
                continue
            if state == "running":
                watch.node = node
                watch.moving = False
            elif state in ENDED:
                code = task["Status"].get("ContainerStatus", {}).get("ExitCode")
                self._report(sid, watch, code if isinstance(code, int) else None, task)
            elif state in WAITING and not watch.moving:
                waited = time.monotonic() - watch.created
                if waited > self.unschedulable_after_s:
                    why = task["Status"].get("Err") or task["Status"].get("Message") or state
                    log.warning("worker %s cannot be placed after %.0fs: %s", sid, waited, why)
                    self._tasks.spawn(self._give_up(sid, watch), name=f"unplaceable-{sid}")
        for node, sids in lost.items():
            self._tasks.spawn(self._move_off(node, sids), name=f"node-lost-{node[:12]}")

    def _report(self, sid: str, watch: _Watch, code: int | None, task: dict[str, Any]) -> None:
        if self._watched.get(sid) is not watch:
            return
        del self._watched[sid]
        why = task["Status"].get("Err") or _state(task)
        log.warning(
            "worker %s (service %s) ended with %s (%s)", sid, watch.service_id[:12], code, why
        )
        for callback in self._callbacks:
            self._tasks.spawn(callback(sid, code), name=f"exit-{sid}")

    async def _give_up(self, sid: str, watch: _Watch) -> None:
        """A task no node has room for: remove it and say so (EXIT_UNSCHEDULABLE)."""
        async with self._lock(sid):
            if self._watched.get(sid) is not watch:
                return
            await self._stop_locked(sid)
        for callback in self._callbacks:
            self._tasks.spawn(callback(sid, EXIT_UNSCHEDULABLE), name=f"exit-{sid}")

    async def _move_off(self, node: str, sids: list[str]) -> None:
        """Reschedule the tasks of a lost node elsewhere, then send one grouped alert."""
        client = await self._engine.get()
        moving: dict[str, _Watch] = {}
        for sid in sids:
            watch = self._watched.get(sid)
            if watch is None or watch.moving:
                continue
            watch.moving = True
            watch.node = node
            try:
                service = await asyncio.to_thread(client.services.get, watch.service_id)
                await asyncio.to_thread(service.force_update)
            except DockerException as exc:
                log.warning("cannot move %s off node %s: %s", sid, node[:12], engine_reason(exc))
                continue
            moving[sid] = watch
        if not moving:
            return
        log.warning("node %s lost: moving %d session(s)", node[:12], len(moving))
        deadline = time.monotonic() + NODE_LOST_WAIT_S
        placed: dict[str, str] = {}
        while time.monotonic() < deadline and len(placed) < len(moving):
            await asyncio.sleep(self.poll_s)
            for sid, watch in moving.items():
                if not watch.moving and watch.node and watch.node != node:
                    placed[sid] = watch.node
        for sid in set(moving) - set(placed):
            # Not placed in time: from now on it is a task waiting for room like any other.
            moving[sid].moving = False
            moving[sid].created = time.monotonic()
        # Flat values, as every alert's facts: lists travel as comma-separated text.
        facts: dict[str, str | int | float] = {
            "node": node,
            "sessions": len(moving),
            "sessionIds": ",".join(sorted(moving)),
            "movedTo": ",".join(f"{n}:{k}" for n, k in sorted(Counter(placed.values()).items())),
            "notMoved": len(set(moving) - set(placed)),
        }
        log.warning("node %s lost: %s", node[:12], facts)
        if self.notifier is not None:
            await self.notifier.notify(
                Alert(AlertKind.NODE_LOST, facts=facts, done=Done.MOVED_TO_OTHER_NODES)
            )


def _node_names(nodes: list[dict[str, Any]]) -> dict[str, str]:
    """node id -> the name an operator reads: its ``wafleet`` label when set (unique), else
    hostname + short id (nodes on one machine, or cloned VMs, share a hostname)."""
    labels = [(n.get("Spec", {}).get("Labels") or {}).get("wafleet") for n in nodes]
    names = {}
    for node, label in zip(nodes, labels, strict=True):
        host = node.get("Description", {}).get("Hostname") or "node"
        unique = label and labels.count(label) == 1
        names[node["ID"]] = str(label) if unique else f"{label or host}-{node['ID'][:6]}"
    return names


def _age_key(task: dict[str, Any]) -> tuple[bool, str]:
    """Oldest first: the task Swarm wants running last, then by creation time."""
    created = str(task.get("CreatedAt", "")).rstrip("Z").ljust(30, "0")
    return (task.get("DesiredState") == "running", created)


def _state(task: dict[str, Any]) -> str:
    return str(task.get("Status", {}).get("State", ""))
