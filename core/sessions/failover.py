"""Failover: a proxy that fails our own probe loses every session on it to a proxy
with a free slot, or parks them (``no_capacity``) until a slot frees; a proxy that recovers
or joins the pool gives those parked sessions their slot back.
"""

from __future__ import annotations

from core import session_files
from core.errors import NoCapacity
from core.models import ProxyStatus, Reason, SessionRecord, Status
from core.notifier import Alert, AlertKind, Done, Move
from core.proxy_url import mask
from core.sessions.context import Context, log, session_log
from core.sessions.workers import Workers


class Failover:
    def __init__(self, ctx: Context, workers: Workers) -> None:
        self.ctx = ctx
        self.workers = workers

    async def handle_proxy_failure(self, url: str, error: str, reporter: str) -> list[Move]:
        """Confirm a reported proxy failure with our own probe, then move every session off it.

        One worker's word is not enough to break four phones' sticky IP: the orchestrator
        probes the proxy itself. All the reports of one dead proxy are folded into one
        failover and one alert.
        """
        ctx = self.ctx
        if ctx.paused_for_maintenance(f"failover off {mask(url)}"):
            return []
        async with ctx.locks.proxy(url):
            if await ctx.store.proxy_status(url) != ProxyStatus.BAD:
                problem = await ctx.pool.probe(url)
                if problem is None:
                    log.warning(
                        "%s reported %s failing (%s) but it answers our probe; the worker "
                        "keeps retrying",
                        reporter,
                        mask(url),
                        error,
                    )
                    return []
                await ctx.pool.mark_bad(url, problem)
            moves = [await self._failover(sid) for sid in await ctx.store.sessions_on(url)]
        done = [m for m in moves if m is not None]
        if done:
            await ctx.notifier.notify(
                Alert(
                    AlertKind.PROXY_BAD,
                    proxy=mask(url),
                    facts={"error": error or "proxy failed"},
                    done=Done.MOVED_SESSIONS,
                    moves=tuple(done),
                )
            )
            impossible = [m for m in done if m.new_proxy is None]
            if impossible:
                await ctx.notifier.notify(
                    Alert(
                        AlertKind.FAILOVER_IMPOSSIBLE,
                        proxy=mask(url),
                        facts={"sessions": len(impossible)},
                        done=Done.STOPPED_UNTIL_SLOT,
                        moves=tuple(impossible),
                    )
                )
        return done

    async def _failover(self, session_id: str) -> Move | None:
        ctx = self.ctx
        async with ctx.locks.session(session_id):
            record = await ctx.store.get_session(session_id)
            if record is None or record.status == Status.STOPPED:
                # A stopped session keeps its proxy; started again on a dead one, its worker
                # reports the proxy error and moves then.
                return None
            new = await ctx.store.failover(session_id, ctx.settings.max_sessions_per_proxy)
            if new is None:
                ctx.metrics.failovers_impossible.inc()
                await ctx.runner.stop(session_id)
                await ctx.store.set_fields(
                    session_id, status=Status.FAILED, reason=Reason.NO_CAPACITY
                )
                return Move(session_id, record.phone, record.proxy_masked, None)
            ctx.metrics.failovers.inc()
            session_log(session_id).warning(
                "failing over %s -> %s", record.proxy_masked, mask(new)
            )
            await session_files.write_record_meta(ctx.settings.sessions_dir, record, proxy=new)
            await ctx.store.add_event(
                session_id,
                "FAILOVER",
                {"from": record.proxy_masked, "to": mask(new)},
                ctx.clock.now_ms(),
            )
            await self.workers.start(session_id, new, record.phone, Reason.PROXY_ERROR)
            return Move(session_id, record.phone, record.proxy_masked, mask(new))

    async def retry_parked(self) -> None:
        """A proxy recovered or was added: give sessions parked for lack of capacity a slot."""
        ctx = self.ctx
        if ctx.paused_for_maintenance("retrying parked sessions"):
            return
        for listed in await ctx.store.list_sessions():
            if not _parked_for_capacity(listed):
                continue
            async with ctx.locks.session(listed.id):
                record = await ctx.store.get_session(listed.id)
                if record is None or not _parked_for_capacity(record):
                    continue  # another pass got there first
                try:
                    await self.workers.restart_locked(record, Reason.STARTING)
                except NoCapacity:
                    return  # still no room: the next recovery tries again
                except Exception:
                    session_log(record.id).exception("could not restart the parked session")


def _parked_for_capacity(record: SessionRecord) -> bool:
    return record.status == Status.FAILED and record.reason == Reason.NO_CAPACITY
