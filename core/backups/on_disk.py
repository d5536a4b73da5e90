"""The session folders on disk, as a backup copies them and a restore swaps them in.

Kept apart from core/backups/archive.py (the zip files) because these touch the live
``SESSIONS_DIR``: what a copy leaves out, and a swap that is all or nothing.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from core import session_files
from core.backups.archive import FOLDER_NAME

# Not session data: the worker's log, and its outbox of events not yet reported (restored
# later they would be old news, replayed as new; a restore carries the live folder's unsent
# message events over instead: session_files.carry_outboxes), nor the files of those events.
EXCLUDED = re.compile(r"worker\.log(\..*)?|\.?outbox\.jsonl(\.tmp)?")
EXCLUDED_FOLDERS = frozenset({session_files.MEDIA_IN_DIR})


def session_folders(sessions_dir: Path) -> list[str]:
    if not sessions_dir.is_dir():
        return []
    return sorted(
        e.name
        for e in sessions_dir.iterdir()
        if e.is_dir() and not e.is_symlink() and FOLDER_NAME.fullmatch(e.name)
    )


def copy_folder(src: Path, dst: Path) -> None:
    """Regular files only (no links, no logs): what the archive may carry."""
    dst.mkdir(parents=True, mode=0o700)
    for root, dirs, files in os.walk(src):
        base = Path(root)
        rel = base.relative_to(src)
        dirs[:] = [
            d
            for d in dirs
            if not (base / d).is_symlink() and not (base == src and d in EXCLUDED_FOLDERS)
        ]
        for d in dirs:
            (dst / rel / d).mkdir(mode=0o700, exist_ok=True)
        for name in files:
            path = base / name
            if EXCLUDED.fullmatch(name) or path.is_symlink() or not path.is_file():
                continue
            try:
                shutil.copy2(path, dst / rel / name)
            except FileNotFoundError:
                continue  # a temp file renamed away just before the pause


def swap_in(sessions_dir: Path, staging: Path, old: Path) -> None:
    """Move the current session folders into ``old`` and the staged ones into place; a
    rename that fails half-way undoes the ones before it, so the swap is all or nothing."""
    old.mkdir(mode=0o700)
    moved: list[tuple[Path, Path]] = []
    try:
        for entry in [e for e in sessions_dir.iterdir() if not e.name.startswith(".")]:
            entry.rename(old / entry.name)
            moved.append((entry, old / entry.name))
        for entry in list(staging.iterdir()):
            entry.rename(sessions_dir / entry.name)
            moved.append((entry, sessions_dir / entry.name))
    except BaseException:
        for src, dst in reversed(moved):
            dst.rename(src)
        old.rmdir()
        raise
    staging.rmdir()


def swap_back(sessions_dir: Path, old: Path, discard: Path) -> None:
    """Undo ``swap_in``: the restored folders go to ``discard``, the old ones come back."""
    discard.mkdir(mode=0o700, exist_ok=True)
    for entry in [e for e in sessions_dir.iterdir() if not e.name.startswith(".")]:
        entry.rename(discard / entry.name)
    for entry in list(old.iterdir()):
        entry.rename(sessions_dir / entry.name)
    old.rmdir()
    shutil.rmtree(discard, ignore_errors=True)
