"""Supervision: what happens when a worker stops answering on its own.

An exit the runner reports (a crash: restart at once, unless it keeps dying) and
the watchdog's pass over the pings (a worker silent for longer than the ping timeout is
restarted). Each decision re-reads the session under its lock before it acts.
"""

from __future__ import annotations

from core.models import Reason, SessionRecord, Status
from core.notifier import Alert, AlertKind, Done
from core.runner import ExitKind, WorkerExit
from core.sessions.context import CRASH_LIMIT, CRASH_WINDOW_S, Context, at_rest, session_log
from core.sessions.workers import Workers
from core.store import Liveness


class Supervision:
    def __init__(self, ctx: Context, workers: Workers) -> None:
        self.ctx = ctx
        self.workers = workers

    async def handle_worker_exit(self, session_id: str, ended: WorkerExit) -> None:
        """A worker died on its own: restart it at once, unless it keeps dying."""
        ctx = self.ctx
        if ctx.paused_for_maintenance(f"restarting {session_id}"):
            return
        async with ctx.locks.session(session_id):
            await self._handle_worker_exit_locked(session_id, ended)

    async def _handle_worker_exit_locked(self, session_id: str, ended: WorkerExit) -> None:
        ctx = self.ctx
        record = await ctx.store.get_session(session_id)
        if record is None or at_rest(record):
            return  # deleted, or stopped on purpose meanwhile
        code = ended.code
        if ended.kind is ExitKind.RECYCLED:
            session_log(session_id).info("recycled its worker process; starting a fresh one")
            await self.workers.start(record.id, record.proxy, record.phone, record.reason)
            return
        if ended.kind is ExitKind.UNPLACEABLE:
            # Restarting would only wait again: parked until the operator makes room.
            await ctx.store.set_fields(
                session_id, status=Status.FAILED, reason=Reason.UNSCHEDULABLE
            )
            await ctx.notifier.notify(
                Alert(
                    AlertKind.UNSCHEDULABLE,
                    session_id,
                    record.phone,
                    done=Done.STOPPED_WAITING,
                )
            )
            return
        ctx.metrics.worker_crashes.inc()
        crashes = await ctx.crashes.add(session_id, ctx.clock.now_ms())
        slog = session_log(session_id)
        if crashes > CRASH_LIMIT:
            slog.error("parked as a crash loop: %d exits in %d s", crashes, CRASH_WINDOW_S)
            await ctx.store.set_fields(session_id, status=Status.FAILED, reason=Reason.CRASH_LOOP)
            await ctx.notifier.notify(
                Alert(
                    AlertKind.CRASH_LOOP,
                    session_id,
                    record.phone,
                    facts={"exits": crashes, "minutes": CRASH_WINDOW_S // 60},
                    done=Done.STOPPED_RESTARTING,
                )
            )
            return
        slog.warning("the worker exited (code %s); restarting it", code)
        await self.workers.start(record.id, record.proxy, record.phone, Reason.CRASHED)
        await ctx.notifier.notify(
            Alert(
                AlertKind.WORKER_CRASHED,
                session_id,
                record.phone,
                facts={} if code is None else {"exit_code": code},
                done=Done.RESTARTED_WORKER,
            )
        )

    async def check_pings(self) -> list[str]:
        """One watchdog pass: restart every running session whose last ping is too old."""
        ctx = self.ctx
        if ctx.paused_for_maintenance("the watchdog pass"):
            return []
        now = ctx.clock.now_ms()
        restarted = []
        # Only the sessions that have not pinged within the timeout: the rest cannot be stale.
        for listed in await ctx.store.liveness(now - ctx.settings.ping_timeout_ms):
            if not self._stale(listed, now):
                continue
            async with ctx.locks.session(listed.id):
                record = await ctx.store.get_session(listed.id)
                if record is None or not self._stale(record, now):
                    continue  # restarted, pinged, parked or deleted meanwhile
                try:
                    await self.workers.start(
                        record.id, record.proxy, record.phone, Reason.WATCHDOG
                    )
                except Exception:
                    session_log(record.id).exception("the watchdog could not restart it")
                    continue
            age = now - (record.last_ping or record.created)
            session_log(record.id).warning("no ping for %d ms: restarted its worker", age)
            restarted.append(record.id)
            ctx.metrics.watchdog_restarts.inc()
            await ctx.notifier.notify(
                Alert(
                    AlertKind.WATCHDOG_RESTART,
                    record.id,
                    record.phone,
                    facts={"seconds": age // 1000},
                    done=Done.RESTARTED_WORKER,
                )
            )
        return restarted

    def _stale(self, record: SessionRecord | Liveness, now: int) -> bool:
        if at_rest(record):
            return False
        return now - (record.last_ping or record.created) > self.ctx.settings.ping_timeout_ms
