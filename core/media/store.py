"""Content-addressed files under ``MEDIA_DIR``: each file once, named by its SHA-256.

A file arrives as a stream (an upload, a worker's download) and is written to a temporary
name beside its final place while it is hashed and counted, so a file over its limit is
stopped at the first chunk past it and nothing of it stays; ``commit`` fsyncs it and renames
it into place, atomically, so a reader never sees half a file and a crash leaves at most a
temporary file (``sweep_incoming`` removes those). Two uploads of the same bytes end as one
file. ``MEDIA_DIR`` is the shared storage with ``RUNNER=swarm``, so any replica reads what
another wrote.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from core.media.sniff import HEAD_BYTES

SHA256 = re.compile(r"[0-9a-f]{64}", re.ASCII)
INCOMING = ".incoming"


class MediaTooLarge(Exception):
    """More bytes than the limit: nothing is kept."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"more than {limit} bytes")
        self.limit = limit


@dataclass(frozen=True)
class StoredFile:
    sha256: str
    size: int
    path: Path


class MediaStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path_of(self, sha256: str) -> Path:
        """Where the file with this hash lives (whether or not it does); ValueError for
        anything that is not a hash, so no name can reach outside ``root``."""
        if not SHA256.fullmatch(sha256):
            raise ValueError("not a sha256 hex digest")
        return self.root / sha256[:2] / sha256

    def has(self, sha256: str) -> bool:
        return self.path_of(sha256).is_file()

    def writer(self, limit: int) -> MediaWriter:
        """A new file of at most ``limit`` bytes; ``commit`` or ``discard`` it."""
        incoming = self.root / INCOMING
        incoming.mkdir(parents=True, exist_ok=True)
        return MediaWriter(self, incoming / f"{secrets.token_hex(16)}.part", limit)

    def put(self, data: bytes, limit: int | None = None) -> StoredFile:
        """A whole file at once (small ones, tests)."""
        writer = self.writer(len(data) if limit is None else limit)
        try:
            writer.write(data)
            return writer.commit()
        except BaseException:
            writer.discard()
            raise

    def read_chunks(self, sha256: str, chunk: int = 256 * 1024) -> Iterator[bytes]:
        with self.path_of(sha256).open("rb") as file:
            while block := file.read(chunk):
                yield block

    def delete(self, sha256: str) -> bool:
        try:
            self.path_of(sha256).unlink()
        except FileNotFoundError:
            return False
        return True

    def hashes(self) -> Iterator[str]:
        """Every stored file's hash (the sweep compares them with what is still named)."""
        if not self.root.is_dir():
            return
        for folder in self.root.iterdir():
            if len(folder.name) != 2 or not folder.is_dir():
                continue
            for file in folder.iterdir():
                if SHA256.fullmatch(file.name) and file.name.startswith(folder.name):
                    yield file.name

    def age_s(self, sha256: str) -> float:
        return time.time() - self.path_of(sha256).stat().st_mtime

    def sweep_incoming(self, older_than_s: float) -> int:
        """Temporary files a crash left behind (an upload cut off keeps its file open for
        less than this)."""
        removed = 0
        incoming = self.root / INCOMING
        if not incoming.is_dir():
            return 0
        now = time.time()
        for part in incoming.iterdir():
            with contextlib.suppress(FileNotFoundError):
                if now - part.stat().st_mtime > older_than_s:
                    part.unlink()
                    removed += 1
        return removed


class MediaWriter:
    """One file on its way in: hashed and counted as it is written."""

    def __init__(self, store: MediaStore, temp: Path, limit: int) -> None:
        self.store = store
        self.temp = temp
        self.limit = limit
        self.size = 0
        self._hash = hashlib.sha256()
        self._file = temp.open("wb")
        self.head = b""  # the first bytes: core/media/sniff.py tells the type from them

    def write(self, chunk: bytes) -> None:
        if self.size + len(chunk) > self.limit:
            self.discard()
            raise MediaTooLarge(self.limit)
        if len(self.head) < HEAD_BYTES:
            self.head += chunk[: HEAD_BYTES - len(self.head)]
        self._file.write(chunk)
        self._hash.update(chunk)
        self.size += len(chunk)

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def written(self) -> Path:
        """The temporary file with every byte so far in it, for a check that reads it whole
        (an image's decode) before ``commit``."""
        self._file.flush()
        return self.temp

    def commit(self) -> StoredFile:
        """Durable and in place under its hash; the same bytes stored before are reused."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        sha256 = self.sha256
        final = self.store.path_of(sha256)
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():
            self.temp.unlink(missing_ok=True)
            os.utime(final)  # fresh again: a sweep must not take it from under a new user
        else:
            os.replace(self.temp, final)
            _fsync_dir(final.parent)
        return StoredFile(sha256, self.size, final)

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
        self.temp.unlink(missing_ok=True)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
