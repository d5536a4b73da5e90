"""Backups and restore (SPEC.md Flow 5): zip every session's auth, keep the last few, and
rebuild the whole fleet from one archive, or refuse a bad archive with nothing changed.

Consistency without a fleet-wide outage: in the default ``rolling`` mode each worker is
frozen (SIGSTOP / ``docker pause``, its connection stays open) only while its own folder is
copied aside, so no session is down for more than that copy. ``stop-all`` is SPEC.md's way:
stop every worker, copy, start them again.

A restore checks the whole archive before it touches anything (opens, CRCs pass, no member
escapes the target, has a manifest and session folders), extracts into a staging folder on
the same filesystem and swaps it in with a rename, then rebuilds Redis through a Lua script
so every proxy counter keeps equal to the sessions that really use it.

The service's three calls (``create``, ``list``, ``restore``) take an optional progress
callback, so the REST API, the CLI and the Telegram bot all drive it the same way.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import shutil
import stat
import tempfile
import time
import zipfile
import zlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Any

from apscheduler.triggers.cron import CronTrigger

from core import keys, session_files
from core.clock import Clock
from core.errors import Conflict, InvalidInput, NotFound
from core.models import Reason, Status
from core.notifier import Alert, AlertKind, Done, Move, Notifier
from core.proxy_probe import probe
from core.proxy_url import ProxyUrl, mask
from core.runner import Runner
from core.sessions import SessionService
from core.settings import Settings
from core.store import Store, id_order, load_script

log = logging.getLogger("wafleet.backups")

FORMAT = 1  # manifest format; a restore refuses a newer one
MANIFEST = "manifest.json"
SESSIONS_PREFIX = "sessions"
BACKUP_ID = re.compile(r"backup_\d{4}-\d{2}-\d{2}(?:_\d{6}(?:_\d+)?)?")
FOLDER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
EXCLUDED = re.compile(r"worker\.log(\..*)?")  # the worker's log is not session data
RESTORE_WAIT_S = 30.0

# A line of text for the operator ("stopping 12 workers"): a bot edits one message with it.
Progress = Callable[[str], Awaitable[None]]


# errors: each refusal has its own stable code --------------------------------------------


class BackupNotFound(NotFound):
    code = "backup_not_found"


class BackupBusy(Conflict):
    code = "backup_busy"


class BadArchive(InvalidInput):
    """The archive cannot be restored; nothing was changed."""

    code = "backup_invalid"


class NotAZip(BadArchive):
    code = "backup_not_zip"


class CorruptArchive(BadArchive):
    code = "backup_corrupt"


class PathTraversal(BadArchive):
    code = "backup_path_traversal"


class AbsolutePath(BadArchive):
    code = "backup_absolute_path"


class LinkMember(BadArchive):
    code = "backup_symlink"


class UnexpectedMember(BadArchive):
    code = "backup_unexpected_member"


class NoManifest(BadArchive):
    code = "backup_no_manifest"


class BadManifest(BadArchive):
    code = "backup_bad_manifest"


class NoSessions(BadArchive):
    code = "backup_no_sessions"


# records ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BackupInfo:
    id: str
    path: Path
    size: int
    created_ms: int
    sessions: int | None  # None when the manifest cannot be read

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "file": self.path.name,
            "size": self.size,
            "created": self.created_ms,
            "sessions": self.sessions,
        }


@dataclass(frozen=True)
class BackupResult:
    info: BackupInfo
    mode: str
    duration_ms: int
    # How long each session's worker was frozen (rolling) or down (stop-all), in ms.
    pauses_ms: dict[str, float] = field(default_factory=dict)

    @property
    def max_pause_ms(self) -> float:
        return max(self.pauses_ms.values(), default=0.0)

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.info.as_dict(),
            "mode": self.mode,
            "durationMs": self.duration_ms,
            "maxPauseMs": round(self.max_pause_ms, 1),
            "pausesMs": {k: round(v, 1) for k, v in self.pauses_ms.items()},
        }


@dataclass(frozen=True)
class Reassigned:
    session_id: str
    phone: str | None
    old_proxy: str  # masked
    new_proxy: str | None  # masked; None: no slot anywhere, the session is parked
    why: str


@dataclass(frozen=True)
class RestoreReport:
    backup_id: str
    sessions: list[str]
    connected: list[str]
    not_connected: list[str]
    reassigned: list[Reassigned]
    proxies_added: list[str]  # masked

    def as_dict(self) -> dict[str, Any]:
        return {
            "backup": self.backup_id,
            "sessions": self.sessions,
            "connected": self.connected,
            "notConnected": self.not_connected,
            "reassigned": [
                {
                    "id": r.session_id,
                    "phone": r.phone,
                    "from": r.old_proxy,
                    "to": r.new_proxy,
                    "why": r.why,
                }
                for r in self.reassigned
            ],
            "proxiesAdded": self.proxies_added,
        }


@dataclass(frozen=True)
class _Session:
    """One session as the archive has it (``session.json`` first, the manifest second)."""

    id: str
    phone: str | None
    proxy: str
    created: int


@dataclass(frozen=True)
class _Plan:
    manifest: dict[str, Any]
    sessions: list[_Session]


# the service ------------------------------------------------------------------------------


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
        # One backup or restore at a time, whoever asks (scheduler, REST, CLI, bot).
        self._lock = asyncio.Lock()
        self._restore_session = store.redis.register_script(load_script("restore_session.lua"))

    @property
    def busy(self) -> bool:
        return self._lock.locked()

    # list ---------------------------------------------------------------------------------

    async def list(self) -> list[BackupInfo]:
        """Every archive in ``BACKUPS_DIR``, newest first."""
        return await asyncio.to_thread(_list_backups, self.settings.backups_dir)

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
        started = time.monotonic()
        now = self.clock.now_ms()
        backups_dir = self.settings.backups_dir
        await asyncio.to_thread(backups_dir.mkdir, parents=True, exist_ok=True, mode=0o700)
        manifest = await self._manifest(now)
        folders = await asyncio.to_thread(_session_folders, self.settings.sessions_dir)
        staging = Path(
            await asyncio.to_thread(tempfile.mkdtemp, prefix=".staging-", dir=backups_dir)
        )
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
            info = await asyncio.to_thread(_write_archive, backups_dir, staging, manifest, now)
        finally:
            await asyncio.to_thread(shutil.rmtree, staging, True)
        removed = await asyncio.to_thread(_prune, backups_dir, self.settings.max_backups)
        if removed:
            log.info("retention removed %s", ", ".join(removed))
        result = BackupResult(info, self.settings.backup_mode, _ms_since(started), pauses)
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
            frozen = time.monotonic()
            try:
                await asyncio.to_thread(_copy_folder, src / sid, staging / sid)
            finally:
                if paused:
                    await self.runner.resume(sid)
                    pauses[sid] = (time.monotonic() - frozen) * 1000
        return pauses

    async def _copy_stop_all(self, folders: Sequence[str], staging: Path) -> dict[str, float]:
        running = sorted(await self.runner.running())
        down = time.monotonic()  # a worker is down from the stop request to its new start
        await asyncio.gather(*(self.runner.stop(sid) for sid in running))
        log.info("stop-all: %d worker(s) stopped in %d ms", len(running), _ms_since(down))
        src = self.settings.sessions_dir
        try:
            for sid in folders:
                await asyncio.to_thread(_copy_folder, src / sid, staging / sid)
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
                pauses[sid] = (time.monotonic() - down) * 1000
        return pauses

    async def _manifest(self, now: int) -> dict[str, Any]:
        records = await self.store.list_sessions()
        sticky: dict[str, str] = {}
        sticky_sessions: dict[str, str] = {}
        redis = self.store.redis
        async for key in redis.scan_iter(match=keys.phone_proxy("*"), count=500):
            phone = str(key).split(":")[1]
            value = await redis.get(key)
            if value:
                sticky[phone] = str(value)
            owner = await redis.get(keys.phone_session(phone))
            if owner:
                sticky_sessions[phone] = str(owner)
        return {
            "format": FORMAT,
            "created": now,
            "createdAt": _local(now).isoformat(timespec="seconds"),
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
                }
                for r in records
            ],
            "sticky": dict(sorted(sticky.items())),
            "stickySessions": dict(sorted(sticky_sessions.items())),
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
        when the archive cannot be restored safely."""
        say = progress or _quiet
        info = await self.get(backup_id)
        if self._lock.locked():
            raise BackupBusy("a backup or restore is already running: try again when it ends")
        async with self._lock:
            await say(f"checking {info.path.name}")
            plan = await asyncio.to_thread(_inspect, info.path)
            decisions = await self._proxy_decisions(plan)
            return await self._restore(info, plan, decisions, say, wait_s)

    async def _proxy_decisions(self, plan: _Plan) -> dict[str, str | None]:
        """For every proxy the archive knows and the pool does not: add it back when it
        answers (the phones keep their IP), else ``None`` with the probe's reason."""
        pool = {p.url for p in await self.store.proxies()}
        wanted = {s.proxy for s in plan.sessions}
        for entry in plan.manifest.get("proxies") or []:
            url = entry.get("url") if isinstance(entry, dict) else None
            if isinstance(url, str) and _parses(url):
                wanted.add(url)
        unknown = sorted(wanted - pool)
        problems = await asyncio.gather(*(probe(ProxyUrl.parse(url)) for url in unknown))
        return dict(zip(unknown, problems, strict=True))

    async def _restore(
        self,
        info: BackupInfo,
        plan: _Plan,
        unknown: dict[str, str | None],
        say: Progress,
        wait_s: float,
    ) -> RestoreReport:
        sessions_dir = self.settings.sessions_dir
        sessions_dir.mkdir(parents=True, exist_ok=True)
        stamp = f"{self.clock.now_ms()}"
        # Staged *inside* SESSIONS_DIR: in Docker it is a bind mount whose parent may be
        # neither writable nor on the same filesystem, and a mount point cannot be renamed.
        # Dot-names are never session folders, so nothing else ever reads these two.
        staging = sessions_dir / f".restore-{stamp}"
        old = sessions_dir / f".old-{stamp}"
        # Nothing else starts, moves or deletes a worker until the new fleet is in place.
        async with self.service.maintenance("a restore"):
            current = set(await self.store.session_ids()) | set(await self.runner.running())
            await say(f"stopping {len(current)} worker(s)")
            await asyncio.gather(*(self.runner.stop(sid) for sid in sorted(current)))
            try:
                await say(f"extracting {len(plan.sessions)} session(s)")
                await asyncio.to_thread(_extract, info.path, staging)
            except BaseException:
                await asyncio.to_thread(shutil.rmtree, staging, True)
                log.exception(
                    "restore of %s failed while extracting; restarting the workers", info.id
                )
                await self.service.reconcile()
                raise
            # The swap: renames within one folder. From here on the archive's fleet is it.
            await asyncio.to_thread(_swap_in, sessions_dir, staging, old)

            await say("rebuilding the state")
            for sid in sorted(current):
                await self.store.release(sid)
            added = []
            for url, problem in unknown.items():
                if problem is None and await self.store.add_proxy(url):
                    added.append(url)
                elif problem is not None:
                    log.warning("proxy %s from the backup is unreachable: %s", mask(url), problem)
            pipe = self.store.redis.pipeline(transaction=True)
            for phone, url in (plan.manifest.get("sticky") or {}).items():
                if isinstance(phone, str) and isinstance(url, str):
                    pipe.set(keys.phone_proxy(phone), url)
            await pipe.execute()

            now = self.clock.now_ms()
            cap = self.settings.max_sessions_per_proxy
            reassigned: list[Reassigned] = []
            startable: list[str] = []
            for s in plan.sessions:
                outcome, url = await self._restore_session(
                    args=[s.id, s.phone or "", s.proxy, cap, s.created, now]
                )
                if outcome == "err":
                    raise Conflict(f"could not restore {s.id}: {url}")
                why = unknown.get(s.proxy) or "the proxy is marked bad or full"
                if outcome == "moved":
                    session_files.write_meta(sessions_dir / s.id, s.id, s.phone, url, s.created)
                    reassigned.append(Reassigned(s.id, s.phone, mask(s.proxy), mask(url), why))
                elif outcome == "parked":
                    reassigned.append(Reassigned(s.id, s.phone, mask(s.proxy), None, why))
                if outcome != "parked":
                    startable.append(s.id)
                await self.store.add_event(
                    s.id, "RESTORED", {"backup": info.id, "proxy": mask(url)}, now
                )
            owners = plan.manifest.get("stickySessions") or {}
            restored = {s.id for s in plan.sessions}
            for phone, sid in owners.items():
                if isinstance(phone, str) and sid in restored:
                    await self.store.redis.set(keys.phone_session(phone), sid)
            await self.store.recount()

        await say(f"starting {len(startable)} worker(s)")
        for sid in startable:
            try:
                await self.service.restart(sid, Reason.STARTING)
            except Exception:
                log.exception("could not start the restored session %s", sid)
        await asyncio.to_thread(shutil.rmtree, old, True)

        await say(f"waiting up to {wait_s:.0f} s for the sessions to connect")
        connected = await self._wait_connected(startable, wait_s)
        ids = [s.id for s in plan.sessions]
        report = RestoreReport(
            backup_id=info.id,
            sessions=ids,
            connected=sorted(connected, key=ids.index),
            not_connected=[sid for sid in ids if sid not in connected],
            reassigned=reassigned,
            proxies_added=[mask(u) for u in added],
        )
        await self._tell(report)
        await say(f"restored {len(ids)} session(s), {len(connected)} connected")
        return report

    async def _wait_connected(self, ids: Sequence[str], wait_s: float) -> set[str]:
        deadline = time.monotonic() + wait_s
        while True:
            records = await self.store.list_sessions()
            connected = {r.id for r in records if r.status == Status.CONNECTED and r.id in ids}
            if len(connected) == len(ids) or time.monotonic() >= deadline:
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


# scheduling -------------------------------------------------------------------------------


_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")


def cron_trigger(expr: str, tz: tzinfo) -> CronTrigger:
    """``BACKUP_CRON`` as a trigger: crontab's 5 fields, or 6 with seconds first.

    Numeric weekdays keep crontab's meaning (0 = Sunday); APScheduler 3 alone would read
    0 as Monday.
    """
    fields = expr.split()
    second = "0"
    if len(fields) == 6:
        second, *fields = fields
    if len(fields) != 5:
        raise ValueError(f"BACKUP_CRON needs 5 or 6 fields, got {len(fields)}")
    minute, hour, day, month, dow = fields
    dow = re.sub(r"(?<![/\d])\d+", lambda m: _WEEKDAYS[int(m.group()) % 8], dow)
    return CronTrigger(
        second=second,
        minute=minute,
        hour=hour,
        day=day,
        month=month,
        day_of_week=dow,
        timezone=tz,
    )


# blocking helpers (run in a thread) -------------------------------------------------------


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


def _ms_since(start: float) -> int:
    return round((time.monotonic() - start) * 1000)


def _local(ms: int) -> datetime:
    """The server's local time (``TZ``): what an operator reads in a file name."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).astimezone()


def _parses(url: str) -> bool:
    try:
        ProxyUrl.parse(url)
    except ValueError:
        return False
    return True


def _swap_in(sessions_dir: Path, staging: Path, old: Path) -> None:
    """Move the current session folders into ``old`` and the staged ones into place."""
    old.mkdir(mode=0o700)
    for entry in sessions_dir.iterdir():
        if entry not in (staging, old):
            entry.rename(old / entry.name)
    for entry in staging.iterdir():
        entry.rename(sessions_dir / entry.name)
    staging.rmdir()


def _session_folders(sessions_dir: Path) -> list[str]:
    if not sessions_dir.is_dir():
        return []
    return sorted(
        e.name
        for e in sessions_dir.iterdir()
        if e.is_dir() and not e.is_symlink() and FOLDER_NAME.fullmatch(e.name)
    )


def _copy_folder(src: Path, dst: Path) -> None:
    """Regular files only (no links, no logs): what the archive may carry."""
    dst.mkdir(parents=True, mode=0o700)
    for root, dirs, files in os.walk(src):
        base = Path(root)
        rel = base.relative_to(src)
        dirs[:] = [d for d in dirs if not (base / d).is_symlink()]
        for d in dirs:
            (dst / rel / d).mkdir(mode=0o700, exist_ok=True)
        for name in files:
            path = base / name
            if EXCLUDED.fullmatch(name) or path.is_symlink() or not path.is_file():
                continue
            try:
                shutil.copy2(path, dst / rel / name)
            except FileNotFoundError:
                continue  # a temp file renamed away just before the pause


def _backup_name(backups_dir: Path, now_ms: int) -> str:
    when = _local(now_ms)
    name = f"backup_{when:%Y-%m-%d}"
    if not (backups_dir / f"{name}.zip").exists():
        return name
    name = f"{name}_{when:%H%M%S}"
    n, candidate = 1, name
    while (backups_dir / f"{candidate}.zip").exists():
        n += 1
        candidate = f"{name}_{n}"
    return candidate


def _write_archive(
    backups_dir: Path, staging: Path, manifest: dict[str, Any], now_ms: int
) -> BackupInfo:
    backup_id = _backup_name(backups_dir, now_ms)
    final = backups_dir / f"{backup_id}.zip"
    tmp = backups_dir / f".{backup_id}.zip.tmp"
    # Owner-only from the first byte: the archive holds auth keys and proxy passwords.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as raw:
            with zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED, strict_timestamps=False) as zf:
                zf.writestr(MANIFEST, json.dumps(manifest, indent=1, ensure_ascii=False))
                for path in sorted(staging.rglob("*")):
                    if path.is_file():
                        arcname = PurePosixPath(SESSIONS_PREFIX, *path.relative_to(staging).parts)
                        zf.write(path, str(arcname))
            raw.flush()
            os.fsync(raw.fileno())
        # Renamed whole or not at all: a crash leaves a dot-file that no listing shows.
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return BackupInfo(backup_id, final, final.stat().st_size, now_ms, len(manifest["sessions"]))


def _list_backups(backups_dir: Path) -> list[BackupInfo]:
    if not backups_dir.is_dir():
        return []
    found = []
    for path in backups_dir.iterdir():
        if path.suffix != ".zip" or not BACKUP_ID.fullmatch(path.stem) or not path.is_file():
            continue
        st = path.stat()
        created, count = int(st.st_mtime * 1000), None
        try:
            with zipfile.ZipFile(path) as zf:
                manifest = json.loads(zf.read(MANIFEST))
            created = int(manifest.get("created", created))
            count = len(manifest.get("sessions", []))
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, zlib.error, AttributeError):
            pass
        found.append(BackupInfo(path.stem, path, st.st_size, created, count))
    return sorted(found, key=lambda b: (b.created_ms, b.id), reverse=True)


def _prune(backups_dir: Path, keep: int) -> list[str]:
    """Keep the newest ``keep`` archives this service wrote; older ones go."""
    removed = []
    for info in _list_backups(backups_dir)[keep:]:
        info.path.unlink(missing_ok=True)
        removed.append(info.id)
    return removed


def _inspect(path: Path) -> _Plan:
    """Check everything a restore relies on; raise a ``BadArchive`` naming the first fault."""
    name = path.name
    with path.open("rb") as handle:
        magic = handle.read(4)
    if magic not in (b"PK\x03\x04", b"PK\x05\x06"):
        raise NotAZip(f"{name} is not a zip archive")
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        raise CorruptArchive(
            f"{name} is damaged or truncated: its table of contents cannot be read"
        ) from None
    with zf:
        folders: dict[str, set[str]] = {}
        for member in zf.infolist():
            parts = _check_member(name, member)
            if parts[0] == SESSIONS_PREFIX and len(parts) >= 2:
                files = folders.setdefault(parts[1], set())
                if not member.is_dir() and len(parts) >= 3:
                    files.add("/".join(parts[2:]))
        try:
            bad = zf.testzip()
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error, ValueError) as exc:
            raise CorruptArchive(f"{name} is damaged or truncated: {_why(exc)}") from None
        if bad is not None:
            raise CorruptArchive(f"{name} is damaged: {bad!r} fails its CRC check")
        if MANIFEST not in zf.namelist():
            raise NoManifest(f"{name} has no {MANIFEST}: it is not a wafleet backup")
        try:
            manifest = json.loads(zf.read(MANIFEST))
        except ValueError:
            raise BadManifest(f"{name}: {MANIFEST} is not valid JSON") from None
        if not isinstance(manifest, dict) or not isinstance(manifest.get("sessions"), list):
            raise BadManifest(f"{name}: {MANIFEST} has no session list")
        if not isinstance(manifest.get("format"), int) or manifest["format"] > FORMAT:
            raise BadManifest(f"{name}: {MANIFEST} is of an unknown format (newer wafleet?)")
        if not folders:
            raise NoSessions(f"{name} has no session folders: restoring it would empty the fleet")
        listed = {e["id"]: e for e in manifest["sessions"] if isinstance(e, dict) and "id" in e}
        sessions = []
        for sid in sorted(folders, key=id_order):
            meta: Any = None
            if session_files.SESSION_FILE in folders[sid]:
                try:
                    meta = json.loads(
                        zf.read(f"{SESSIONS_PREFIX}/{sid}/{session_files.SESSION_FILE}")
                    )
                except ValueError:
                    meta = None
            if not isinstance(meta, dict):
                meta = listed.get(sid)
            sessions.append(_session_of(name, sid, meta))
    return _Plan(manifest, sessions)


def _check_member(archive: str, member: zipfile.ZipInfo) -> list[str]:
    raw = member.filename
    if raw.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", raw):
        raise AbsolutePath(f"{archive}: member {raw!r} has an absolute path")
    parts = raw.replace("\\", "/").split("/")
    if ".." in parts:
        raise PathTraversal(f"{archive}: member {raw!r} would escape the sessions folder")
    mode = member.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise LinkMember(f"{archive}: member {raw!r} is a symbolic link")
    if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR) or "\\" in raw or "\0" in raw:
        raise UnexpectedMember(f"{archive}: member {raw!r} is not a plain file")
    parts = [p for p in parts if p not in ("", ".")]
    if parts == [MANIFEST]:
        return parts
    if (
        not parts
        or parts[0] != SESSIONS_PREFIX
        or (len(parts) >= 2 and not FOLDER_NAME.fullmatch(parts[1]))
    ):
        raise UnexpectedMember(
            f"{archive}: member {raw!r} is neither the manifest nor in a session folder"
        )
    return parts


def _session_of(archive: str, sid: str, meta: dict[str, Any] | None) -> _Session:
    if meta is None:
        raise BadManifest(f"{archive}: session {sid} has no session.json and no manifest entry")
    proxy, phone, created = meta.get("proxy"), meta.get("phone"), meta.get("created")
    if meta.get("id", sid) != sid:
        raise BadManifest(f"{archive}: the folder {sid} holds the session.json of another id")
    if not isinstance(proxy, str) or not _parses(proxy):
        raise BadManifest(f"{archive}: session {sid} has no valid socks5h:// proxy")
    if phone is not None and not (isinstance(phone, str) and phone.isdigit()):
        raise BadManifest(f"{archive}: session {sid} has a malformed phone")
    return _Session(sid, phone, proxy, created if isinstance(created, int) else 0)


def _extract(path: Path, target: Path) -> None:
    """Extract the session folders (already checked by ``_inspect``) into ``target``."""
    target.mkdir(mode=0o700)
    root = target.resolve()
    with zipfile.ZipFile(path) as zf:
        for member in zf.infolist():
            parts = [p for p in member.filename.split("/") if p not in ("", ".")]
            if parts[0] != SESSIONS_PREFIX or len(parts) < 2:
                continue
            dest = root.joinpath(*parts[1:])
            if not dest.resolve().is_relative_to(root):  # checked already; never trust twice
                raise PathTraversal(f"member {member.filename!r} escapes the target")
            if member.is_dir():
                dest.mkdir(parents=True, exist_ok=True, mode=0o700)
                continue
            dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out, zf.open(member) as src:
                shutil.copyfileobj(src, out)
