"""How the send route's three bodies appear in the OpenAPI document.

One route takes a text (JSON), a media file in base64 (JSON) and a media file as
``multipart/form-data``; ``SendBody`` is the text body of api/body.py (what ``check``
enforces for a text) that documents all three.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from api.body import Body
from api.schema import JSON, obj
from core.media.check import MAX_FILENAME
from core.media.registry import KINDS
from core.message_media import MAX_CAPTION
from core.messages import MAX_IDEMPOTENCY_KEY

MULTIPART = "multipart/form-data"
_TO = {"type": "string", "example": "14155550123"}
_KIND = {"type": "string", "enum": list(KINDS)}
_CAPTION = {"type": "string", "maxLength": MAX_CAPTION}
_KEY = {"type": "string", "minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY}
_FILENAME = {"type": "string", "minLength": 1, "maxLength": MAX_FILENAME}

MEDIA_JSON = obj(
    {
        "to": _TO,
        "media": obj(
            {
                "kind": _KIND,
                "data": {
                    "type": "string",
                    "format": "byte",
                    "description": "the file in base64; up to the kind's MEDIA_MAX_BYTES_*",
                },
                "filename": _FILENAME,
            },
            required=["kind", "data"],
            additionalProperties=False,
        ),
        "caption": _CAPTION,
        "idempotencyKey": _KEY,
    },
    required=["to", "media"],
    additionalProperties=False,
)
MEDIA_FORM = obj(
    {
        "to": _TO,
        "kind": _KIND,
        "caption": _CAPTION,
        "idempotencyKey": _KEY,
        "filename": _FILENAME,
        "file": {"type": "string", "format": "binary"},
    },
    required=["to", "kind", "file"],
    additionalProperties=False,
    description="to and kind before the file part; the file is streamed, never held whole",
)
MEDIA_VIEW = obj(
    {
        "kind": _KIND,
        "mime": {"type": "string"},
        "size": {"type": "integer"},
        "sha256": {"type": "string"},
        "filename": {"type": "string"},
    },
    description="a media message's file",
)


@dataclass(frozen=True, eq=False)
class SendBody(Body):
    """The text body, documented beside the two media bodies."""

    def request_body(self) -> dict[str, Any]:
        return {
            "required": True,
            "content": {
                JSON: {"schema": {"oneOf": [self.schema(), MEDIA_JSON]}},
                MULTIPART: {"schema": MEDIA_FORM},
            },
        }
