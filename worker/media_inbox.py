"""Files that arrived with incoming messages, kept in the session folder until ``serve`` has
them: ``<session folder>/media-in/<sha256>``.

The promise is the same as for a text: a message is acknowledged to the network only once it
is the worker's for good, so its file is on disk (written to a temporary name, fsynced,
renamed into place, the folder fsynced) *before* its ``MESSAGE_IN`` goes into the outbox, and
the event names the file by its hash. A worker killed anywhere after that finds both on
start and sends them; one killed before it never acknowledged, and the network sends again.
A file goes once no event still waiting in the outbox names it (two messages with the same
bytes share one file), and the start sweeps files no waiting event names (a crash between
an event's leaving and its file's removal).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("wafleet.worker.media")

MEDIA_IN = "media-in"
_SHA256 = re.compile(r"[0-9a-f]{64}", re.ASCII)
HEAD_BYTES = 8192  # what libmagic reads of a file


@dataclass(frozen=True)
class IncomingFile:
    """A file as a driver received it. ``mime``: what the network said, if it said (else
    it is told from the bytes)."""

    kind: str
    data: bytes
    filename: str | None = None
    mime: str | None = None


def media_of(event: dict[str, Any]) -> dict[str, Any] | None:
    """The ``media`` descriptor of a ``MESSAGE_IN`` event, or None."""
    data = event.get("data")
    if event.get("type") != "MESSAGE_IN" or not isinstance(data, dict):
        return None
    media = data.get("media")
    if not isinstance(media, dict) or not _SHA256.fullmatch(str(media.get("sha256", ""))):
        return None
    return media


class MediaInbox:
    """The session's ``media-in`` folder (memory-less: the outbox is what names a file)."""

    def __init__(self, session_dir: Path) -> None:
        self.folder = session_dir / MEDIA_IN

    def path_of(self, sha256: str) -> Path:
        if not _SHA256.fullmatch(sha256):
            raise ValueError("not a sha256 hex digest")
        return self.folder / sha256

    def keep(self, file: IncomingFile) -> dict[str, Any]:
        """Write ``file`` durably; the event's ``media`` descriptor. ``OSError`` when the
        disk refused: then the message is not taken (and not acknowledged)."""
        sha256 = hashlib.sha256(file.data).hexdigest()
        final = self.path_of(sha256)
        if not final.is_file() or final.stat().st_size != len(file.data):
            self.folder.mkdir(parents=True, exist_ok=True)
            temp = self.folder / f".{secrets.token_hex(8)}.part"
            try:
                fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                try:
                    view = memoryview(file.data)
                    while view:
                        view = view[os.write(fd, view) :]
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.replace(temp, final)
            finally:
                temp.unlink(missing_ok=True)
            _fsync_dir(self.folder)
        media: dict[str, Any] = {
            "kind": file.kind,
            "mime": file.mime or mime_of(file.data[:HEAD_BYTES]),
            "size": len(file.data),
            "sha256": sha256,
        }
        if file.filename:
            media["filename"] = file.filename
        return media

    def has(self, sha256: str) -> bool:
        return self.path_of(sha256).is_file()

    def discard(self, sha256: str) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.path_of(sha256).unlink()

    def sweep(self, named: Callable[[str], bool]) -> int:
        """Remove files no waiting event names (``named(sha256)``), and torn temporaries."""
        if not self.folder.is_dir():
            return 0
        removed = 0
        for path in self.folder.iterdir():
            if _SHA256.fullmatch(path.name) and named(path.name):
                continue
            with contextlib.suppress(OSError):
                path.unlink()
                removed += 1
        if removed:
            log.info("media-in: %d file(s) no waiting event names removed", removed)
        return removed


def mime_of(head: bytes) -> str:
    """The file's type told by its first bytes (libmagic), as core/media/sniff.py tells it
    for ``serve``; that module is not imported here: its package needs Redis, which a
    worker image does not have. Loaded on the first file, not at every worker's start."""
    import magic

    found = magic.Magic(mime=True).from_buffer(head) if head else "application/x-empty"
    return str(found or "application/octet-stream")


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
