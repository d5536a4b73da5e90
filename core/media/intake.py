"""An outgoing file on its way in: streamed to a temporary file, checked, kept only if it passes.

The caller (the REST handler) hands over the bytes as they arrive, in chunks; nothing here
holds a whole file. The checks run in core/media/check.py's order (size while streaming,
then the type from the head, then an image's decode). A refusal discards the temporary
file, and so does the caller when anything else about the request is refused after the
file arrived (a multipart field after the file part): only ``keep`` puts it in the store,
so a refused request leaves nothing in ``MEDIA_DIR``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

from core.errors import InvalidInput, MediaTooLarge
from core.media import check, store
from core.media.sniff import mime_of
from core.media.store import MediaStore, MediaWriter, StoredFile
from core.settings import Settings


@dataclass
class Received:
    """A file that passed every check for its kind, not yet in the store."""

    kind: str
    mime: str
    writer: MediaWriter

    @property
    def size(self) -> int:
        return self.writer.size

    @property
    def sha256(self) -> str:
        return self.writer.sha256

    async def keep(self) -> StoredFile:
        """Durable and in place under its hash (fsync: a thread, not the event loop)."""
        return await asyncio.to_thread(self.writer.commit)

    def discard(self) -> None:
        self.writer.discard()


async def receive(
    media_store: MediaStore, settings: Settings, kind: str, chunks: AsyncIterator[bytes]
) -> Received:
    """Stream ``chunks`` into a temporary file as a file of ``kind``: ``MediaTooLarge`` (413)
    or ``MediaRefused`` (415), and ``InvalidInput`` for an empty file or bad chunks, with
    nothing left behind; else the checked file, for the caller to ``keep`` or ``discard``."""
    limit = settings.media_max_bytes(kind)
    writer = media_store.writer(limit)
    try:
        async for chunk in chunks:
            writer.write(chunk)
        if writer.size == 0:
            raise InvalidInput("the file is empty")
        mime = check.check_type(kind, mime_of(writer.head))
        if kind == "image":
            await asyncio.to_thread(
                check.check_image, writer.written(), settings.media_max_image_pixels
            )
    except store.MediaTooLarge:
        raise MediaTooLarge(f"a {kind} may be at most {limit} bytes") from None
    except BaseException:
        writer.discard()
        raise
    return Received(kind, mime, writer)
