"""The leader's sweep of ``MEDIA_DIR``: a file goes once no media record names it.

A record lives as long as its message (the message's retention once it is final, see
core/media/registry.py), so the files to keep are exactly the hashes some record names;
every other file older than ``GRACE_S`` goes. The grace covers a file committed a moment
before the script that names it (an upload in flight; a commit of bytes already stored
freshens the file's time), and a refused or abandoned upload's file is gone an hour later
at most. Temporary files a crash left under ``.incoming`` go after the same grace.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from core.media.registry import MediaRegistry
from core.media.store import MediaStore
from core.tasks import every

log = logging.getLogger("wafleet.media")

GRACE_S = 3600.0
INTERVAL_S = 600.0


@dataclass(frozen=True)
class Swept:
    files: int
    partial: int


async def sweep(store: MediaStore, registry: MediaRegistry, grace_s: float = GRACE_S) -> Swept:
    """One pass; what it removed. The live set is read before the files are listed, so a
    file named after the read is younger than the grace and stays."""
    live = await registry.live_hashes()

    def remove() -> Swept:
        files = 0
        for sha256 in list(store.hashes()):
            if sha256 in live:
                continue
            try:
                old = store.age_s(sha256) > grace_s
            except FileNotFoundError:
                continue
            if old and store.delete(sha256):
                files += 1
        return Swept(files, store.sweep_incoming(grace_s))

    return await asyncio.to_thread(remove)


async def run_sweep(
    store: MediaStore, registry: MediaRegistry, interval_s: float = INTERVAL_S
) -> None:
    """On the leader: a pass every ``interval_s`` (the first after one interval)."""

    async def one_pass() -> None:
        swept = await sweep(store, registry)
        if swept.files or swept.partial:
            log.info("media sweep: %d files, %d partial uploads removed", *vars(swept).values())

    await every(interval_s, one_pass, "media sweep")
