"""The worker's ``media-in`` folder on its own (worker/media_inbox.py): a file is on disk
before its event is taken, stays while an event in the outbox names it, and follows the
outbox's rules in backups and restores."""

from __future__ import annotations

import hashlib
from pathlib import Path

from core import session_files
from core.backups.on_disk import copy_folder
from worker.media_inbox import MEDIA_IN, IncomingFile, MediaInbox
from worker.outbox import Outbox
from worker.session_loop import SessionLoop
from worker.webhook_client import WebhookClient

SID = "worker_1"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(200)


def test_a_file_is_kept_under_its_hash_with_its_type_told_by_its_bytes(tmp_path: Path) -> None:
    inbox = MediaInbox(tmp_path)
    described = inbox.keep(IncomingFile("image", PNG))
    sha = hashlib.sha256(PNG).hexdigest()
    assert described == {"kind": "image", "mime": "image/png", "size": len(PNG), "sha256": sha}
    assert (tmp_path / MEDIA_IN / sha).read_bytes() == PNG
    # What the network said wins over the bytes; a document keeps its name.
    pdf = inbox.keep(IncomingFile("document", b"%PDF-1.4 x", "a b.pdf", "application/pdf"))
    assert (pdf["mime"], pdf["filename"]) == ("application/pdf", "a b.pdf")
    # The same bytes again: one file.
    assert inbox.keep(IncomingFile("image", PNG))["sha256"] == sha
    assert sorted(p.name for p in (tmp_path / MEDIA_IN).iterdir()) == sorted([sha, pdf["sha256"]])


def test_the_event_is_taken_only_after_its_file_is_on_disk(tmp_path: Path) -> None:
    """The session loop writes the file, then the event naming it."""
    webhook = WebhookClient("http://127.0.0.1:9/webhook", SID, "s", outbox_dir=tmp_path)
    inbox = MediaInbox(tmp_path)
    loop = SessionLoop(None, webhook, 1.0, 1.0, inbox=inbox)  # type: ignore[arg-type]
    assert loop.on_message_in("WA1", "14155550123", "caption", 1, IncomingFile("voice", b"Og"))
    event = webhook.outbox.head()
    assert event is not None
    media = event["data"]["media"]
    assert event["data"]["text"] == "caption"
    assert inbox.path_of(media["sha256"]).read_bytes() == b"Og"
    # A restart reads the event back, and its file is still there.
    again = Outbox(tmp_path, SID, 1 << 20).head()
    assert again is not None and again["data"]["media"] == media


def test_the_sweep_keeps_what_a_waiting_event_names(tmp_path: Path) -> None:
    inbox = MediaInbox(tmp_path)
    kept = inbox.keep(IncomingFile("image", b"one"))["sha256"]
    gone = inbox.keep(IncomingFile("image", b"two"))["sha256"]
    (tmp_path / MEDIA_IN / ".torn.part").write_bytes(b"half")
    box = Outbox(tmp_path, SID, 1 << 20)
    box.put({"id": "e1", "sessionId": SID, "type": "MESSAGE_IN", "data": {"x": kept}}, True)
    assert inbox.sweep(box.mentions) == 2
    assert [p.name for p in (tmp_path / MEDIA_IN).iterdir()] == [kept]
    assert not inbox.has(gone)


def test_backups_leave_media_in_out_and_a_restore_carries_it_with_its_event(
    tmp_path: Path,
) -> None:
    live = tmp_path / "old" / SID
    inbox = MediaInbox(live)
    described = inbox.keep(IncomingFile("video", b"\x00\x00\x00\x18ftypmp42"))
    event = {
        "id": "event0001",
        "sessionId": SID,
        "type": "MESSAGE_IN",
        "data": {"messageId": "M", "from": "1", "text": "", "media": described},
    }
    Outbox(live, SID, 1 << 20).put(event, bounded=True)
    (live / "creds.json").write_text("{}")
    copy_folder(live, tmp_path / "staging" / SID)
    assert sorted(p.name for p in (tmp_path / "staging" / SID).iterdir()) == ["creds.json"]

    restored = tmp_path / "sessions" / SID
    restored.mkdir(parents=True)
    assert session_files.carry_outboxes(tmp_path / "old", tmp_path / "sessions") == 1
    carried = Outbox(restored, SID, 1 << 20).head()
    assert carried is not None and carried["data"]["media"] == described
    assert MediaInbox(restored).path_of(described["sha256"]).read_bytes() == (
        b"\x00\x00\x00\x18ftypmp42"
    )
