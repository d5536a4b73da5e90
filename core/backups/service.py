"""Backups and restore: zip every session's auth, keep the last few, and
rebuild the whole fleet from one archive, or refuse a bad archive with nothing changed.

Consistency without a fleet-wide outage: in the default ``rolling`` mode each worker is
frozen (SIGSTOP / ``docker pause``, its connection stays open) only while its own folder is
copied, so no session is down for more than that copy. ``stop-all`` is the simple
way: stop every worker, copy, start them again.

A restore does everything that can fail on bad input *before* it stops a worker: the
archive is checked (``archive.inspect``), every value it would write is validated against
the live API's rules (``validate.plan``) and the folders are extracted into a staging folder.
Only then the fleet is stopped, the folders swapped in by rename and Redis rebuilt; if that
fails, the fleet it replaced comes back (files and Redis) and is started again.

The service's three calls (``create``, ``list``, ``restore``) take an optional progress
callback, so the REST API, the CLI and the Telegram bot all drive it the same way.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from core import session_files
from core.backups import archive, validate
from core.backups.archive import BACKUP_ID, Limits
from core.backups.errors import BackupBusy, BackupNotFound, RestoreFailed
from core.backups.records import (
    BackupInfo,
    BackupResult,
    Plan,
    Reassigned,
    RestoreReport,
)
from core.clock import Clock
from core.errors import Conflict
from core.models import Reason, Status
from core.notifier import Alert, AlertKind, Done, Move, Notifier
from core.proxy_probe import probe
from core.proxy_url import ProxyUrl, mask
from core.runner import Runner
from core.sessions import SessionService
from core.settings import Settings
from core.store import FleetSnapshot, Store

log = logging.getLogger("wafleet.backups")

RESTORE_WAIT_S = 30.0

# A line of text for the operator ("stopping 12 workers"): a bot edits one message with it.
Progress = Callable[[str], Awaitable[None]]
# Called with a step's name ("maintenance": the fleet is about to stop) so a test can hold a
# restore at a known point; None in production.
StepHook = Callable[[str], Awaitable[None]]


@dataclass(frozen=True)
class _Rebuilt:
    startable: list[str]
    reassigned: list[Reassigned]
    added: list[str]


class BackupService:
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
        self.on_step: StepHook | None = None
        # One backup or restore at a time, whoever asks (scheduler, REST, CLI, bot).
        self._lock = asyncio.Lock()

    @property
    def busy(self) -> bool:
        return self._lock.locked()

    @property
    def limits(self) -> Limits:
        s = self.settings
        return Limits(s.backup_max_bytes, s.backup_max_files, s.backup_max_manifest_bytes)

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
                    facts={"code": getattr(exc, "code", "internal"), "error": _why(exc)},
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

    async def _create(self, progress: Progress) -> BackupResult:
        started = now = self.clock.now_ms()
        backups_dir = self.settings.backups_dir
        manifest = await self._manifest(now)
        folders = await asyncio.to_thread(archive.session_folders, self.settings.sessions_dir)
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
            info = await asyncio.to_thread(
                archive.write_archive, backups_dir, staging, manifest, now
            )
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
                await asyncio.to_thread(archive.copy_folder, src / sid, staging / sid)
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
                await asyncio.to_thread(archive.copy_folder, src / sid, staging / sid)
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
                }
                for r in records
            ],
            "sticky": sticky,
            "stickySessions": sticky_sessions,
            # The passwords are here on purpose: a restore on a fresh install needs them.
            # The archive is owner-only (0600), like the session folders themselves.
            "proxies": [{"url": p.url, "status": p.status} for p in await self.store.proxies()],
        }

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
            await say(f"checking {info.path.name}")
            plan = await asyncio.to_thread(self._plan, info.path)
            unknown = await self._probe_unknown(plan)
            sessions_dir = self.settings.sessions_dir
            await asyncio.to_thread(sessions_dir.mkdir, parents=True, exist_ok=True)
            # Staged *inside* SESSIONS_DIR: in Docker it is a bind mount whose parent may be
            # neither writable nor on the same filesystem, and a mount point cannot be renamed.
            # Dot-names are never session folders, so nothing else ever reads it.
            staging = sessions_dir / f".restore-{self.clock.now_ms()}"
            try:
                await say(f"extracting {len(plan.sessions)} session(s)")
                await asyncio.to_thread(self._extract, info.path, staging)
                replaced = await self._replace_fleet(info, plan, unknown, staging, say)
            finally:
                await asyncio.to_thread(shutil.rmtree, staging, True)
            return await self._finish(info, plan, replaced, say, wait_s)

    def _plan(self, path: Path) -> Plan:
        contents = archive.inspect(path, self.limits)
        return validate.plan(
            path.name, contents.manifest, contents.metas, self.settings.events_webhook_policy
        )

    def _extract(self, path: Path, staging: Path) -> None:
        try:
            archive.extract(path, staging, self.limits.max_bytes)
        except OSError as exc:
            if archive.no_space(exc):
                raise archive.disk_full(f"the sessions of {path.name}") from exc
            raise

    async def _probe_unknown(self, plan: Plan) -> dict[str, str | None]:
        """For every proxy the archive knows and the pool does not: add it back when it
        answers (the phones keep their IP), else ``None`` with the probe's reason."""
        pool = {p.url for p in await self.store.proxies()}
        wanted = {s.proxy for s in plan.sessions} | set(plan.proxies)
        unknown = sorted(wanted - pool)
        problems = await asyncio.gather(*(probe(ProxyUrl.parse(url)) for url in unknown))
        return dict(zip(unknown, problems, strict=True))

    async def _replace_fleet(
        self,
        info: BackupInfo,
        plan: Plan,
        unknown: dict[str, str | None],
        staging: Path,
        say: Progress,
    ) -> _Rebuilt:
        """Stop the fleet, swap the folders, rebuild Redis; on failure put it all back."""
        sessions_dir = self.settings.sessions_dir
        old = sessions_dir / f".old-{self.clock.now_ms()}"
        # Nothing else starts, moves or deletes a worker until the new fleet is in place.
        async with self.service.maintenance("a restore"):
            if self.on_step is not None:
                await self.on_step("maintenance")
            before = await self.store.fleet_snapshot()
            swapped = False
            try:
                current = sorted(
                    set(await self.store.session_ids()) | set(await self.runner.running())
                )
                await say(f"stopping {len(current)} worker(s)")
                await asyncio.gather(*(self.runner.stop(sid) for sid in current))
                # The swap: renames within one folder, all or nothing.
                await asyncio.to_thread(archive.swap_in, sessions_dir, staging, old)
                swapped = True
                carried = await asyncio.to_thread(session_files.carry_outboxes, old, sessions_dir)
                if carried:
                    log.info(
                        "carried %d unsent message event(s) into the restored folders", carried
                    )
                await say("rebuilding the state")
                rebuilt = await self._rebuild(info, plan, unknown, current)
            except Exception as exc:
                log.exception("restore of %s failed; rolling back", info.id)
                await self._roll_back(info, before, old if swapped else None, exc)
                raise RestoreFailed(
                    f"restoring {info.id} failed ({_why(exc)}); the previous fleet is back"
                ) from exc
        await asyncio.to_thread(shutil.rmtree, old, True)
        return rebuilt

    async def _rebuild(
        self,
        info: BackupInfo,
        plan: Plan,
        unknown: dict[str, str | None],
        current: Sequence[str],
    ) -> _Rebuilt:
        for sid in current:
            await self.store.release(sid)
        added = []
        for url, problem in unknown.items():
            if problem is None and await self.store.add_proxy(url):
                added.append(url)
            elif problem is not None:
                log.warning("proxy %s from the backup is unreachable: %s", mask(url), problem)
        await self.store.set_sticky_proxies(plan.sticky)
        now = self.clock.now_ms()
        cap = self.settings.max_sessions_per_proxy
        reassigned: list[Reassigned] = []
        startable: list[str] = []
        for s in plan.sessions:
            outcome, url = await self.store.restore_session(
                s.id, s.phone, s.proxy, cap, s.created, now, s.stopped, s.events_webhook_url
            )
            if outcome == "err":
                raise Conflict(f"could not restore {s.id}: {url}")
            if s.limits is not None:
                await self.store.set_own_limits(s.id, s.limits)
            why = unknown.get(s.proxy) or "the proxy is marked bad or full"
            if outcome == "moved":
                folder = self.settings.sessions_dir / s.id
                await asyncio.to_thread(
                    session_files.write_meta, folder, s.id, s.phone, url, s.created
                )
                reassigned.append(Reassigned(s.id, s.phone, mask(s.proxy), mask(url), why))
            elif outcome == "parked":
                reassigned.append(Reassigned(s.id, s.phone, mask(s.proxy), None, why))
            if outcome != "parked" and not s.stopped:
                startable.append(s.id)  # one the operator stopped stays stopped: no worker
            await self.store.add_event(
                s.id, "RESTORED", {"backup": info.id, "proxy": mask(url)}, now
            )
        await self.store.set_sticky_sessions(plan.sticky_sessions)
        await self.store.recount()
        return _Rebuilt(startable, reassigned, added)

    async def _roll_back(
        self, info: BackupInfo, before: FleetSnapshot, old: Path | None, cause: Exception
    ) -> None:
        """The fleet the restore replaced, back as it was: folders (when they were swapped),
        Redis, running workers. If even that fails, the operator must be told so."""
        sessions_dir = self.settings.sessions_dir
        try:
            if old is not None:
                discard = sessions_dir / f".discard-{self.clock.now_ms()}"
                await asyncio.to_thread(archive.swap_back, sessions_dir, old, discard)
            await self.store.restore_fleet(before)
            await self.service.reconcile()
        except Exception as exc:
            log.exception("rolling back the restore of %s failed", info.id)
            kept = f"; the previous folders are in {old}" if old is not None else ""
            raise RestoreFailed(
                f"restoring {info.id} failed ({_why(cause)}) and so did putting the previous "
                f"fleet back ({_why(exc)}): see the server log{kept}"
            ) from exc

    async def _finish(
        self, info: BackupInfo, plan: Plan, rebuilt: _Rebuilt, say: Progress, wait_s: float
    ) -> RestoreReport:
        await say(f"starting {len(rebuilt.startable)} worker(s)")
        # Bounded and connected-first, like a reconcile: a restore of hundreds starts them all.
        records = [r for r in await self.store.list_sessions() if r.id in rebuilt.startable]
        await self.service.start_many(records, Reason.STARTING, announce=False)
        await say(f"waiting up to {wait_s:.0f} s for the sessions to connect")
        connected = await self._wait_connected(rebuilt.startable, wait_s)
        ids = [s.id for s in plan.sessions]
        report = RestoreReport(
            backup_id=info.id,
            sessions=ids,
            connected=sorted(connected, key=ids.index),
            not_connected=[sid for sid in ids if sid not in connected],
            reassigned=rebuilt.reassigned,
            proxies_added=[mask(u) for u in rebuilt.added],
        )
        await self._tell(report)
        await say(f"restored {len(ids)} session(s), {len(connected)} connected")
        return report

    async def _wait_connected(self, ids: Sequence[str], wait_s: float) -> set[str]:
        deadline = self.clock.now_ms() + wait_s * 1000
        while True:
            records = await self.store.list_sessions()
            connected = {r.id for r in records if r.status == Status.CONNECTED and r.id in ids}
            if len(connected) == len(ids) or self.clock.now_ms() >= deadline:
                return connected
            await asyncio.sleep(0.25)

    async def _tell(self, report: RestoreReport) -> None:
        await self.notifier.notify(
            Alert(
                AlertKind.RESTORE_DONE,
                facts={
                    "backup": report.backup_id,
                    "sessions": len(report.sessions),
                    "connected": len(report.connected),
                    "not_connected": len(report.not_connected),
                    "proxies_added": len(report.proxies_added),
                },
                done=Done.RESTARTED_RESTORED,
                moves=tuple(
                    Move(r.session_id, r.phone, r.old_proxy, r.new_proxy)
                    for r in report.reassigned
                ),
            )
        )


async def _quiet(_: str) -> None:
    return None


def _why(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"
