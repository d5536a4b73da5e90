"""Starting workers: one, one again after it was parked, or many at once.

Every room that brings a worker up (the operator's commands, failover, supervision,
reconcile, a restore) does it here, so a start always resets what the last worker left (QR,
pairing code, ping age) and always tells a running reconcile that it acted.
"""

from __future__ import annotations

from collections.abc import Collection

from core import bulk_start, session_files
from core.errors import NoCapacity
from core.models import Reason, SessionRecord, Status
from core.notifier import Alert, AlertKind, Done
from core.proxy_url import mask
from core.runner import WorkerSpec
from core.sessions.context import Context, at_rest, log, session_log
from core.signing import session_secret


class Workers:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.starting: bulk_start.BulkStart | None = None  # a bulk start running now

    async def start(
        self, session_id: str, proxy: str, phone: str | None, reason: str | None = None
    ) -> None:
        """Start (or replace) the session's worker; the caller holds the session's lock."""
        ctx = self.ctx
        ctx.acted(session_id)
        now = ctx.clock.now_ms()
        # A fresh start earns a full ping timeout before the watchdog looks at it again.
        await ctx.store.set_fields(
            session_id,
            status=Status.PENDING,
            reason=reason or Reason.STARTING,
            lastPing=now,
            qr=None,
            qrExpires=None,
            pairingCode=None,
        )
        handle = await ctx.runner.start(self.spec(session_id, proxy, phone))
        session_log(session_id).info(
            "worker started (%s) on %s", reason or "starting", mask(proxy)
        )
        await ctx.store.set_fields(session_id, lock=handle.ref)

    async def restart_locked(self, record: SessionRecord, reason: str | None) -> None:
        """Start the worker again; a session parked without a slot first claims one."""
        ctx = self.ctx
        proxy = record.proxy
        if record.status == Status.FAILED and record.reason == Reason.NO_CAPACITY:
            claimed = await ctx.store.claim(record.id, ctx.settings.max_sessions_per_proxy)
            if claimed is None:
                raise NoCapacity("no proxy has a free slot for this session yet")
            if claimed != proxy:
                await session_files.write_record_meta(
                    ctx.settings.sessions_dir, record, proxy=claimed
                )
            proxy = claimed
        await self.start(record.id, proxy, record.phone, reason)

    def spec(self, session_id: str, proxy: str, phone: str | None) -> WorkerSpec:
        s = self.ctx.settings
        path = session_files.folder(s.sessions_dir, session_id)
        env = {
            "SESSION_ID": session_id,
            "PROXY_URL": proxy,
            "WEBHOOK_URL": s.webhook_url,
            "WEBHOOK_SECRET": session_secret(s.webhook_secret, session_id),
            "SESSION_DIR": str(path),
            "WA_DRIVER": s.wa_driver,
            "SIMWA_URL": s.simwa_url,
            "SESSION_PHONE": phone or "",
            "WORKER_PRESENCE_INTERVAL_MS": str(s.worker_presence_interval_ms),
            "WORKER_SELF_MESSAGE_INTERVAL_MS": str(s.worker_self_message_interval_ms),
            "WORKER_ATTEMPTS_PER_PROCESS": str(s.worker_attempts_per_process),
            "WORKER_OUTBOX_MAX_BYTES": str(s.worker_outbox_max_bytes),
            "LOG_LEVEL": s.log_level,
            "LOG_FORMAT": s.log_format,
        }
        return WorkerSpec(session_id=session_id, session_dir=path, env=env)

    async def start_many(
        self,
        records: list[SessionRecord],
        reason: str | None = None,
        announce: bool = True,
        skip: Collection[str] = (),
    ) -> list[str]:
        """Start the workers of ``records`` (a reconcile's missing ones, a restore's), at most
        ``WORKER_START_CONCURRENCY`` at once, connected sessions first; the ids started.
        ``reason`` None keeps each record's own reason. The chat hears of it when it ends,
        only when it was more than one round of starts (a worker or two missing after a
        restart of ``serve`` is no news), and not when ``announce`` is False: a restore
        sends its own report.

        Each start re-reads its session under the session's lock: one deleted or parked
        while it waited in the queue is skipped, not brought back, and so is one in ``skip``
        (a reconcile's: sessions whose worker a request or an event started meanwhile).
        """
        ctx = self.ctx
        started: list[str] = []
        if not records:
            return started

        async def start_one(listed: SessionRecord) -> None:
            async with ctx.locks.session(listed.id):
                record = await ctx.store.get_session(listed.id)
                if record is None or record.id in skip or at_rest(record):
                    return
                await self.start(record.id, record.proxy, record.phone, reason or record.reason)
                started.append(record.id)

        progress = bulk_start.BulkStart(total=len(records))
        self.starting = progress
        log.info(
            "starting %d worker(s), %d at a time, connected ones first",
            len(records),
            ctx.settings.worker_start_concurrency,
        )
        try:
            await bulk_start.run(
                records, start_one, ctx.settings.worker_start_concurrency, progress
            )
        finally:
            self.starting = None
        log.info(
            "bulk start done: %d of %d started, %d failed",
            progress.started,
            progress.total,
            progress.failed,
        )
        if not announce or progress.total <= ctx.settings.worker_start_concurrency:
            return started
        await ctx.notifier.notify(
            Alert(
                AlertKind.BULK_START_DONE,
                facts={
                    "total": progress.total,
                    "started": progress.started,
                    "failed": progress.failed,
                },
                done=Done.NOTHING,
            )
        )
        return started
