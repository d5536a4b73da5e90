"""A session's folder: the driver's auth files plus wafleet's ``session.json``.

``session.json`` (``id``, ``phone``, ``proxy``, ``created``) is what lets a restore rebuild
Redis from the folders alone, so it is rewritten whenever one of those fields changes.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from core.events import MESSAGE_EVENTS

SESSION_FILE = "session.json"
# The worker's events not yet taken by serve (worker/outbox.py): one JSON object a line.
OUTBOX_FILE = "outbox.jsonl"
# The files of incoming messages whose events are in the outbox (worker/media_inbox.py).
MEDIA_IN_DIR = "media-in"


def folder(sessions_dir: Path, session_id: str) -> Path:
    return sessions_dir / session_id


class MetaSource(Protocol):
    """What ``session.json`` is written from: a ``SessionRecord``, a restore's planned
    session, or a ``Meta`` for a session that has no record yet."""

    @property
    def id(self) -> str: ...
    @property
    def phone(self) -> str | None: ...
    @property
    def proxy(self) -> str: ...
    @property
    def created(self) -> int: ...


@dataclass(frozen=True)
class Meta:
    """``session.json``'s fields, for a session just reserved (its record is not read)."""

    id: str
    phone: str | None
    proxy: str
    created: int


async def write_record_meta(
    sessions_dir: Path,
    record: MetaSource,
    *,
    phone: str | None = None,
    proxy: str | None = None,
) -> None:
    """Write ``record``'s ``session.json`` into its folder, off the event loop. ``phone`` or
    ``proxy`` (None: the record's) is the value that just changed and is not in ``record``
    yet: the phone a worker linked, the proxy a session moved to."""
    await asyncio.to_thread(
        _write_meta,
        folder(sessions_dir, record.id),
        record.id,
        record.phone if phone is None else phone,
        record.proxy if proxy is None else proxy,
        record.created,
    )


def _write_meta(path: Path, session_id: str, phone: str | None, proxy: str, created: int) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    data = {"id": session_id, "phone": phone, "proxy": proxy, "created": created}
    tmp = path / f".{SESSION_FILE}.tmp"
    # The proxy URL carries its password: owner-only, written whole or not at all.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle)
    tmp.replace(path / SESSION_FILE)


def read_meta(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((path / SESSION_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def carry_outboxes(old_dir: Path, sessions_dir: Path) -> int:
    """A restore swapped ``sessions_dir``'s folders for the backup's (the live ones now in
    ``old_dir``): carry each live folder's unsent message events over to the restored folder
    of the same session, whose worker then delivers them; how many.

    Backups leave the outbox out, so without this a message that reached a worker but not
    yet ``serve`` (serve away, the worker stopped before it could send) would be lost with
    the replaced folder. Message events only: their ids make a second delivery harmless, and
    they are news whenever they arrive; the life-cycle events of a process the restore
    replaced (its QR, its connection) are stale. A session the backup does not hold has no
    folder to carry them to: its events go with it, as the session does. The file of an
    incoming message (``media-in/<sha256>``) goes with its event.
    """
    carried = 0
    for source in sorted(old_dir.glob(f"*/{OUTBOX_FILE}")):
        target = sessions_dir / source.parent.name
        if not target.is_dir():
            continue
        lines = [
            line
            for line in source.read_bytes().splitlines()
            if _message_event_of(line, source.parent.name)
        ]
        if lines:
            _carry_media(source.parent, target, lines)
            fd = os.open(target / OUTBOX_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            with os.fdopen(fd, "ab") as handle:
                handle.write(b"".join(line + b"\n" for line in lines))
                handle.flush()
                os.fsync(handle.fileno())
            carried += len(lines)
    return carried


def _carry_media(source: Path, target: Path, lines: list[bytes]) -> None:
    """Move the files the carried events name (before the events: an event must never
    name a file its folder does not hold)."""
    for line in lines:
        data = json.loads(line).get("data")
        media = data.get("media") if isinstance(data, dict) else None
        sha256 = media.get("sha256") if isinstance(media, dict) else None
        if not isinstance(sha256, str) or not sha256.isalnum() or len(sha256) != 64:
            continue
        found = source / MEDIA_IN_DIR / sha256
        if found.is_file():
            (target / MEDIA_IN_DIR).mkdir(mode=0o700, exist_ok=True)
            shutil.copy2(found, target / MEDIA_IN_DIR / sha256)


def _message_event_of(line: bytes, session_id: str) -> bool:
    try:
        event = json.loads(line)
    except ValueError:  # a line torn by a crash was never taken
        return False
    return (
        isinstance(event, dict)
        and event.get("sessionId") == session_id
        and event.get("type") in MESSAGE_EVENTS
    )
