"""What an archive carries besides the fleet: the audit trail, as ``audit.jsonl`` (one entry
a line, oldest first; a member of its own because 90 days of a busy fleet's trail would not
fit the manifest's cap), and the issued keys, as the manifest's ``apiKeys`` (hashes and
salts only). Blocking code, called through ``asyncio.to_thread`` like ``archive``.

An archive without them (format 1, made before they were carried) restores as before: the
live trail and keys are left as they are. A wafleet that knows only format 1 refuses one
with them, naming ``audit.jsonl`` as a member it does not expect (backup_unexpected_member).
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

from core import api_keys, audit
from core.backups import archive
from core.backups.errors import BadAudit, BadKeys, CorruptArchive
from core.errors import InvalidInput

AUDIT_MEMBER = archive.AUDIT


def write_audit(path: Path, entries: list[audit.Archived]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        for entry in entries:
            out.write(json.dumps(entry.as_json(), ensure_ascii=False, separators=(",", ":")))
            out.write("\n")


def read_audit(path: Path) -> list[audit.Archived] | None:
    """The archive's audit entries, each checked, in strictly rising id order; None when it
    carries none (an older archive). Its size was bounded by ``archive.inspect`` already."""
    name = path.name
    with zipfile.ZipFile(path) as zf:
        if AUDIT_MEMBER not in zf.namelist():
            return None
        try:
            with zf.open(AUDIT_MEMBER) as src:
                lines = src.read().decode("utf-8").splitlines()
        except UnicodeDecodeError:
            raise BadAudit(f"{name}: {AUDIT_MEMBER} is not UTF-8 text") from None
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            raise CorruptArchive(f"{name}: {AUDIT_MEMBER} cannot be read ({exc})") from None
    found: list[audit.Archived] = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entry = audit.checked(json.loads(line))
        except (ValueError, InvalidInput) as exc:
            raise BadAudit(f"{name}: {AUDIT_MEMBER} line {n}: {_reason(exc)}") from None
        if found and audit.id_key(entry.id) <= audit.id_key(found[-1].id):
            raise BadAudit(f"{name}: {AUDIT_MEMBER} line {n}: ids are not in rising order")
        found.append(entry)
    return found


def read_keys(name: str, manifest: dict[str, Any]) -> list[dict[str, str]] | None:
    """The manifest's issued keys, each checked as ``create`` would have made it; None when
    it lists none (an older archive)."""
    listed = manifest.get("apiKeys")
    if listed is None:
        return None
    if not isinstance(listed, list):
        raise BadKeys(f"{name}: manifest.json's apiKeys is not a list")
    found = []
    for raw in listed:
        try:
            found.append(api_keys.archived(raw))
        except InvalidInput as exc:
            raise BadKeys(f"{name}: {exc}") from None
    if len({k["id"] for k in found}) != len(found) or len({k["name"] for k in found}) != len(
        found
    ):
        raise BadKeys(f"{name}: manifest.json lists a key id or name twice")
    return found


def _reason(exc: Exception) -> str:
    return "not JSON" if isinstance(exc, json.JSONDecodeError) else str(exc)
