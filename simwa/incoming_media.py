"""Media from an outside number: ``POST /control/message`` with ``"media"`` plays a customer
sending an image, a document, a voice note or a video to a device.

The file travels to the device inside its ``message_in`` frame, base64 in the JSON, as
``"media": {"kind", "data", "size", "sha256", "filename"?}`` (``text`` is the caption). One
frame, like a text message: it stays in the device's queue until acknowledged and is sent
again on every connect until then, so a device that died before writing the file down gets
it again. The WebSocket's message cap on both ends (``WS_MAX_MESSAGE``) fits the largest file.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from typing import Any

KINDS = ("image", "document", "audio", "voice", "video")
# The largest file the network carries: wafleet's largest default limit (a document).
MAX_MEDIA_BYTES = int(os.environ.get("SIMWA_MEDIA_MAX_BYTES", str(100 * 1024 * 1024)))
# A control request or a frame with the largest file in base64, and room for the rest.
MAX_BODY = (MAX_MEDIA_BYTES + 2) // 3 * 4 + 256 * 1024
WS_MAX_MESSAGE = MAX_BODY
MAX_FILENAME = 255


class BadMedia(ValueError):
    """The control request's ``media`` cannot be sent; the message says why."""


def media_frame(value: object) -> dict[str, Any]:
    """What a ``message_in`` frame carries of ``value`` (the control request's ``media``),
    or ``BadMedia``."""
    if not isinstance(value, dict):
        raise BadMedia("media must be an object with kind and data")
    kind, data, filename = value.get("kind"), value.get("data"), value.get("filename")
    if kind not in KINDS:
        raise BadMedia(f"media.kind must be one of {', '.join(KINDS)}")
    if not isinstance(data, str) or not data:
        raise BadMedia("media.data must be the file in base64")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise BadMedia("media.data is not valid base64") from None
    if not raw:
        raise BadMedia("media.data is empty")
    if len(raw) > MAX_MEDIA_BYTES:
        raise BadMedia(f"media is larger than {MAX_MEDIA_BYTES} bytes")
    frame: dict[str, Any] = {
        "kind": kind,
        "data": base64.b64encode(raw).decode("ascii"),
        "size": len(raw),
        "sha256": hashlib.sha256(raw).hexdigest(),
    }
    if filename is not None:
        if not isinstance(filename, str) or not 1 <= len(filename) <= MAX_FILENAME:
            raise BadMedia(f"media.filename must be 1-{MAX_FILENAME} characters")
        frame["filename"] = filename
    return frame
