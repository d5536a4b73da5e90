"""What simwa makes of a file a device sends: counted and hashed as it streams in, never kept.

A device sends a media message as one JSON frame, then the file's bytes in binary frames
of any size, in order, until ``size`` bytes came:

  ``{"op": "send_media", "id", "to", "text"?, "media": {"kind", "mime", "size",
  "filename"?}}`` then binary frames; the answer is ``sent`` / ``send_error`` as for a text.

So neither side holds a whole file and no frame is large (WhatsApp's own clients upload
the file apart from the message, too). What the network records of it is what a test
compares with the original: ``{"kind", "size", "sha256", "filename"?}``, the caption as the
entry's ``text``. An upload belongs to its connection: a connection that closes midway
leaves nothing, and the device sends the message again on its next one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

KINDS = frozenset({"image", "document", "audio", "voice", "video"})
MAX_MEDIA_BYTES = 100 * 1024 * 1024  # WhatsApp's largest (a document's)
MAX_CAPTION = 1024


@dataclass
class Upload:
    id: str
    to: str
    caption: str
    kind: str
    mime: str
    size: int
    filename: str | None
    received: int = 0
    digest: Any = field(default_factory=hashlib.sha256)

    def media(self) -> dict[str, Any]:
        """What ``GET /control/messages`` shows of the file."""
        shown: dict[str, Any] = {"kind": self.kind, "size": self.size}
        shown["sha256"] = self.digest.hexdigest()
        if self.filename:
            shown["filename"] = self.filename
        return shown


class MediaReceiver:
    """The upload in progress on one connection (at most one: a device sends in turn)."""

    def __init__(self) -> None:
        self.current: Upload | None = None

    def start(self, event: dict[str, Any]) -> str | None:
        """A ``send_media`` frame: None when the bytes may follow, else the reason it is
        refused (``send_error``). A new start drops an unfinished upload."""
        self.current = None
        mid, to, caption = event.get("id"), event.get("to"), event.get("text") or ""
        media = event.get("media")
        if not isinstance(mid, str) or not 1 <= len(mid) <= 128 or not isinstance(to, str):
            return "invalid_media"
        if not isinstance(media, dict) or media.get("kind") not in KINDS:
            return "invalid_media"
        size, name = media.get("size"), media.get("filename")
        if not isinstance(size, int) or isinstance(size, bool) or not 0 < size <= MAX_MEDIA_BYTES:
            return "invalid_media"
        if not isinstance(caption, str) or len(caption) > MAX_CAPTION:
            return "invalid_text"
        if name is not None and not isinstance(name, str):
            return "invalid_media"
        self.current = Upload(
            mid, to, caption, str(media["kind"]), str(media.get("mime", "")), size, name
        )
        return None

    def feed(self, data: bytes) -> Upload | None:
        """Bytes of the current upload; the upload once complete (None before, and for bytes
        no upload expects, which are dropped)."""
        upload = self.current
        if upload is None:
            return None
        take = data[: upload.size - upload.received]
        upload.digest.update(take)
        upload.received += len(take)
        if upload.received < upload.size:
            return None
        self.current = None
        return upload


def record(sent: dict[str, dict[str, Any]], upload: Upload, now_ms: int) -> bool:
    """Into the phone's log of what it sent (by id); False when the id is there already (a
    resend of the same message: answered, not recorded or carried again)."""
    if upload.id in sent:
        return False
    sent[upload.id] = {
        "id": upload.id,
        "to": upload.to,
        "text": upload.caption,
        "media": upload.media(),
        "timestamp": now_ms,
    }
    return True
