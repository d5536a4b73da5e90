"""Backups and restore: zip every session's auth, keep the last few, and
rebuild the whole fleet from one archive, or refuse a bad archive with nothing changed.

``BackupService`` is the one entry point: it lists the archives and lets one backup or
restore run at a time; making one is ``make.Making``'s, restoring one ``restore.Restoring``'s.

The service's three calls (``create``, ``list``, ``restore``) take an optional progress
callback, so the REST API, the CLI and the Telegram bot all drive it the same way.
"""

from __future__ import annotations

import asyncio
import logging

from core.backups import archive
from core.backups.archive import BACKUP_ID
from core.backups.base import Progress, why
from core.backups.errors import BackupBusy, BackupNotFound
from core.backups.make import Making
from core.backups.records import BackupInfo, BackupResult, RestoreReport
from core.backups.restore import Restoring
from core.clock import Clock
from core.notifier import Alert, AlertKind, Done, Notifier
from core.runner import Runner
from core.sessions import SessionService
from core.settings import Settings
from core.store import Store

__all__ = ["RESTORE_WAIT_S", "BackupService", "Progress"]

log = logging.getLogger("wafleet.backups")

RESTORE_WAIT_S = 30.0


class BackupService(Making, Restoring):
    def __init__(
        self,
        settings: Settings,
        store: Store,
        service: SessionService,
        runner: Runner,
        notifier: Notifier,
        clock: Clock,
    ) -> None:
        self.settings = settings
        self.store = store
        self.service = service
        self.runner = runner
        self.notifier = notifier
        self.clock = clock
        self.on_step = None
        # One backup or restore at a time, whoever asks (scheduler, REST, CLI, bot).
        self._lock = asyncio.Lock()

    @property
    def busy(self) -> bool:
        return self._lock.locked()

    # list ---------------------------------------------------------------------------------

    async def list(self) -> list[BackupInfo]:
        """Every archive in ``BACKUPS_DIR``, newest first."""
        return await asyncio.to_thread(
            archive.list_backups, self.settings.backups_dir, self.limits.max_manifest_bytes
        )

    async def get(self, backup_id: str) -> BackupInfo:
        if not BACKUP_ID.fullmatch(backup_id):
            raise BackupNotFound(
                f"no backup {backup_id!r}: backup ids look like backup_YYYY-MM-DD"
            )
        for info in await self.list():
            if info.id == backup_id:
                return info
        raise BackupNotFound(f"no backup {backup_id!r} in the backups folder")

    # create -------------------------------------------------------------------------------

    async def create(
        self, progress: Progress | None = None, *, wait: bool = False
    ) -> BackupResult:
        """Write a new archive and apply retention. ``wait``: queue behind a running one
        (the scheduler) instead of refusing (an operator, who can simply ask again)."""
        if self._lock.locked() and not wait:
            raise BackupBusy("a backup or restore is already running: try again when it ends")
        async with self._lock:
            return await self._create(progress or _quiet)

    async def run_scheduled(self) -> None:
        """The cron job: back up, then tell the operator how it went, either way."""
        try:
            result = await self.create(wait=True)
        except Exception as exc:
            log.exception("scheduled backup failed")
            await self.notifier.notify(
                Alert(
                    AlertKind.BACKUP_FAILED,
                    facts={"code": getattr(exc, "code", "internal"), "error": why(exc)},
                    done=Done.KEPT_PREVIOUS_BACKUPS,
                )
            )
            return
        await self.notifier.notify(
            Alert(
                AlertKind.BACKUP_DONE,
                facts={
                    "archive": result.info.path.name,
                    "size_bytes": result.info.size,
                    "sessions": result.info.sessions or 0,
                    "mode": str(result.mode),
                    "max_pause_ms": round(result.max_pause_ms),
                    "took_ms": result.duration_ms,
                    "kept": self.settings.max_backups,
                },
                done=Done.KEPT_NEWEST_BACKUPS,
            )
        )

    # restore ------------------------------------------------------------------------------

    async def restore(
        self,
        backup_id: str,
        progress: Progress | None = None,
        *,
        wait_s: float = RESTORE_WAIT_S,
    ) -> RestoreReport:
        """Replace the fleet with the archive's. Raises a ``BadArchive`` (nothing changed)
        when the archive cannot be restored safely, ``RestoreFailed`` when it failed after
        the swap (the previous fleet is back)."""
        say = progress or _quiet
        info = await self.get(backup_id)
        if self._lock.locked():
            raise BackupBusy("a backup or restore is already running: try again when it ends")
        async with self._lock:
            return await self._restore(info, say, wait_s)


async def _quiet(_: str) -> None:
    return None
