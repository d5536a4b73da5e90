"""The zip files themselves: write one, list them, check one, extract one. Blocking code,
called through ``asyncio.to_thread`` by the service.

Reading is bounded everywhere, because an archive in ``BACKUPS_DIR`` may have been crafted:
a listing reads only the first local header (the manifest, written first), and a restore
checks the declared sizes and member count before it reads any data, then counts the bytes
it really inflates (headers can lie).
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
import struct
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from core import session_files
from core.backups.errors import (
    AbsolutePath,
    BadManifest,
    CorruptArchive,
    DiskFull,
    DuplicateMember,
    LinkMember,
    ManifestTooLarge,
    NoManifest,
    NoSessions,
    NotAFolder,
    NotAZip,
    PathTraversal,
    TooLarge,
    TooManyFiles,
    UnexpectedMember,
)
from core.backups.records import BackupInfo

FORMAT = 2  # manifest format, newer ones refused; 2 adds audit.jsonl and apiKeys (trail.py)
MANIFEST = "manifest.json"
AUDIT = "audit.jsonl"  # core/backups/trail.py reads and writes it
SESSIONS_PREFIX = "sessions"
BACKUP_ID = re.compile(r"backup_\d{4}-\d{2}-\d{2}(?:_\d{6}(?:_\d+)?)?")
FOLDER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
SESSION_FILE_MAX = 64 * 1024  # a session.json is ~300 bytes
CHUNK = 1 << 20
NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})
_LOCAL_HEADER = struct.Struct("<IHHHHHIIIHH")
_LOCAL_MAGIC = 0x04034B50
# What zipfile raises on a damaged member (NotImplementedError: an unknown compression).
_UNREADABLE = (zipfile.BadZipFile, OSError, EOFError, zlib.error, ValueError, NotImplementedError)


@dataclass(frozen=True)
class Limits:
    """What a restore accepts (``BACKUP_MAX_BYTES``, ``BACKUP_MAX_FILES``,
    ``BACKUP_MAX_MANIFEST_BYTES``)."""

    max_bytes: int
    max_files: int
    max_manifest_bytes: int


@dataclass(frozen=True)
class Contents:
    """An archive whose structure, sizes and CRCs passed; values not yet validated."""

    manifest: Any
    metas: dict[str, Any]  # session folder -> its session.json (None when absent/unreadable)


def no_space(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in NO_SPACE


def disk_full(what: str) -> DiskFull:
    return DiskFull(f"the disk is full: {what} could not be written (nothing was kept)")


def local_time(ms: int) -> datetime:
    """The server's local time (``TZ``): what an operator reads in a file name."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).astimezone()


# writing ----------------------------------------------------------------------------------


def backup_name(backups_dir: Path, now_ms: int) -> str:
    when = local_time(now_ms)
    name = f"backup_{when:%Y-%m-%d}"
    if not (backups_dir / f"{name}.zip").exists():
        return name
    name = f"{name}_{when:%H%M%S}"
    n, candidate = 1, name
    while (backups_dir / f"{candidate}.zip").exists():
        n += 1
        candidate = f"{name}_{n}"
    return candidate


def write_archive(
    backups_dir: Path, staging: Path, manifest: dict[str, Any], now_ms: int, extra: dict[str, Path]
) -> BackupInfo:
    """``extra``: members beside the manifest and the sessions (name -> file to store)."""
    backup_id = backup_name(backups_dir, now_ms)
    final = backups_dir / f"{backup_id}.zip"
    tmp = backups_dir / f".{backup_id}.zip.tmp"
    try:
        # Owner-only from the first byte: the archive holds auth keys and proxy passwords.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as raw:
            with zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED, strict_timestamps=False) as zf:
                # First, so a listing finds it in the first local header and reads no more.
                zf.writestr(MANIFEST, json.dumps(manifest, indent=1, ensure_ascii=False))
                for member, source in extra.items():
                    zf.write(source, member)
                for path in sorted(staging.rglob("*")):
                    if path.is_file():
                        arcname = PurePosixPath(SESSIONS_PREFIX, *path.relative_to(staging).parts)
                        zf.write(path, str(arcname))
            raw.flush()
            os.fsync(raw.fileno())
        # Renamed whole or not at all: a crash leaves a dot-file that no listing shows.
        os.replace(tmp, final)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if no_space(exc):
            raise disk_full(final.name) from exc
        raise
    return BackupInfo(backup_id, final, final.stat().st_size, now_ms, len(manifest["sessions"]))


# listing ----------------------------------------------------------------------------------


def list_backups(backups_dir: Path, manifest_cap: int) -> list[BackupInfo]:
    if not backups_dir.is_dir():
        return []
    found = []
    for path in backups_dir.iterdir():
        if path.suffix != ".zip" or not BACKUP_ID.fullmatch(path.stem) or not path.is_file():
            continue
        st = path.stat()
        created, count = int(st.st_mtime * 1000), None
        manifest = _head_manifest(path, manifest_cap)
        if manifest is not None:
            try:
                created = int(manifest.get("created", created))
                count = len(manifest.get("sessions", []))
            except (TypeError, ValueError):
                pass
        found.append(BackupInfo(path.stem, path, st.st_size, created, count))
    return sorted(found, key=lambda b: (b.created_ms, b.id), reverse=True)


def _head_manifest(path: Path, cap: int) -> dict[str, Any] | None:
    """The manifest from the archive's first local header, if it is there and under ``cap``;
    reads at most ``cap`` bytes plus a header, whatever the file holds."""
    try:
        with path.open("rb") as handle:
            head = handle.read(_LOCAL_HEADER.size)
            if len(head) < _LOCAL_HEADER.size:
                return None
            magic, _, flags, method, _, _, _, csize, usize, nlen, xlen = _LOCAL_HEADER.unpack(head)
            # Bit 0: encrypted; bit 3: sizes only after the data (unknown here).
            if magic != _LOCAL_MAGIC or flags & 0x09 or csize > cap or usize > cap:
                return None
            if handle.read(nlen) != MANIFEST.encode():
                return None
            handle.seek(xlen, os.SEEK_CUR)
            data = handle.read(csize)
        if method == zipfile.ZIP_DEFLATED:
            data = zlib.decompressobj(-15).decompress(data, cap + 1)
        elif method != zipfile.ZIP_STORED:
            return None
        if len(data) > cap:
            return None
        manifest = json.loads(data)
    except (OSError, ValueError, zlib.error):
        return None
    return manifest if isinstance(manifest, dict) else None


def prune(backups_dir: Path, keep: int, manifest_cap: int) -> list[str]:
    """Keep the newest ``keep`` archives this service wrote; older ones go."""
    removed = []
    for info in list_backups(backups_dir, manifest_cap)[keep:]:
        info.path.unlink(missing_ok=True)
        removed.append(info.id)
    return removed


# checking ---------------------------------------------------------------------------------


def inspect(path: Path, limits: Limits) -> Contents:
    """Check everything a restore relies on; raise a ``BadArchive`` naming the first fault.
    Cheap checks (structure, declared sizes) come before any member is inflated."""
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
        members = zf.infolist()
        _check_budget(name, members, limits)
        folders = _check_layout(name, members)
        _check_data(name, zf, members, limits.max_bytes)
        if MANIFEST not in zf.namelist():
            raise NoManifest(f"{name} has no {MANIFEST}: it is not a wafleet backup")
        manifest = _read_json(name, zf, MANIFEST, limits.max_manifest_bytes)
        if manifest is None:
            raise BadManifest(f"{name}: {MANIFEST} is not valid JSON")
        if not isinstance(manifest, dict) or not isinstance(manifest.get("sessions"), list):
            raise BadManifest(f"{name}: {MANIFEST} has no session list")
        if not isinstance(manifest.get("format"), int) or manifest["format"] > FORMAT:
            raise BadManifest(f"{name}: {MANIFEST} is of an unknown format (newer wafleet?)")
        if not folders:
            raise NoSessions(f"{name} has no session folders: restoring it would empty the fleet")
        metas = {
            sid: (
                _read_json(name, zf, f"{SESSIONS_PREFIX}/{sid}/{session_files.SESSION_FILE}")
                if session_files.SESSION_FILE in files
                else None
            )
            for sid, files in folders.items()
        }
    return Contents(manifest, metas)


def _check_budget(name: str, members: list[zipfile.ZipInfo], limits: Limits) -> None:
    if len(members) > limits.max_files:
        raise TooManyFiles(
            f"{name} has {len(members)} members, more than BACKUP_MAX_FILES={limits.max_files}"
        )
    declared = sum(m.file_size for m in members)
    if declared > limits.max_bytes:
        raise TooLarge(
            f"{name} would unpack to {declared} bytes, more than "
            f"BACKUP_MAX_BYTES={limits.max_bytes}"
        )


def _check_layout(name: str, members: list[zipfile.ZipInfo]) -> dict[str, set[str]]:
    """Every member's path is safe and unique, and session folders are folders. Returns each
    session folder's files (relative paths)."""
    folders: dict[str, set[str]] = {}
    files: set[tuple[str, ...]] = set()
    seen: set[tuple[str, ...]] = set()
    parents: set[tuple[str, ...]] = set()  # every folder a member's path implies
    for member in members:
        parts = tuple(_check_member(name, member))
        key = (*parts, "/") if member.is_dir() else parts
        if key in seen:
            raise DuplicateMember(f"{name}: {member.filename!r} is stored more than once")
        seen.add(key)
        parents.update(parts[:i] for i in range(1, len(parts) + member.is_dir()))
        if member.is_dir() or parts in ((MANIFEST,), (AUDIT,)):
            continue
        if len(parts) <= 2:  # "sessions" or "sessions/<id>" as a file
            raise NotAFolder(f"{name}: {member.filename!r} is a file where a folder should be")
        files.add(parts)
        folders.setdefault(parts[1], set()).add("/".join(parts[2:]))
    for parts in seen:
        if parts[-1] == "/" and len(parts) >= 3:
            folders.setdefault(parts[1], set())
    clash = files & parents
    if clash:
        raise NotAFolder(f"{name}: {'/'.join(min(clash))!r} is a file where a folder should be")
    return folders


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
    if parts in ([MANIFEST], [AUDIT]):
        return parts
    if (
        not parts
        or parts[0] != SESSIONS_PREFIX
        or (len(parts) >= 2 and not FOLDER_NAME.fullmatch(parts[1]))
    ):
        raise UnexpectedMember(
            f"{archive}: member {raw!r} is neither the manifest, the audit trail nor in a "
            "session folder"
        )
    return parts


def _check_data(name: str, zf: zipfile.ZipFile, members: list[zipfile.ZipInfo], cap: int) -> None:
    """Inflate every member once: CRCs must match, and the bytes really produced are counted
    against ``cap`` whatever the headers declared."""
    total = 0
    try:
        for member in members:
            if member.is_dir():
                continue
            with zf.open(member) as src:
                for chunk in _chunks(src):
                    total += len(chunk)
                    if total > cap:
                        raise TooLarge(f"{name} unpacks to more than BACKUP_MAX_BYTES={cap}")
    except _UNREADABLE as exc:
        raise CorruptArchive(f"{name} is damaged or truncated: {_why(exc)}") from None


def _why(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _chunks(src: BinaryIO | Any) -> Iterator[bytes]:
    while chunk := src.read(CHUNK):
        yield chunk


def _read_json(name: str, zf: zipfile.ZipFile, member: str, cap: int = SESSION_FILE_MAX) -> Any:
    """A JSON member read with a size cap (None when it is not JSON)."""
    with zf.open(member) as src:
        data = src.read(cap + 1)
    if len(data) > cap:
        if member == MANIFEST:
            raise ManifestTooLarge(
                f"{name}: {MANIFEST} is larger than BACKUP_MAX_MANIFEST_BYTES={cap}"
            )
        raise BadManifest(f"{name}: {member!r} is larger than {cap} bytes")
    try:
        return json.loads(data)
    except ValueError:
        return None


# extracting and swapping ------------------------------------------------------------------


def extract(path: Path, target: Path, max_bytes: int) -> None:
    """Extract the session folders (already checked by ``inspect``) into ``target``, counting
    the bytes written against ``max_bytes`` once more: never trust a check twice removed."""
    target.mkdir(mode=0o700)
    root = target.resolve()
    written = 0
    with zipfile.ZipFile(path) as zf:
        for member in zf.infolist():
            parts = [p for p in member.filename.split("/") if p not in ("", ".")]
            if parts[0] != SESSIONS_PREFIX or len(parts) < 2:
                continue
            dest = root.joinpath(*parts[1:])
            if not dest.resolve().is_relative_to(root):
                raise PathTraversal(f"member {member.filename!r} escapes the target")
            if member.is_dir():
                dest.mkdir(parents=True, exist_ok=True, mode=0o700)
                continue
            dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out, zf.open(member) as src:
                for chunk in _chunks(src):
                    written += len(chunk)
                    if written > max_bytes:
                        raise TooLarge(
                            f"{path.name} unpacks to more than BACKUP_MAX_BYTES={max_bytes}"
                        )
                    out.write(chunk)
