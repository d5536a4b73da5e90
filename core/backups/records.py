"""What a backup or restore produces and consumes: plain records, no I/O.

``Plan`` is an archive after validation: every value in it passed the same rules the live
API applies, so the restore can write it to Redis and disk without looking again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.audit import Archived


@dataclass(frozen=True)
class BackupInfo:
    id: str
    path: Path
    size: int
    created_ms: int
    sessions: int | None  # None when the manifest cannot be read

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "file": self.path.name,
            "size": self.size,
            "created": self.created_ms,
            "sessions": self.sessions,
        }


@dataclass(frozen=True)
class BackupResult:
    info: BackupInfo
    mode: str
    duration_ms: int
    # How long each session's worker was frozen (rolling) or down (stop-all), in ms.
    pauses_ms: dict[str, float] = field(default_factory=dict)

    @property
    def max_pause_ms(self) -> float:
        return max(self.pauses_ms.values(), default=0.0)

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.info.as_dict(),
            "mode": self.mode,
            "durationMs": self.duration_ms,
            "maxPauseMs": round(self.max_pause_ms, 1),
            "pausesMs": {k: round(v, 1) for k, v in self.pauses_ms.items()},
        }


@dataclass(frozen=True)
class Reassigned:
    session_id: str
    phone: str | None
    old_proxy: str  # masked
    new_proxy: str | None  # masked; None: no slot anywhere, the session is parked
    why: str


@dataclass(frozen=True)
class RestoreReport:
    backup_id: str
    sessions: list[str]
    connected: list[str]
    not_connected: list[str]
    reassigned: list[Reassigned]
    proxies_added: list[str]  # masked

    def as_dict(self) -> dict[str, Any]:
        return {
            "backup": self.backup_id,
            "sessions": self.sessions,
            "connected": self.connected,
            "notConnected": self.not_connected,
            "reassigned": [
                {
                    "id": r.session_id,
                    "phone": r.phone,
                    "from": r.old_proxy,
                    "to": r.new_proxy,
                    "why": r.why,
                }
                for r in self.reassigned
            ],
            "proxiesAdded": self.proxies_added,
        }


@dataclass(frozen=True)
class PlannedSession:
    """One session as the archive has it (``session.json`` first, the manifest second)."""

    id: str
    phone: str | None
    proxy: str
    created: int
    # What the operator set, from the manifest: stopped by hand (comes back stopped: no
    # worker, queue kept), the session's own events endpoint, its own limits (None: an
    # older archive that does not say, so the live ones are left as they are).
    stopped: bool = False
    events_webhook_url: str | None = None
    limits: dict[str, int] | None = None
    # The client key that owns it (None: an admin's); ``owner_known`` False: an older
    # archive that does not say, so the live owner is left as it is.
    owner: str | None = None
    owner_known: bool = False


@dataclass(frozen=True)
class Plan:
    """A validated archive: what a restore will write, and nothing else."""

    sessions: list[PlannedSession]
    sticky: dict[str, str]  # phone -> proxy URL
    sticky_sessions: dict[str, str]  # phone -> session id (only restored ones)
    proxies: list[str]  # every proxy URL the manifest lists
    # The issued keys' records and the audit trail (None: an older archive without them).
    api_keys: list[dict[str, str]] | None = None
    audit: list[Archived] | None = None
