"""A media message's request: JSON with the file in base64, or multipart with a file part.

Both end the same way: every field checked, the session found, then the file streamed
through core/media/intake.py's checks into a temporary file, and only then kept in the
store and named by the message (one Redis script writes both). A refusal at any step
leaves nothing in ``MEDIA_DIR`` and nothing in Redis.

Multipart is the way for big files: its file part is streamed to disk in chunks as it
arrives, never held in memory. A JSON body must be read whole before it can be parsed (up
to the base64 of the largest kind's limit); its ``data`` is then decoded in slices into the
file, so the decoded bytes are never a second copy in memory.
"""

from __future__ import annotations

import binascii
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import BodyPartReader, web

from api.body import MAX_BODY, only
from api.context import SERVICE, SETTINGS
from api.media import MEDIA
from core import text
from core.errors import InvalidInput, MediaTooLarge
from core.media.check import check_filename, check_kind
from core.media.intake import Received, receive
from core.media.links import new_media_id
from core.media.registry import KINDS, MediaRecord
from core.message_media import check_caption
from core.messages import Message, check_key
from core.phone import normalize as normalize_phone
from core.settings import Settings

MEDIA_FIELDS = frozenset({"to", "media", "caption", "idempotencyKey"})
MULTIPART_FIELDS = frozenset({"to", "kind", "caption", "idempotencyKey", "filename"})
FILE_PART = "file"
MAX_FIELD = 8 * 1024  # a multipart text field (a caption is at most 1024 characters)
CHUNK = 256 * 1024
B64_SLICE = 4 * 256 * 1024  # base64 characters decoded at a time (a multiple of 4)


def b64_length(size: int) -> int:
    return 4 * ((size + 2) // 3)


def json_cap(settings: Settings) -> int:
    """The largest JSON body a media message may have: the base64 of the largest kind's
    limit, with room for the other fields."""
    return b64_length(max(settings.media_max_bytes(kind) for kind in KINDS)) + MAX_BODY


@dataclass
class MediaSend:
    """A media message's fields, all checked, before its file is read."""

    to: str
    kind: str
    caption: str
    key: str | None
    filename: str | None


def _fields(to: object, kind: object, caption: object, key: object, name: object) -> MediaSend:
    """Checked in the order the text path checks them (to first)."""
    phone = normalize_phone(to)
    return MediaSend(
        phone, check_kind(kind), check_caption(caption), check_key(key), check_filename(name)
    )


async def _decoded(data: str) -> AsyncIterator[bytes]:
    for start in range(0, len(data), B64_SLICE):
        piece = data[start : start + B64_SLICE]
        try:
            yield binascii.a2b_base64(piece, strict_mode=True)
        except (binascii.Error, ValueError):
            raise InvalidInput("media.data must be base64 (RFC 4648, no line breaks)") from None


async def read_body(request: web.Request, cap: int) -> bytes:
    """The whole JSON body, up to ``cap`` bytes (413 past it: only a file can be that big)."""
    raw = bytearray()
    while chunk := await request.content.read(CHUNK):
        raw += chunk
        if len(raw) > cap:
            raise MediaTooLarge(
                f"the body is larger than {cap} bytes: send big files as multipart"
            )
    return bytes(raw)


async def send_json(request: web.Request, body: dict[str, Any]) -> tuple[Message, bool]:
    """``body`` holds ``media``: the message with its file from base64."""
    only(body, MEDIA_FIELDS)
    media = body.get("media")
    if not isinstance(media, dict):
        raise InvalidInput("media must be an object {kind, data, filename?}")
    if set(media) - {"kind", "data", "filename"}:
        raise InvalidInput("media takes kind, data and filename only")
    send = _fields(
        body.get("to"),
        media.get("kind"),
        body.get("caption"),
        body.get("idempotencyKey"),
        media.get("filename"),
    )
    data = media.get("data")
    if not isinstance(data, str) or not data:
        raise InvalidInput("media.data must be the file in base64")
    limit = request.app[SETTINGS].media_max_bytes(send.kind)
    if len(data) > b64_length(limit):
        raise MediaTooLarge(f"a {send.kind} may be at most {limit} bytes")
    return await _accept(request, send, lambda: _decoded(data))


async def send_multipart(request: web.Request) -> tuple[Message, bool]:
    """Fields first (``to`` and ``kind`` at least), then the file part, streamed. A body
    aiohttp's multipart reader cannot read (no boundary, cut short) is a 400."""
    try:
        return await _multipart(request)
    except (ValueError, AssertionError, aiohttp.ClientPayloadError):
        # Its message may quote a header: not echoed.
        raise InvalidInput("the multipart body could not be read (boundary, framing)") from None


async def _multipart(request: web.Request) -> tuple[Message, bool]:
    reader = await request.multipart()
    fields: dict[str, str] = {}
    received: Received | None = None
    send: MediaSend | None = None
    try:
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                raise InvalidInput("a multipart part may not itself be multipart")
            name = part.name or ""
            if name == FILE_PART:
                if received is not None:
                    raise InvalidInput("one file part only")
                send = _multipart_fields(fields, part.filename)
                found = await _known(request, send)
                if found is not None:
                    return found, False
                received = await _receive(request, send.kind, _chunks(part))
            elif name in MULTIPART_FIELDS:
                if name in fields:
                    raise InvalidInput(f"{name} given twice")
                fields[name] = await _field(part, name)
            else:
                raise InvalidInput(f"unknown field: {name[:40]}")
        if received is None or send is None:
            raise InvalidInput("a multipart message needs a file part named 'file'")
        send = _multipart_fields(fields, send.filename)  # fields after the file too
        return await _keep(request, send, received)
    except BaseException:
        if received is not None:
            received.discard()
        raise


def _multipart_fields(fields: dict[str, str], part_filename: str | None) -> MediaSend:
    if "to" not in fields or "kind" not in fields:
        raise InvalidInput("the fields to and kind must come before the file part")
    return _fields(
        fields["to"],
        fields["kind"],
        fields.get("caption"),
        fields.get("idempotencyKey"),
        fields.get("filename") or part_filename,
    )


async def _field(part: BodyPartReader, name: str) -> str:
    raw = bytearray()
    while chunk := await part.read_chunk(MAX_FIELD):
        raw += chunk
        if len(raw) > MAX_FIELD:
            raise InvalidInput(f"{name} is longer than {MAX_FIELD} bytes")
    try:
        value = raw.decode()
    except UnicodeDecodeError:
        raise InvalidInput(f"{name} must be UTF-8 text") from None
    return text.check(value, name)


async def _chunks(part: BodyPartReader) -> AsyncIterator[bytes]:
    while chunk := await part.read_chunk(CHUNK):
        yield chunk


async def _known(request: web.Request, send: MediaSend) -> Message | None:
    """The session must exist before a byte is stored; a key already used answers its
    message without storing the file again."""
    service = request.app[SERVICE]
    await service.get(request.match_info["id"])
    if send.key is None:
        return None
    return await service.messages.existing(request.match_info["id"], send.key)


async def _receive(request: web.Request, kind: str, chunks: AsyncIterator[bytes]) -> Received:
    media = request.app[MEDIA]
    return await receive(media.store, request.app[SETTINGS], kind, chunks)


async def _accept(
    request: web.Request, send: MediaSend, chunks: Callable[[], AsyncIterator[bytes]]
) -> tuple[Message, bool]:
    found = await _known(request, send)
    if found is not None:
        return found, False
    received = await _receive(request, send.kind, chunks())
    try:
        return await _keep(request, send, received)
    except BaseException:
        received.discard()
        raise


async def _keep(request: web.Request, send: MediaSend, received: Received) -> tuple[Message, bool]:
    """Into the store, then the message and its media record in one script."""
    service = request.app[SERVICE]
    stored = await received.keep()
    record = MediaRecord(
        id=new_media_id(),
        sha256=stored.sha256,
        kind=send.kind,
        mime=received.mime,
        size=stored.size,
        session=request.match_info["id"],
        direction="out",
        created=service.clock.now_ms(),
        filename=send.filename,
    )
    return await service.messages.accept(
        request.match_info["id"], send.to, send.caption, send.key, media=record
    )
