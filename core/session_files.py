"""A session's folder: the driver's auth files plus wafleet's ``session.json``.

``session.json`` (``id``, ``phone``, ``proxy``, ``created``) is what lets a restore rebuild
Redis from the folders alone, so it is rewritten whenever one of those fields changes.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

SESSION_FILE = "session.json"
KEEP = frozenset({SESSION_FILE, "worker.log", "worker.log.1"})


def folder(sessions_dir: Path, session_id: str) -> Path:
    return sessions_dir / session_id


def write_meta(path: Path, session_id: str, phone: str | None, proxy: str, created: int) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    data = {"id": session_id, "phone": phone, "proxy": proxy, "created": created}
    tmp = path / f".{SESSION_FILE}.tmp"
    # The proxy URL carries its password: owner-only, written whole or not at all.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle)
    tmp.replace(path / SESSION_FILE)


def read_meta(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((path / SESSION_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def delete_auth(path: Path) -> int:
    """Remove the driver's files (a logout voids them); returns how many were removed."""
    removed = 0
    if not path.is_dir():
        return 0
    for entry in path.iterdir():
        if entry.name in KEEP:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink(missing_ok=True)
        removed += 1
    return removed


def remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
