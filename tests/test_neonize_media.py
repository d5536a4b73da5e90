"""The neonize driver's media messages, offline: what can be checked without WhatsApp.

No WhatsApp account here, so nothing is uploaded for real: the Go core is stood in for by a
recorder that answers what whatsmeow's ``Upload`` answers (the plaintext's SHA-256 and length,
keys, a path). Checked: the slim client makes neonize's own ``Upload`` call; the message
built from a file carries that file's type, length and hash, in the message type WhatsApp
expects for the kind (a voice note as PTT audio with Opus's type, a document with its name),
field for field as neonize's ``build_document_message`` builds a document; an upload that
is not of the file is refused. Whether WhatsApp then plays the file is not tested here.
"""
# ruff: noqa: E402

from __future__ import annotations

import gc
import hashlib
import subprocess
import warnings

with warnings.catch_warnings():
    # As tests/test_neonize_driver.py: neonize's import leaves an unreaped ``uname`` pipe.
    warnings.simplefilter("ignore", ResourceWarning)
    import neonize.client

    reaper: list[subprocess.Popen[bytes]] = getattr(subprocess, "_active", None) or []
    for orphan in list(reaper):
        orphan.wait()
    reaper.clear()
    gc.collect()

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from neonize.events import ConnectedEv, DisconnectedEv
from neonize.proto.Neonize_pb2 import (
    SendMessageReturnFunction,
    UploadResponse,
    UploadReturnFunction,
)
from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import Message as WAMessage
from neonize.utils.enum import MediaType

from tests import media_samples as samples
from tests.test_neonize_driver import (  # noqa: F401 (fixtures)
    Core,
    Recorder,
    _outcome,
    _start,
    driver,
    session_dir,
    socks_port,
)
from worker.drivers import neonize_slim as slim
from worker.drivers.base import OutgoingMedia, SendFailed
from worker.drivers.neonize import driver as nd
from worker.drivers.neonize.media import VOICE_MIME, build_message, upload_type
from worker.message_ids import wa_id


def _upload_of(data: bytes) -> UploadResponse:
    """What whatsmeow's Upload answers for ``data`` (the keys and path made up)."""
    return UploadResponse(
        url="https://mmg.whatsapp.net/v/t62/abc",
        DirectPath="/v/t62/abc",
        Handle="",
        MediaKey=b"k" * 32,
        FileEncSHA256=hashlib.sha256(b"enc" + data).digest(),
        FileSHA256=hashlib.sha256(data).digest(),
        FileLength=len(data),
    )


class UploadingCore:
    """Stands in for the Go library's ``Upload``: records the call, answers as Go would."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def __getattr__(self, name: str) -> Callable[..., Any]:
        def call(*args: Any) -> Any:
            self.calls.append((name, *args))
            if name == "Upload":
                return UploadReturnFunction(UploadResponse=_upload_of(args[1])).SerializeToString()
            if name == "SendMessage":
                return SendMessageReturnFunction(Error="").SerializeToString()
            return None

        return call


def _media(tmp_path: Path, kind: str, data: bytes, mime: str, **extra: Any) -> OutgoingMedia:
    path = tmp_path / f"{kind}.bin"
    path.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    return OutgoingMedia("14155550123", kind, path, mime, len(data), sha, **extra)


def test_the_slim_upload_is_neonizes_own_go_call() -> None:
    data = samples.pdf()
    theirs, ours = UploadingCore(), UploadingCore()
    full = neonize.client.NewClient("/x/neonize.db", uuid="worker_1#1")
    full._stop_finalizer.detach()
    full._NewClient__client = theirs
    light = slim.SlimClient("/x/neonize.db", uuid="worker_1#1", core=ours)
    light._stop_finalizer.detach()
    assert light.upload(data, upload_type("document")) == full.upload(
        data, MediaType.MediaDocument
    )
    assert ours.calls == theirs.calls == [("Upload", b"worker_1#1", data, len(data), 3)]
    kinds = {"image": MediaType.MediaImage, "video": MediaType.MediaVideo}
    kinds |= {"audio": MediaType.MediaAudio, "voice": MediaType.MediaAudio}
    for kind, wanted in kinds.items():
        assert upload_type(kind) == wanted.value


@pytest.mark.parametrize(
    ("kind", "data", "mime", "field"),
    [
        ("image", samples.image("JPEG"), "image/jpeg", "imageMessage"),
        ("video", samples.mp4(), "video/mp4", "videoMessage"),
        ("audio", samples.mp4(brand=b"M4A "), "audio/x-m4a", "audioMessage"),
        ("voice", samples.ogg_opus(), "audio/ogg", "audioMessage"),
        ("document", samples.pdf(), "application/pdf", "documentMessage"),
    ],
)
def test_the_message_built_from_a_file_names_that_file(
    tmp_path: Path, kind: str, data: bytes, mime: str, field: str
) -> None:
    media = _media(tmp_path, kind, data, mime, filename="a.pdf", caption="see this")
    message = build_message(media, _upload_of(data))
    body = getattr(message, field)
    assert message.HasField(field)
    assert body.fileLength == len(data)
    assert body.fileSHA256 == hashlib.sha256(data).digest()
    assert body.mimetype == (VOICE_MIME if kind == "voice" else mime)
    assert body.URL and body.directPath and body.mediaKey and body.fileEncSHA256
    if kind == "voice":
        assert body.PTT is True
    if kind == "audio":
        assert body.PTT is False
    if kind in ("image", "video", "document"):
        assert body.caption == "see this"
    if kind == "document":
        assert body.fileName == "a.pdf"


def test_a_document_is_built_as_neonize_builds_one(tmp_path: Path) -> None:
    data = samples.pdf(5000)
    core = UploadingCore()
    full = neonize.client.NewClient("/x/neonize.db", uuid="worker_1#1")
    full._stop_finalizer.detach()
    full._NewClient__client = core
    theirs = full.build_document_message(
        data, caption="March", title="invoice.pdf", filename="invoice.pdf"
    ).documentMessage
    media = _media(tmp_path, "document", data, "application/pdf", filename="invoice.pdf")
    ours = build_message(
        OutgoingMedia(**{**media.__dict__, "caption": "March"}), _upload_of(data)
    ).documentMessage
    theirs.ClearField("contextInfo")
    assert ours == theirs


def test_an_upload_that_is_not_of_the_file_is_refused(tmp_path: Path) -> None:
    data = samples.pdf()
    media = _media(tmp_path, "document", data, "application/pdf")
    with pytest.raises(SendFailed, match="media_corrupt"):
        build_message(media, _upload_of(data[:-1]))


async def test_the_driver_uploads_then_sends_once_under_its_journal(
    driver: nd.NeonizeDriver,  # noqa: F811 - the fixture imported above
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """Connected (the Go core played through its callbacks, as in test_neonize_driver.py):
    one Upload of the file's bytes, one SendMessage naming it; the same message handed out
    again is found in the send journal and reaches Go no more."""
    core, listener = Core(driver, monkeypatch), Recorder()
    task = await _start(driver, core, listener)
    await core.status("success")
    await core.event(ConnectedEv(status=True))
    await listener.wait_for(1)
    go = UploadingCore()
    assert driver._attempt is not None
    driver._attempt.client = slim.SlimClient("/x/neonize.db", uuid="worker_1#1", core=go)
    driver._attempt.client._stop_finalizer.detach()
    data = samples.ogg_opus()
    media = _media(tmp_path, "voice", data, "audio/ogg")
    mid = "0123456789abcdef0123456789abcdef"
    await driver.send_media(media, wa_id(mid))
    assert [call[0] for call in go.calls] == ["Upload", "SendMessage"]
    assert go.calls[0][2] == data
    sent = WAMessage.FromString(go.calls[1][4]).audioMessage
    assert (sent.PTT, sent.fileLength, sent.fileSHA256) == (
        True,
        len(data),
        hashlib.sha256(data).digest(),
    )
    await driver.send_media(media, wa_id(mid))
    assert len(go.calls) == 2, "a message the journal holds as sent went again"
    await core.event(DisconnectedEv(status=True))
    await _outcome(task)
