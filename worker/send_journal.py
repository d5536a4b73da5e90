"""A write-ahead journal of what the worker sent, for a driver that cannot choose the
WhatsApp message id (neonize 0.5.2's ``SendMessage`` takes no id: whatsmeow picks one).

Before a message leaves, ``<our id> sending`` is written and synced; once WhatsApp accepted
it, ``<our id> sent <WhatsApp id>``. A command handed out again after a crash then finds
``sent`` (report it sent, do not send it again) or only ``sending`` (the worker died between
the two lines: the message may be at WhatsApp, so it is reported ``failed: uncertain``
rather than sent a second time: at most once). The WhatsApp ids also map receipts back to
our ids. One small file in the session folder, read once per process.
"""

from __future__ import annotations

import os
from pathlib import Path

JOURNAL_FILE = "sent.journal"
KEEP_LINES = 5_000  # compacted to this many entries when it grows past twice as many


class SendJournal:
    def __init__(self, folder: Path) -> None:
        self.path = folder / JOURNAL_FILE
        self.state: dict[str, str | None] = {}  # our id -> WhatsApp id (None: sending)
        self.by_wa_id: dict[str, str] = {}
        self._lines = 0
        try:
            text = self.path.read_text()
        except OSError:
            text = ""
        for line in text.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1] == "sending":
                self.state.setdefault(parts[0], None)
            elif len(parts) == 3 and parts[1] == "sent":
                self.state[parts[0]] = parts[2]
                self.by_wa_id[parts[2]] = parts[0]
            self._lines += 1

    def sending(self, message_id: str) -> None:
        self.state[message_id] = None
        self._append(f"{message_id} sending")

    def sent(self, message_id: str, wa_message_id: str) -> None:
        self.state[message_id] = wa_message_id
        self.by_wa_id[wa_message_id] = message_id
        self._append(f"{message_id} sent {wa_message_id}")

    def _append(self, line: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, (line + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        self._lines += 1
        if self._lines > 2 * KEEP_LINES:
            self._compact()

    def _compact(self) -> None:
        kept = list(self.state.items())[-KEEP_LINES:]
        self.state = dict(kept)
        self.by_wa_id = {wa: mid for mid, wa in kept if wa}
        lines = [f"{mid} sent {wa}" if wa else f"{mid} sending" for mid, wa in kept]
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("".join(line + "\n" for line in lines))
        tmp.replace(self.path)
        self._lines = len(lines)
