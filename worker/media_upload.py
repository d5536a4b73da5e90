"""The worker's side of ``PUT /worker/media/<sha256>``: an incoming file goes to ``serve``
before the ``MESSAGE_IN`` that names it.

The webhook client asks ``ready(event)`` before it posts a ``MESSAGE_IN`` with ``media``:
the file is streamed from ``<session folder>/media-in/`` (never read whole into memory) to
the current ``serve`` replica, and the event goes only once ``serve`` has it (201 stored,
200 it had it already). ``Expect: 100-continue`` lets ``serve`` refuse or say "already
here" before a byte of the body leaves. The signature covers a descriptor (session, hash,
size, kind; ``core.signing.media_descriptor``), not the body: ``serve`` checks the body
against it. A refused upload (the file over the kind's limit) can never succeed: the event
then goes without its file (the caption and the fact that a file came survive, as
``mediaRefused``) rather than block every event behind it. Plain asyncio streams, as
worker/http_post.py, for the same reason: no HTTP library in every worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import time
from enum import Enum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from core.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, media_descriptor, sign
from worker.endpoints import GATEWAY_FAILURES, Endpoints
from worker.http_post import CONNECT_TIMEOUT_S, HttpError
from worker.media_inbox import MediaInbox, media_of
from worker.outbox import Outbox

log = logging.getLogger("wafleet.worker.media")

SESSION_HEADER = "X-Wafleet-Session"
SIZE_HEADER = "X-Wafleet-Media-Size"
KIND_HEADER = "X-Wafleet-Media-Kind"
CHUNK = 256 * 1024
# How long to wait for "100 Continue" before sending the body anyway (RFC 9110 allows it).
EXPECT_WAIT_S = 5.0
# An upload's time limit: a base, and as long again per MiB.
BASE_TIMEOUT_S, PER_MIB_S = 30.0, 1.0


class Upload(Enum):
    DONE = "done"  # serve has the file: post the event
    RETRY = "retry"  # try again later (serve away, Redis away, a timeout)
    REFUSED = "refused"  # never: the event goes without its file
    MISSING = "missing"  # not on this disk any more (never expected): likewise


def upload_url(webhook_url: str, sha256: str) -> str:
    base = webhook_url.rsplit("/webhook", 1)[0] if "/webhook" in webhook_url else webhook_url
    return f"{base.rstrip('/')}/worker/media/{sha256}"


class MediaUploader:
    def __init__(
        self, endpoints: Endpoints, session_id: str, secret: str, inbox: MediaInbox
    ) -> None:
        self.endpoints = endpoints
        self.session_id = session_id
        self.secret = secret
        self.inbox = inbox

    async def upload(self, media: dict[str, Any]) -> Upload:
        """Bring the file ``media`` describes to ``serve``, at the current replica and each
        next one while they are away."""
        sha256, size, kind = str(media["sha256"]), int(media["size"]), str(media["kind"])
        path = self.inbox.path_of(sha256)
        if not path.is_file():
            log.error("media-in: the file of an event waiting to be sent is gone (%s)", sha256)
            return Upload.MISSING
        ts = time.time_ns() // 1_000_000
        headers = {
            SESSION_HEADER: self.session_id,
            SIZE_HEADER: str(size),
            KIND_HEADER: kind,
            TIMESTAMP_HEADER: str(ts),
            SIGNATURE_HEADER: sign(
                self.secret, ts, media_descriptor(self.session_id, sha256, size, kind)
            ),
        }
        timeout = BASE_TIMEOUT_S + PER_MIB_S * size / (1024 * 1024)
        for _ in self.endpoints.urls:
            index = self.endpoints.current
            url = upload_url(self.endpoints.urls[index], sha256)
            try:
                status, body = await asyncio.wait_for(put_file(url, path, size, headers), timeout)
            except (OSError, asyncio.IncompleteReadError, ValueError, TimeoutError) as exc:
                log.info("media upload not done (%s); trying again", type(exc).__name__)
                self.endpoints.failed(index)
                continue
            if status in (200, 201):
                return Upload.DONE
            if status in GATEWAY_FAILURES:
                self.endpoints.failed(index)
                continue
            if status in (408, 429) or status >= 500:
                log.warning("media upload answered %d; retrying", status)
                return Upload.RETRY
            text = body[:200].decode(errors="replace")
            log.error("media upload of a %s refused (%d): %s", kind, status, text)
            return Upload.REFUSED
        return Upload.RETRY


class MediaStep:
    """What the webhook client does about files around sending the outbox's lines."""

    def __init__(self, uploader: MediaUploader, outbox: Outbox) -> None:
        self.uploader = uploader
        self.outbox = outbox

    async def ready(self, lines: list[bytes]) -> list[bytes] | None:
        """``lines`` to post once every file they name is at ``serve`` (an event whose file
        can never be uploaded goes without it); None: not now, retry with backoff."""
        out = []
        for line in lines:
            event = _media_event(line)
            media = media_of(event) if event is not None else None
            if event is None or media is None:
                out.append(line)
                continue
            outcome = await self.uploader.upload(media)
            if outcome is Upload.RETRY:
                return None
            if outcome is Upload.DONE:
                out.append(line)
            else:
                out.append(_without_file(event, media, outcome))
        return out

    def left(self, lines: list[bytes]) -> None:
        """These lines left the outbox: their files go, unless a waiting event names one."""
        for line in lines:
            event = _media_event(line)
            media = media_of(event) if event is not None else None
            if media is not None and not self.outbox.mentions(str(media["sha256"])):
                self.uploader.inbox.discard(str(media["sha256"]))


def _media_event(line: bytes) -> dict[str, Any] | None:
    """The event of an outbox line that may name a file (a cheap test first)."""
    if b'"media"' not in line:
        return None
    try:
        event = json.loads(line)
    except ValueError:
        return None
    return event if isinstance(event, dict) else None


def _without_file(event: dict[str, Any], media: dict[str, Any], outcome: Upload) -> bytes:
    """The event without its file, saying which file did not come and why."""
    data = {k: v for k, v in event["data"].items() if k != "media"}
    data["mediaRefused"] = {
        "kind": media["kind"],
        "size": media["size"],
        "sha256": media["sha256"],
        "reason": "refused" if outcome is Upload.REFUSED else "lost",
    }
    changed = {**event, "data": data}
    return json.dumps(changed, separators=(",", ":"), ensure_ascii=False).encode()


async def put_file(url: str, path: Path, size: int, headers: dict[str, str]) -> tuple[int, bytes]:
    """One ``PUT`` of the file at ``path`` with ``Expect: 100-continue``, on a connection of
    its own; the final status and body."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    tls = ssl.create_default_context() if parts.scheme == "https" else None
    port = parts.port or (443 if tls else 80)
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(parts.hostname, port, ssl=tls), CONNECT_TIMEOUT_S
        )
    except (OSError, TimeoutError) as exc:
        raise HttpError(f"{type(exc).__name__}: {exc}") from None
    try:
        head = [
            f"PUT {parts.path or '/'} HTTP/1.1",
            f"Host: {parts.netloc.rpartition('@')[2]}",
            f"Content-Length: {size}",
            "Expect: 100-continue",
            "Connection: close",
            *(f"{name}: {value}" for name, value in headers.items()),
        ]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
        await writer.drain()
        try:
            status, length = await asyncio.wait_for(_read_head(reader), EXPECT_WAIT_S)
        except TimeoutError:
            status, length = 100, 0  # no interim answer: the body goes anyway
        if status == 100:
            with path.open("rb") as file:
                while chunk := file.read(CHUNK):
                    writer.write(chunk)
                    await writer.drain()
            status, length = await _read_head(reader)
            while status == 100:  # a late "100 Continue" after the body started
                status, length = await _read_head(reader)
        return status, await reader.readexactly(length) if length else b""
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, int]:
    """The status and ``Content-Length`` of the next answer."""
    status = int((await reader.readuntil(b"\r\n")).split(b" ", 2)[1])
    length = 0
    while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
        name, _, value = line.decode("latin-1").partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
        elif name.strip().lower() == "transfer-encoding":
            raise ValueError("chunked answers are not expected from the orchestrator")
    return status, length
