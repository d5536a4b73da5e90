"""Media that customers send to the fleet's numbers, from a worker's event to the operator.

A worker uploads the file first (``PUT /worker/media/<sha256>``, api/worker_media.py, into
``MEDIA_DIR``) and only then posts its ``MESSAGE_IN``, whose ``data.media`` describes it
(``kind``, ``mime``, ``size``, ``sha256``, ``filename``?). Taking that event in, ``serve``
checks the file is really there (``MediaMissing`` otherwise: a 503, so the worker uploads
again and retries) and names it with a media record *before* the event enters the operator's
stream, so no event in the stream names a file without a record. The record's id is
derived from the event's id (``stable_media_id``): a worker's resend, a redelivery and every
replica agree on it without asking Redis. It lives ``MESSAGE_RETENTION_DAYS`` from the
message's arrival, the same as a sent message's record; the file goes with its last record
(core/media/registry.py).

The link is made when the event leaves (``dress``), not when it is stored: a link lives
``MEDIA_URL_TTL_S``, a delivery may be retried for hours, and each attempt (and each page of
``?since=``) carries one valid from that moment.
"""

from __future__ import annotations

from typing import Any

from core import text
from core.errors import InvalidInput, WafleetError
from core.media import Media
from core.media.links import stable_media_id
from core.media.registry import KINDS, MediaRecord
from core.media.store import SHA256

MAX_MIME = 255
MAX_FILENAME = 255
DAY_S = 24 * 3600


class MediaMissing(WafleetError):
    """The event names a file ``serve`` does not have (yet): the worker uploads it again."""

    code = "media_missing"


def check(media: object) -> dict[str, Any]:
    """``data.media`` of a ``MESSAGE_IN``, checked before anything is written."""
    if not isinstance(media, dict):
        raise InvalidInput("data.media must be an object")
    if media.get("kind") not in KINDS:
        raise InvalidInput(f"data.media.kind must be one of {', '.join(KINDS)}")
    mime = media.get("mime")
    if not isinstance(mime, str) or not 1 <= len(mime) <= MAX_MIME or "/" not in mime:
        raise InvalidInput("data.media.mime must be a MIME type")
    size = media.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise InvalidInput("data.media.size must be a positive number of bytes")
    if not isinstance(media.get("sha256"), str) or not SHA256.fullmatch(media["sha256"]):
        raise InvalidInput("data.media.sha256 must be 64 lowercase hex digits")
    filename = media.get("filename")
    if filename is not None and (
        not isinstance(filename, str) or not 1 <= len(filename) <= MAX_FILENAME
    ):
        raise InvalidInput(f"data.media.filename must be 1-{MAX_FILENAME} characters")
    text.check_tree(media, "data.media")
    return media


def operator_event_id(session_id: str, worker_event_id: str) -> str:
    """The id the operator sees for a worker's event (core/event_log.py makes it so)."""
    return f"{session_id}.{worker_event_id}"


class IncomingMedia:
    def __init__(self, media: Media, webhook_secret: str, retention_days: int) -> None:
        self.media = media
        self._secret = webhook_secret
        self.retention_s = retention_days * DAY_S

    def media_id(self, event_id: str) -> str:
        """The media id of the file of the operator's event ``event_id``: the same always."""
        return stable_media_id(self._secret, event_id)

    async def register(
        self, session_id: str, worker_event_id: str, media: dict[str, Any], now: int
    ) -> MediaRecord:
        """Name the uploaded file for this event (idempotent), or ``MediaMissing``."""
        stored = self.media.store
        path = stored.path_of(media["sha256"])
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise MediaMissing(
                "the message's file is not uploaded yet: upload it, then retry"
            ) from None
        if size != media["size"]:
            raise InvalidInput("data.media.size is not the size of the uploaded file")
        record = MediaRecord(
            id=self.media_id(operator_event_id(session_id, worker_event_id)),
            sha256=media["sha256"],
            kind=media["kind"],
            mime=media["mime"],
            size=size,
            session=session_id,
            direction="in",
            created=now,
            filename=media.get("filename"),
        )
        return await self.media.registry.add(record, ttl_s=self.retention_s)

    def dress(self, body: dict[str, Any], base_url: str | None = None) -> dict[str, Any]:
        """An operator event as it leaves: a ``MESSAGE_IN`` with a file gets its link."""
        data = body.get("data")
        if body.get("type") != "MESSAGE_IN" or not isinstance(data, dict):
            return body
        media = data.get("media")
        if not isinstance(media, dict):
            return body
        exp = self.media.clock.now_ms() // 1000 + self.media.url_ttl_s
        url = self.media.links.url(
            base_url or self.media.base_url, self.media_id(str(body["id"])), exp
        )
        return {**body, "data": {**data, "media": {**media, "url": url}}}
