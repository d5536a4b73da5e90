"""Reconcile, at start-up: make what runs match Redis.

Adopt the living, start the missing, stop orphans, recount. ``serve`` answers requests
while it runs, so each decision is taken under the session's lock on a fresh read, and a
session that anything else acted on since the reconcile began is left alone.
"""

from __future__ import annotations

from core import session_files
from core.models import SessionRecord, Status
from core.sessions.context import Context, at_rest, log, session_log
from core.sessions.workers import Workers


class Reconcile:
    def __init__(self, ctx: Context, workers: Workers) -> None:
        self.ctx = ctx
        self.workers = workers

    async def reconcile(self) -> dict[str, list[str]]:
        """Make what runs match Redis: adopt the living, start the missing, stop orphans.

        A living worker is adopted only if it was started with what Redis says now (its
        spec's fingerprint): one left from a failover that ``serve`` died in the middle of
        still has the dead proxy in its environment, pings happily, and would never be
        replaced. A worker frozen by a rolling backup is resumed: that backup died with the
        ``serve`` that paused it.

        ``serve`` answers requests while this runs (so REST can show the bulk start's
        progress). Each decision is taken under the session's lock on a fresh read, and a
        session that anything else started, provisioned or deleted since the reconcile began
        is left alone: that action saw newer state than the reconcile's snapshots.
        """
        acted_on: set[str] = set()
        self.ctx.acted_on = acted_on  # before the snapshots, so nothing slips between
        try:
            return await self._reconcile(acted_on)
        finally:
            self.ctx.acted_on = None

    async def _reconcile(self, acted_on: set[str]) -> dict[str, list[str]]:
        ctx = self.ctx
        running = await ctx.runner.running()
        report: dict[str, list[str]] = {
            "adopted": [],
            "started": [],
            "removed": [],
            "replaced": [],
        }
        known = set()
        missing: list[SessionRecord] = []
        for listed in await ctx.store.list_sessions():
            known.add(listed.id)
            handle = running.get(listed.id)
            slog = session_log(listed.id)
            async with ctx.locks.session(listed.id):
                record = await ctx.store.get_session(listed.id)
                if record is None or record.id in acted_on:
                    continue  # deleted, or started by a request or an event meanwhile
                parked = at_rest(record)  # parked, or stopped by the operator
                if handle is None:
                    if not parked:
                        missing.append(record)
                    continue
                if record.status == Status.STOPPED:
                    # A stop that serve died in the middle of: finish it.
                    await ctx.runner.stop(record.id)
                    report["removed"].append(record.id)
                    continue
                wanted = ctx.runner.fingerprint(
                    self.workers.spec(record.id, record.proxy, record.phone)
                )
                if handle.fingerprint != wanted and not parked:
                    slog.warning(
                        "its running worker was started with other settings (proxy, image or "
                        "worker settings); replacing it"
                    )
                    # The cut-short change may not have reached session.json either.
                    await session_files.write_record_meta(ctx.settings.sessions_dir, record)
                    await self.workers.start(record.id, record.proxy, record.phone, record.reason)
                    report["replaced"].append(record.id)
                    continue
                await ctx.runner.adopt(handle)
                if handle.paused:
                    slog.warning("its worker was left paused (a backup cut short); resuming it")
                    await ctx.runner.resume(record.id)
                await ctx.store.set_fields(record.id, lock=handle.ref)
                report["adopted"].append(record.id)
        report["started"] = await self.workers.start_many(missing, skip=acted_on)
        for orphan in sorted(set(running) - known):
            async with ctx.locks.session(orphan):
                # Provisioned after the listing, its worker started before the runner's list.
                if orphan in acted_on or await ctx.store.get_session(orphan) is not None:
                    continue
                await ctx.runner.stop(orphan)
            report["removed"].append(orphan)
        fixed = await ctx.store.recount()
        log.info(
            "reconciled: %d adopted, %d started, %d orphan(s) removed, %d counter(s) fixed, "
            "%d replaced (started with other settings)",
            len(report["adopted"]),
            len(report["started"]),
            len(report["removed"]),
            fixed,
            len(report["replaced"]),
        )
        return report
