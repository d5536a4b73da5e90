"""A media message for whatsmeow: the file uploaded (encrypted by whatsmeow), then a message
naming the upload, as whatsmeow's own clients and neonize's ``build_*_message`` do.

neonize's builders cannot be used as they are: they import PIL and ffmpeg into the worker
(a thumbnail, a duration) and sniff the type again. Here the type is the one serve found
and checked, the upload is the slim client's (the same Go call), and the message carries
what WhatsApp needs to fetch and check the file: its URL and direct path, the media key,
the SHA-256 of the plaintext and of the encrypted file, the length and the type. A voice
note is an audio message with ``PTT``; a document carries its file name.

The upload's own hash and length must be the file's (checked by the worker against serve's):
a short read or a changed file is refused here rather than sent.
"""

from __future__ import annotations

from typing import Any

from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import (
    AudioMessage,
    DocumentMessage,
    ImageMessage,
    Message,
    VideoMessage,
)

from worker.drivers.base import OutgoingMedia, SendFailed

# whatsmeow's MediaType (neonize.utils.enum.MediaType), by our kind: which key the file is
# encrypted with and which upload path it takes.
VOICE_MIME = "audio/ogg; codecs=opus"
UPLOAD_TYPE = {"image": 0, "video": 1, "audio": 2, "voice": 2, "document": 3}


def upload_type(kind: str) -> int:
    return UPLOAD_TYPE[kind]


def build_message(media: OutgoingMedia, upload: Any) -> Message:
    """The message for ``media`` once whatsmeow uploaded it (``upload``: its
    ``UploadResponse``); ``SendFailed`` if the upload is not of this file."""
    if int(upload.FileLength) != media.size or bytes(upload.FileSHA256).hex() != media.sha256:
        raise SendFailed("media_corrupt")
    common: dict[str, Any] = {
        "URL": upload.url,
        "directPath": upload.DirectPath,
        "mediaKey": upload.MediaKey,
        "fileEncSHA256": upload.FileEncSHA256,
        "fileSHA256": upload.FileSHA256,
        "fileLength": upload.FileLength,
        "mimetype": media.mime,
    }
    caption = media.caption or None
    if media.kind == "image":
        return Message(imageMessage=ImageMessage(caption=caption, **common))
    if media.kind == "video":
        return Message(videoMessage=VideoMessage(caption=caption, **common))
    if media.kind == "voice":
        common["mimetype"] = VOICE_MIME  # what WhatsApp's voice player expects
    if media.kind in ("audio", "voice"):
        # WhatsApp shows no caption on audio: a caption the operator gave is not sent.
        return Message(audioMessage=AudioMessage(PTT=media.kind == "voice", **common))
    name = media.filename or "file"
    return Message(
        documentMessage=DocumentMessage(caption=caption, fileName=name, title=name, **common)
    )
