"""The worker's outbox on its own (worker/outbox.py): what is on disk, what a restart reads
back, what a full outbox refuses, and the event ids a redelivered frame must keep."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from core.backups.on_disk import copy_folder
from core.events import event_id
from worker import outbox as outbox_module
from worker.outbox import OUTBOX_FILE, Outbox

SID = "worker_1"


def _event(n: int, kind: str = "MESSAGE_IN", session_id: str = SID) -> dict[str, Any]:
    data = {"messageId": f"M{n}", "from": "14155550123", "text": f"text {n}", "timestamp": n}
    return {"id": f"event{n:04d}", "sessionId": session_id, "type": kind, "data": data}


def _drain(box: Outbox) -> list[str]:
    ids = []
    while (head := box.head()) is not None:
        ids.append(head["id"])
        box.pop()
    return ids


def test_what_was_taken_is_on_disk_and_a_new_process_sends_it_first_in_order(
    tmp_path: Path,
) -> None:
    box = Outbox(tmp_path, SID, 1 << 20)
    for n in range(5):
        assert box.put(_event(n), bounded=True)
    box.pop()  # the first one left before the "crash"
    lines = (tmp_path / OUTBOX_FILE).read_text().splitlines()
    assert json.loads(lines[-1])["id"] == "event0004"
    again = Outbox(tmp_path, SID, 1 << 20)  # the next process
    # the sent head may come again (its removal was not yet written): serve drops repeats
    assert _drain(again)[-4:] == [f"event{n:04d}" for n in range(1, 5)]
    assert not (tmp_path / OUTBOX_FILE).exists()  # all sent: the file is gone


def test_a_line_the_process_died_writing_is_not_an_event(tmp_path: Path) -> None:
    box = Outbox(tmp_path, SID, 1 << 20)
    box.put(_event(1), bounded=True)
    with (tmp_path / OUTBOX_FILE).open("ab") as handle:
        handle.write(b'{"id": "torn", "sessionId": "wor')
    again = Outbox(tmp_path, SID, 1 << 20)
    assert again.put(_event(2), bounded=True)
    assert _drain(Outbox(tmp_path, SID, 1 << 20)) == ["event0001", "event0002"]


def test_another_sessions_lines_are_never_sent(tmp_path: Path) -> None:
    """A folder copied in from elsewhere (a restore) must not replay another session's
    events as this one's."""
    foreign = Outbox(tmp_path, "worker_9", 1 << 20)
    foreign.put(_event(9, session_id="worker_9"), bounded=True)
    mine = Outbox(tmp_path, SID, 1 << 20)
    mine.put(_event(1), bounded=True)
    assert _drain(Outbox(tmp_path, SID, 1 << 20)) == ["event0001"]


def test_a_full_outbox_refuses_messages_but_never_drops_what_it_took(tmp_path: Path) -> None:
    line = len(json.dumps(_event(0), separators=(",", ":"))) + 1
    box = Outbox(tmp_path, SID, 3 * line + 10)
    assert [box.put(_event(n), bounded=True) for n in range(4)] == [True, True, True, False]
    # a life-cycle event is written all the same: refusing it would lose it
    assert box.put(_event(5, kind="DISCONNECTED"), bounded=False)
    box.pop()
    box.pop()
    assert box.put(_event(6), bounded=True)  # room again
    kept = _drain(Outbox(tmp_path, SID, 1 << 20))
    assert kept[-3:] == ["event0002", "event0005", "event0006"]


def test_a_long_backlog_is_compacted_as_it_drains(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr(outbox_module, "COMPACT_AFTER_BYTES", 1000)
    box = Outbox(tmp_path, SID, 1 << 20)
    for n in range(100):
        box.put(_event(n), bounded=True)
    path = tmp_path / OUTBOX_FILE
    full = path.stat().st_size
    for _ in range(60):
        box.pop()
    assert path.stat().st_size < full * 0.6  # the sent head was cut away
    assert _drain(Outbox(tmp_path, SID, 1 << 20))[0] in {f"event{n:04d}" for n in range(50, 61)}


def test_a_redelivered_frame_is_the_same_event() -> None:
    message = {"messageId": "SIMABC", "from": "14155550123", "text": "hi", "bootId": "a" * 16}
    again = {**message, "bootId": "b" * 16, "timestamp": 5}  # another process took it
    assert event_id("MESSAGE_IN", message) == event_id("MESSAGE_IN", again)
    assert event_id("MESSAGE_IN", message) != event_id("MESSAGE_IN", {**message, "from": "1"})
    delivered = {"messageId": "abc", "status": "delivered"}
    read = {"messageId": "abc", "status": "read"}
    assert event_id("MESSAGE_STATUS", read) == event_id("MESSAGE_STATUS", dict(read))
    assert event_id("MESSAGE_STATUS", read) != event_id("MESSAGE_STATUS", delivered)
    assert event_id("PING", {}) != event_id("PING", {})
    assert all(len(event_id(k, read)) == 40 for k in ("MESSAGE_IN", "MESSAGE_STATUS"))


def test_a_backup_leaves_the_outbox_out(tmp_path: Path) -> None:
    """A restore must not replay old events as new ones: the archive never carries them."""
    folder = tmp_path / "sessions" / SID
    folder.mkdir(parents=True)
    (folder / "creds.json").write_text("{}")
    Outbox(folder, SID, 1 << 20).put(_event(1), bounded=True)
    copy_folder(folder, tmp_path / "staging" / SID)
    assert sorted(p.name for p in (tmp_path / "staging" / SID).iterdir()) == ["creds.json"]
