"""The worker fetches an outgoing message's file from serve: streamed to disk, then checked.

A media command carries a signed link (``…/media/<id>?exp=&sig=``) made when it was handed
out, and the file's size and SHA-256. The file is streamed into the session folder's
``.media/`` (a dot folder: never part of a backup) in chunks while it is hashed, so a
worker holds no whole file in memory, and is kept only when both match. Every replica
serves every file (``MEDIA_DIR`` is shared), so a replica that does not answer is skipped
for the next of the worker's ``WEBHOOK_URL`` list with the same path.

Like worker/http_post.py this speaks just enough HTTP/1.1 on asyncio streams (one GET, a
``Content-Length`` answer) rather than load a client library into every worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ssl
from pathlib import Path
from urllib.parse import urlsplit

MEDIA_FOLDER = ".media"
CHUNK = 256 * 1024
CONNECT_TIMEOUT_S = 5.0
# Between two chunks: a download that stalls this long is cut and tried again.
READ_TIMEOUT_S = 30.0


class FetchFailed(Exception):  # noqa: N818 - an outcome
    """The file could not be fetched now (serve away, the link's time over, cut short):
    try again with the next hand-out, which signs a fresh link."""


class MediaGone(Exception):  # noqa: N818 - an outcome
    """The file will never come (no such media, or its bytes do not match): the message
    fails with ``reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def media_dir(session_dir: Path) -> Path:
    return session_dir / MEDIA_FOLDER


def clear(session_dir: Path) -> None:
    """Files a previous run left (it died between a download and its acknowledgement):
    a command handed out again downloads afresh."""
    folder = media_dir(session_dir)
    if folder.is_dir():
        for path in folder.iterdir():
            with contextlib.suppress(OSError):
                path.unlink()


def alternatives(url: str, webhook_urls: list[str]) -> list[str]:
    """``url`` first, then the same path and query at each other replica of the list."""
    parts = urlsplit(url)
    tail = parts.path + (f"?{parts.query}" if parts.query else "")
    found = [url]
    for webhook in webhook_urls:
        base = webhook.rsplit("/webhook", 1)[0] if "/webhook" in webhook else webhook
        other = base.rstrip("/") + tail
        if other not in found:
            found.append(other)
    return found


async def fetch(urls: list[str], session_dir: Path, size: int, sha256: str) -> Path:
    """The file, at ``<session>/.media/<sha256>``; ``FetchFailed`` or ``MediaGone``."""
    folder = media_dir(session_dir)
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / sha256
    failure: Exception = FetchFailed("no URL")
    for url in urls:
        try:
            await _download(url, final, size, sha256)
        except FetchFailed as exc:
            failure = exc
            continue
        return final
    raise failure


async def _download(url: str, final: Path, size: int, sha256: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise MediaGone("media_unavailable")
    tls = ssl.create_default_context() if parts.scheme == "https" else None
    port = parts.port or (443 if tls else 80)
    temp = final.with_name(final.name + ".part")
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(parts.hostname, port, ssl=tls), CONNECT_TIMEOUT_S
        )
    except (OSError, TimeoutError) as exc:
        raise FetchFailed(f"connect: {type(exc).__name__}") from None
    try:
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        host = parts.netloc.rpartition("@")[2]
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        status, length = await _head(reader)
        if status in (404, 403):
            raise MediaGone("media_unavailable")
        if status != 200:
            raise FetchFailed(f"HTTP {status}")
        if length != size:
            raise MediaGone("media_corrupt")
        digest = await _body(reader, temp, length)
        if digest != sha256:
            raise MediaGone("media_corrupt")
        temp.replace(final)
    except (OSError, asyncio.IncompleteReadError, ValueError, TimeoutError) as exc:
        raise FetchFailed(f"download: {type(exc).__name__}") from None
    finally:
        temp.unlink(missing_ok=True)
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()


async def _head(reader: asyncio.StreamReader) -> tuple[int, int]:
    line = await asyncio.wait_for(reader.readuntil(b"\r\n"), READ_TIMEOUT_S)
    status = int(line.split(b" ", 2)[1])
    length = -1
    while (line := await asyncio.wait_for(reader.readuntil(b"\r\n"), READ_TIMEOUT_S)) != b"\r\n":
        name, _, value = line.decode("latin-1").partition(":")
        key = name.strip().lower()
        if key == "content-length":
            length = int(value.strip())
        elif key == "transfer-encoding" and status == 200:
            raise ValueError("a media file is answered with its length")
    return status, length


async def _body(reader: asyncio.StreamReader, temp: Path, length: int) -> str:
    digest = hashlib.sha256()
    left = length
    with temp.open("wb") as file:
        while left > 0:
            chunk = await asyncio.wait_for(reader.read(min(CHUNK, left)), READ_TIMEOUT_S)
            if not chunk:
                raise asyncio.IncompleteReadError(b"", left)
            file.write(chunk)
            digest.update(chunk)
            left -= len(chunk)
    return digest.hexdigest()
