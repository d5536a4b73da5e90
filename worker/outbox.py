"""The worker's durable outbox: every event but ``PING`` is on disk before it counts as taken.

An incoming message or a receipt is acknowledged to the network (simwa's ``ack``, whatsmeow's
ack after its event handler returns) only once it is here, so from then on it is the worker's
to deliver: a worker killed with events still unsent, or a ``serve`` away for hours, loses
nothing. One JSON line per event (``id``, ``sessionId``, ``type``, ``data``, ``timestamp``),
appended and fsynced; on start the lines are read back in order and sent before anything new.
An event leaves once ``serve`` answered; the file is emptied when everything has left, or
rewritten with what is still to go once most of it is sent. A crash between ``serve``'s
answer and that rewrite sends an event again with its own id, which ``serve`` drops.

The file sits in the session folder (``outbox.jsonl``), the one folder a worker has in every
runner (mounted into containers). A line of another session (a folder copied from elsewhere)
is never sent. The queue is kept in memory as the encoded lines, so a worker's memory grows
with its backlog; ``max_bytes`` bounds both: past it a message event is refused (the driver
stops acknowledging, the network keeps the frame), never dropped. Life-cycle events (small and
rare: a QR, a disconnect) are written even past the bound, since refusing them cannot make
anything resend them. Thread-safe: the neonize driver writes from whatsmeow's event thread.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections import deque
from pathlib import Path
from typing import Any

log = logging.getLogger("wafleet.worker.outbox")

OUTBOX_FILE = "outbox.jsonl"
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
COMPACT_AFTER_BYTES = 1024 * 1024  # sent lines at the head before the file is rewritten


class Outbox:
    """A FIFO of events, mirrored line for line in ``<folder>/outbox.jsonl`` (memory only when
    ``folder`` is None: a client used outside a worker, as in a test of the webhook)."""

    def __init__(self, folder: Path | None, session_id: str, max_bytes: int) -> None:
        self.path = folder / OUTBOX_FILE if folder is not None else None
        self.session_id = session_id
        self.max_bytes = max_bytes
        self._lines: deque[bytes] = deque()
        self._bytes = 0  # what _lines holds
        self._sent_bytes = 0  # lines at the head of the file that already left
        self._lock = threading.Lock()
        self._full = False  # logged once per episode
        self._load()

    def __len__(self) -> int:
        return len(self._lines)

    @property
    def size(self) -> int:
        return self._bytes

    def _load(self) -> None:
        if self.path is None:
            return
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as exc:
            log.error("outbox %s cannot be read (%s): starting without it", self.path, exc)
            return
        whole, _, torn = raw.rpartition(b"\n")
        if torn:  # a write the process died in: never synced, so never counted as taken
            with contextlib.suppress(OSError):
                os.truncate(self.path, len(whole) + 1 if whole else 0)
        foreign = 0
        for line in whole.split(b"\n") if whole else []:
            try:
                event = json.loads(line)
            except ValueError:
                log.warning("outbox: skipping a line that is not JSON")
                continue
            if not isinstance(event, dict) or event.get("sessionId") != self.session_id:
                foreign += 1
                continue
            self._lines.append(line + b"\n")
            self._bytes += len(line) + 1
        if foreign:
            log.warning("outbox: %d line(s) of another session are not sent", foreign)
        self._sent_bytes = len(whole) + 1 - self._bytes if whole else 0
        if self._lines:
            log.info("outbox: %d event(s) from an earlier process to send first", len(self))

    def put(self, event: dict[str, Any], bounded: bool) -> bool:
        """Append ``event`` durably; False (and nothing written) when ``bounded`` and the
        outbox is full, or when the disk refused a bounded one. An unbounded event the disk
        refused is kept in memory: better than nothing, and logged."""
        line = json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
        with self._lock:
            if bounded and self._bytes + len(line) > self.max_bytes:
                if not self._full:
                    self._full = True
                    log.error(
                        "OUTBOX FULL (%d bytes, %d events, cap %d): no longer acknowledging "
                        "messages to the network until serve takes events again",
                        self._bytes,
                        len(self),
                        self.max_bytes,
                    )
                return False
            try:
                self._append(line)
            except OSError as exc:
                log.error("outbox write failed (%s): %s not taken", exc, event.get("type"))
                if bounded:
                    return False
            self._lines.append(line)
            self._bytes += len(line)
            return True

    def head(self) -> dict[str, Any] | None:
        with self._lock:
            if not self._lines:
                return None
            found: dict[str, Any] = json.loads(self._lines[0])
            return found

    def head_lines(self, max_events: int, max_bytes: int) -> list[bytes]:
        """The oldest events as their JSON lines (without the newline), as many as fit in
        ``max_bytes`` and ``max_events``, at least one: what one request carries."""
        taken: list[bytes] = []
        size = 0
        with self._lock:
            for line in self._lines:
                if taken and (len(taken) >= max_events or size + len(line) > max_bytes):
                    break
                taken.append(line[:-1])
                size += len(line)
        return taken

    def pop(self, count: int = 1) -> None:
        """The ``count`` oldest left (``serve`` answered): forget them, and shrink the file
        when worth it."""
        with self._lock:
            if not self._lines:
                return
            for _ in range(min(count, len(self._lines))):
                line = self._lines.popleft()
                self._bytes -= len(line)
                self._sent_bytes += len(line)
            if self._full and self._bytes < self.max_bytes // 2:
                self._full = False
                log.warning("outbox below half its cap again: acknowledging messages")
            try:
                if not self._lines:
                    self._truncate()
                elif self._sent_bytes > max(COMPACT_AFTER_BYTES, self._bytes):
                    self._rewrite()
            except OSError as exc:  # the file keeps sent lines: resent, dropped by serve
                log.warning("outbox could not be shrunk: %s", exc)

    def _append(self, line: bytes) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            _write_all(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)

    def _truncate(self) -> None:
        self._sent_bytes = 0
        if self.path is not None:
            self.path.unlink(missing_ok=True)

    def _rewrite(self) -> None:
        self._sent_bytes = 0
        if self.path is None:
            return
        tmp = self.path.with_name(f".{OUTBOX_FILE}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            _write_all(fd, b"".join(self._lines))
            os.fsync(fd)
        finally:
            os.close(fd)
        tmp.replace(self.path)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
