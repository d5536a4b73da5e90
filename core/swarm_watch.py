"""The Swarm runner's watcher: how it reads the swarm, and what it does about what it sees.

``RUNNER=swarm`` has no event stream to follow (the events of a task on another node stay on
that node's engine), so one watcher polls the tasks of the watched services (and the nodes)
every ``poll_s``:

- a task that ended (exited, failed, rejected) is reported through the exit callback like the
  docker runner's ``die`` events, so the orchestrator restarts it;
- a task left running on a node that went down is rescheduled here (a forced update of its
  service, so Swarm places a new task on a node that is up) and *not* reported as a crash:
  the lost node is one event, reported as one grouped ``NODE_LOST`` alert (node, sessions,
  where they went) once the moved tasks run again;
- a task Swarm cannot place (no node has room) is removed after ``unschedulable_after_s`` and
  reported as ``UNPLACEABLE``, so the session says why instead of pending forever.

The service life cycle (start, stop, pause for a backup) is ``core/swarm_runner.py``'s; this
module is the part of that runner that watches, kept apart so each reads as one job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from docker.errors import DockerException, NotFound

from core.docker_engine import SESSION_LABEL, engine_reason
from core.engine_runner import EngineRunner
from core.notifier import Alert, AlertKind, Done, Notifier
from core.runner import ExitKind, WorkerExit

log = logging.getLogger("wafleet.runner.swarm")

# Task states (Docker's ``TaskState``) by what they mean for the worker.
ENDED = frozenset({"complete", "failed", "shutdown", "rejected", "orphaned", "remove"})
WAITING = frozenset({"new", "pending"})  # not placed on a node yet
ALIVE = frozenset({"assigned", "accepted", "preparing", "ready", "starting", "running"})
NODE_LOST_WAIT_S = 60.0  # how long the grouped alert waits for the moved tasks to run


@dataclass
class Watch:
    """A service whose task we follow."""

    service_id: str
    created: float = field(default_factory=time.monotonic)
    node: str | None = None  # where its task last ran
    moving: bool = False  # rescheduled off a lost node; its new task has not run yet
    scaled_down: bool = False  # scaled to 0 by ``pause`` (a backup), not an exit to report


class SwarmWatching(EngineRunner[Watch]):
    """Reading the swarm's tasks and nodes, and the watcher; ``SwarmRunner`` sets these."""

    notifier: Notifier | None  # receives the node-loss alert
    claim: Callable[[str], Awaitable[bool]] | None  # several replicas: who moves a lost node
    poll_s: float
    unschedulable_after_s: float
    _watcher: asyncio.Task[None] | None

    # reading the swarm ----------------------------------------------------------------------

    async def _services(self) -> list[dict[str, Any]]:
        """This fleet's services (``SwarmRunner``'s)."""
        raise NotImplementedError

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

    async def _stop_watching(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None

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
            state = task_state(task)
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

    def _report(self, sid: str, watch: Watch, code: int | None, task: dict[str, Any]) -> None:
        if self._watched.get(sid) is not watch:
            return
        del self._watched[sid]
        why = task["Status"].get("Err") or task_state(task)
        log.warning(
            "worker %s (service %s) ended with %s (%s)", sid, watch.service_id[:12], code, why
        )
        self._notify(sid, WorkerExit.of_code(code))

    async def _give_up(self, sid: str, watch: Watch) -> None:
        """A task no node has room for: remove it and say so (UNPLACEABLE)."""
        async with self._lock(sid):
            if self._watched.get(sid) is not watch:
                return
            await self._stop_locked(sid)
        self._notify(sid, WorkerExit(ExitKind.UNPLACEABLE))

    async def _move_off(self, node: str, sids: list[str]) -> None:
        """Reschedule the tasks of a lost node elsewhere, then send one grouped alert.

        Every serve replica's watcher may see the loss, each of the services it watches: the
        one that claims the node (``claim``) moves *every* session of this fleet on it, not
        only those it watches, so the alert counts them all and no service is moved twice."""
        for sid in sids:  # not seen as lost again while it moves, by whichever replica
            watch = self._watched.get(sid)
            if watch is not None and not watch.moving:
                watch.moving, watch.node = True, node
        if self.claim is not None and not await self.claim(f"node_lost:{node}"):
            log.info("node %s lost: another serve replica moves its sessions", node[:12])
            return
        on_node = await self._services_on(node)
        on_node.update(
            {sid: self._watched[sid].service_id for sid in sids if sid in self._watched}
        )
        client = await self._engine.get()
        moving: dict[str, str] = {}
        for sid, service_id in sorted(on_node.items()):
            try:
                service = await asyncio.to_thread(client.services.get, service_id)
                await asyncio.to_thread(service.force_update)
            except DockerException as exc:
                log.warning("cannot move %s off node %s: %s", sid, node[:12], engine_reason(exc))
                continue
            moving[sid] = service_id
        if not moving:
            return
        log.warning("node %s lost: moving %d session(s)", node[:12], len(moving))
        deadline = time.monotonic() + NODE_LOST_WAIT_S
        placed: dict[str, str] = {}
        while time.monotonic() < deadline and len(placed) < len(moving):
            await asyncio.sleep(self.poll_s)
            tasks = await self._latest_tasks(list(moving.values()))
            for sid, service_id in moving.items():
                task = tasks.get(service_id)
                where = task.get("NodeID") if task is not None else None
                if task is not None and task_state(task) == "running" and where != node:
                    placed[sid] = str(where)
        for sid in set(moving) - set(placed):
            # Not placed in time: from now on it is a task waiting for room like any other.
            if (watch := self._watched.get(sid)) is not None:
                watch.moving = False
                watch.created = time.monotonic()
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

    async def _services_on(self, node: str) -> dict[str, str]:
        """Session id -> service id of this fleet's services whose newest task is on ``node``."""
        services = await self._services()
        tasks = await self._latest_tasks([s["ID"] for s in services]) if services else {}
        found: dict[str, str] = {}
        for service in services:
            sid = self._labels(service).get(SESSION_LABEL)
            task = tasks.get(service["ID"])
            if sid and task is not None and task.get("NodeID") == node:
                found[sid] = service["ID"]
        return found


def node_names(nodes: list[dict[str, Any]]) -> dict[str, str]:
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


def task_state(task: dict[str, Any]) -> str:
    return str(task.get("Status", {}).get("State", ""))
