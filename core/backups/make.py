"""Making a backup: copy every session's folder, write the archive, keep the last few.

Consistency without a fleet-wide outage: in the default ``rolling`` mode each worker is
frozen (SIGSTOP / ``docker pause``, its connection stays open) only while its own folder is
copied, so no session is down for more than that copy. ``stop-all`` is the simple
way: stop every worker, copy, start them again.

Beside the fleet the archive carries the audit trail within its retention and the issued
keys' records (``trail.py``), so a restore on a fresh install gives them back too.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from core.api_keys import ApiKeys
from core.audit import Audit
from core.backups import archive, on_disk, trail
from core.backups.base import BackupParts, Progress
from core.backups.records import BackupResult
from core.models import Reason
from core.owners import Owners

log = logging.getLogger("wafleet.backups")


class Making(BackupParts):
    """``BackupService``'s half that writes an archive."""

    async def _create(self, progress: Progress) -> BackupResult:
        started = now = self.clock.now_ms()
        backups_dir = self.settings.backups_dir
        manifest = await self._manifest(now)
        entries = await Audit(
            self.store.redis, self.clock, self.settings.audit_retention_days
        ).export()
        folders = await asyncio.to_thread(on_disk.session_folders, self.settings.sessions_dir)
        try:
            await asyncio.to_thread(backups_dir.mkdir, parents=True, exist_ok=True, mode=0o700)
            staging = Path(
                await asyncio.to_thread(tempfile.mkdtemp, prefix=".staging-", dir=backups_dir)
            )
        except OSError as exc:
            if archive.no_space(exc):
                raise archive.disk_full("the backup's staging folder") from exc
            raise
        try:
            await progress(
                f"copying {len(folders)} session folder(s) ({self.settings.backup_mode})"
            )
            if self.settings.backup_mode == "stop-all":
                pauses = await self._copy_stop_all(folders, staging)
            else:
                pauses = await self._copy_rolling(folders, staging)
            manifest["maxPauseMs"] = round(max(pauses.values(), default=0.0), 1)
            await progress("writing the archive")
            # Beside the staged folders, not among them: those become sessions/ members.
            audit = Path(f"{staging}.{trail.AUDIT_MEMBER}")
            try:
                await asyncio.to_thread(trail.write_audit, audit, entries)
                info = await asyncio.to_thread(
                    archive.write_archive,
                    backups_dir,
                    staging,
                    manifest,
                    now,
                    {trail.AUDIT_MEMBER: audit},
                )
            finally:
                await asyncio.to_thread(audit.unlink, True)
        except OSError as exc:
            if archive.no_space(exc):  # the copy of a session folder filled the disk
                raise archive.disk_full("the copy of the session folders") from exc
            raise
        finally:
            await asyncio.to_thread(shutil.rmtree, staging, True)
        removed = await asyncio.to_thread(
            archive.prune, backups_dir, self.settings.max_backups, self.limits.max_manifest_bytes
        )
        if removed:
            log.info("retention removed %s", ", ".join(removed))
        took = self.clock.now_ms() - started
        result = BackupResult(info, self.settings.backup_mode, took, pauses)
        log.info(
            "backup %s written: %d bytes, %d session(s), max pause %.1f ms, took %d ms",
            info.id,
            info.size,
            len(manifest["sessions"]),
            result.max_pause_ms,
            result.duration_ms,
        )
        await progress(f"done: {info.path.name}, {_size(info.size)}")
        return result

    async def _copy_rolling(self, folders: Sequence[str], staging: Path) -> dict[str, float]:
        pauses: dict[str, float] = {}
        src = self.settings.sessions_dir
        for sid in folders:
            paused = await self.runner.pause(sid)
            frozen = self.clock.now_ms()
            try:
                await asyncio.to_thread(on_disk.copy_folder, src / sid, staging / sid)
            finally:
                if paused:
                    await self.runner.resume(sid)
                    pauses[sid] = float(self.clock.now_ms() - frozen)
        return pauses

    async def _copy_stop_all(self, folders: Sequence[str], staging: Path) -> dict[str, float]:
        running = sorted(await self.runner.running())
        down = self.clock.now_ms()  # a worker is down from the stop request to its new start
        await asyncio.gather(*(self.runner.stop(sid) for sid in running))
        stopped_ms = self.clock.now_ms() - down
        log.info("stop-all: %d worker(s) stopped in %d ms", len(running), stopped_ms)
        src = self.settings.sessions_dir
        try:
            for sid in folders:
                await asyncio.to_thread(on_disk.copy_folder, src / sid, staging / sid)
        finally:
            pauses = {}
            for sid in running:
                record = await self.store.get_session(sid)
                if record is None:
                    continue
                try:
                    await self.service.restart(sid, Reason.STARTING)
                except Exception:
                    log.exception("could not start %s again after the backup", sid)
                pauses[sid] = float(self.clock.now_ms() - down)
        return pauses

    async def _manifest(self, now: int) -> dict[str, Any]:
        records = await self.store.list_sessions()
        sticky, sticky_sessions = await self.store.sticky_maps()
        limits = await self.store.own_limits([r.id for r in records])
        owners = await Owners(self.store.redis).of_many([r.id for r in records])
        return {
            "format": archive.FORMAT,
            "created": now,
            "createdAt": archive.local_time(now).isoformat(timespec="seconds"),
            "wafleetVersion": metadata.version("wafleet"),
            "mode": self.settings.backup_mode,
            "sessions": [
                {
                    "id": r.id,
                    "phone": r.phone,
                    "proxy": r.proxy,
                    "status": r.status,
                    "reason": r.reason,
                    "created": r.created,
                    # What the operator set, so a restore gives it back (with its
                    # credentials, like the proxies below: the archive is owner-only).
                    "eventsWebhookUrl": r.events_webhook_url,
                    "limits": limits.get(r.id, {}),
                    "owner": owners.get(r.id),
                }
                for r in records
            ],
            "sticky": sticky,
            "stickySessions": sticky_sessions,
            # The passwords are here on purpose: a restore on a fresh install needs them.
            # The archive is owner-only (0600), like the session folders themselves.
            "proxies": [{"url": p.url, "status": p.status} for p in await self.store.proxies()],
            # Hashes and salts: what a key is checked against, never a key (none is kept).
            "apiKeys": await ApiKeys(
                self.store.redis, self.clock, self.settings.key_rotate_grace_s
            ).export(),
        }


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"
