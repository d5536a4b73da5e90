"""A file's type told by its bytes (libmagic), never by its name or a header.

libmagic reads the first bytes only, so the caller hands it the head of a file it is
streaming (``MediaWriter.head``) and nothing waits for the whole file. One ``Magic`` per
thread: libmagic's handle is not safe to share between threads.
"""

from __future__ import annotations

import threading

import magic

HEAD_BYTES = 8192
_local = threading.local()


def mime_of(head: bytes) -> str:
    """The MIME type of a file that starts with ``head`` (``application/octet-stream`` when
    libmagic cannot tell)."""
    sniffer = getattr(_local, "magic", None)
    if sniffer is None:
        sniffer = _local.magic = magic.Magic(mime=True)
    found = sniffer.from_buffer(head[:HEAD_BYTES]) if head else "application/x-empty"
    return str(found or "application/octet-stream")
