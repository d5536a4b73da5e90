"""What a message carrying a file adds to a text: its caption's rule, and what the worker's
command says of the file (core/messages.py keeps the record and the queue)."""

from __future__ import annotations

from typing import Any

from core import text
from core.errors import InvalidInput
from core.media import Media

MAX_CAPTION = 1024  # WhatsApp's own limit for a media message's caption


def check_caption(value: object) -> str:
    """A media message's caption: optional ('' for none), at most ``MAX_CAPTION``."""
    if value is None or value == "":
        return ""
    if not isinstance(value, str) or len(value) > MAX_CAPTION:
        raise InvalidInput(f"caption must be a string of at most {MAX_CAPTION} characters")
    return text.check(value, "caption")


async def command_media(media: Media, media_id: object) -> dict[str, Any] | None:
    """The file as the worker's command names it (None: its record is gone). A fresh link
    each time the message is handed out: a worker that comes back after a link's time
    still fetches the file."""
    record = await media.registry.get(str(media_id))
    if record is None:
        return None
    return {**record.public(), "url": media.url(record)}
