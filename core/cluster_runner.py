"""The runner as the session service sees it when several ``serve`` replicas share a fleet.

Any replica may start or stop a session's worker (an operator's restart reaches whichever
replica the load balancer picked), but only the leader watches exits and acts on them:
two replicas both restarting a crashed worker would be two workers and two alerts. So:

* exit notices reach the session service only on the leader (followers drop theirs);
* a worker started (or stopped) by a follower is announced on the cluster bus, and the
  leader adopts it (watches its exit) and, if it is reconciling, leaves that session alone;
  a new leader adopts every running worker in its start-up reconcile;
* a follower that stops or replaces a worker on purpose marks it in Redis first
  (``keys.worker_replacing``), and the leader, which sees that worker exit, does not take
  the exit for a crash (the leader's own runner knows what it stops itself);
* leader-only work (the watchdog, a failover, the reconcile) checks that its lease still
  holds right before it starts or stops anything (``Leadership.fence``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from core import keys
from core.cluster_bus import ClusterBus
from core.leadership import Leadership, acting_as_leader, acting_value
from core.runner import ExitCallback, NodeInfo, Runner, WorkerExit, WorkerHandle, WorkerSpec
from core.tasks import TaskGroup

log = logging.getLogger("wafleet.runner.cluster")

# How long the "replacing" mark outlives the start or stop it guards: the leader may hear of
# the old worker's exit a little after the new one started.
REPLACING_LINGER_MS = 2_000


class ClusterRunner:
    """Wraps the real runner (``Runner`` protocol); see the module's docstring."""

    def __init__(
        self, inner: Runner, leadership: Leadership, bus: ClusterBus, stop_grace_s: float
    ) -> None:
        self.inner = inner
        self.leadership = leadership
        self.bus = bus
        self.name = inner.name
        self._mark_ms = int((stop_grace_s + 15) * 1000)
        self._callbacks: list[ExitCallback] = []
        self._tasks = TaskGroup()
        # Set by serve: told of each worker a follower started or stopped (a reconcile
        # running on the leader leaves those sessions alone: its picture of them is older).
        self.on_foreign_action: Callable[[str], None] | None = None
        inner.on_exit(self._exited)
        bus.on("adopt", self._adopt_notice)

    def on_exit(self, callback: ExitCallback) -> None:
        self._callbacks.append(callback)

    async def start(self, spec: WorkerSpec) -> WorkerHandle:
        await self._before_acting()
        marked = await self._mark(spec.session_id)
        await self._know_current(spec.session_id)
        try:
            handle = await self.inner.start(spec)
        finally:
            if marked:
                await self._unmark(spec.session_id)
        if not self.leadership.is_leader():
            self.bus.post("adopt", sessionId=handle.session_id, ref=handle.ref)
        return handle

    async def stop(self, session_id: str) -> None:
        await self._before_acting()
        marked = await self._mark(session_id)
        await self._know_current(session_id)
        try:
            await self.inner.stop(session_id)
        finally:
            if marked:
                await self._unmark(session_id)
        if not self.leadership.is_leader():
            self.bus.post("adopt", sessionId=session_id, ref="")

    async def running(self) -> dict[str, WorkerHandle]:
        return await self.inner.running()

    async def adopt(self, handle: WorkerHandle) -> None:
        await self.inner.adopt(handle)

    def fingerprint(self, spec: WorkerSpec) -> str:
        return self.inner.fingerprint(spec)

    async def pause(self, session_id: str) -> bool:
        await self._before_acting()
        return await self.inner.pause(session_id)

    async def resume(self, session_id: str) -> None:
        await self.inner.resume(session_id)

    async def nodes(self) -> list[NodeInfo]:
        return await self.inner.nodes()

    async def close(self) -> None:
        await self._tasks.cancel()
        await self.inner.close()

    # internals ---------------------------------------------------------------------------

    async def _before_acting(self) -> None:
        """Leader work (and only it) must still hold its lease: checked locally, then
        against Redis's current token. An operator's action on a follower needs neither."""
        if acting_value() is not None:
            await self.leadership.fence()

    async def _know_current(self, session_id: str) -> None:
        """A process worker running now may have been started by another replica, which
        this one's runner never saw: learn it from the session's ``lock`` (its handle), so the
        stop that comes first stops it and there are never two workers for one session."""
        if self.inner.name != "process":
            return  # containers and services are found by their name, whoever started them
        ref = await self.bus.redis.get(keys.session(session_id, "lock"))
        if ref:
            await self.inner.adopt(WorkerHandle(session_id, str(ref)))

    async def _mark(self, session_id: str) -> bool:
        """Only a follower marks: the leader's own runner knows what it stops itself."""
        if self.leadership.is_leader():
            return False
        await self.bus.redis.set(
            keys.worker_replacing(session_id), self.leadership.serve_id, px=self._mark_ms
        )
        return True

    async def _unmark(self, session_id: str) -> None:
        try:
            await self.bus.redis.pexpire(keys.worker_replacing(session_id), REPLACING_LINGER_MS)
        except Exception:  # it expires by itself
            log.warning("could not clear the replacing mark of %s", session_id)

    async def _exited(self, session_id: str, ended: WorkerExit) -> None:
        if not self.leadership.is_leader():
            return  # the leader watches this worker too, and decides
        if await self.bus.redis.exists(keys.worker_replacing(session_id)):
            log.info("worker %s exited while being stopped or replaced on purpose", session_id)
            return
        value = self.leadership.value
        if value is None:
            return
        with acting_as_leader(value):
            for callback in self._callbacks:
                await callback(session_id, ended)

    async def _adopt_notice(self, notice: dict[str, object]) -> None:
        """A follower started (``ref``) or stopped (no ``ref``) a session's worker."""
        if not self.leadership.is_leader():
            return
        sid, ref = notice.get("sessionId"), notice.get("ref")
        if not isinstance(sid, str):
            return
        if self.on_foreign_action is not None:
            self.on_foreign_action(sid)
        if isinstance(ref, str) and ref:
            await self.inner.adopt(WorkerHandle(sid, ref))
