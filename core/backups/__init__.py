"""Backups and restore (every session's auth zipped; the fleet rebuilt from one archive),
one job per module:

- ``errors``: every refusal and failure, each with its own stable code;
- ``records``: what a backup or restore produces, and the validated ``Plan``;
- ``archive``: the zip files (write, list with a bounded read, check, extract, swap);
- ``validate``: an archive's values against the live API's rules;
- ``make``: making a backup (copy the session folders, write the archive, retention);
- ``restore``: restoring one (check, stage, swap, rebuild Redis, or roll back);
- ``base``: what those two halves share (the fleet's parts, the progress callback);
- ``service``: ``BackupService``, the entry point made of both halves, which lets one run
  at a time and reaches Redis only through ``Store``.

``BACKUP_CRON`` is read by ``core/cron.py`` (re-exported here as ``cron_trigger``).
"""

from __future__ import annotations

from core.backups.errors import BackupBusy, BackupNotFound, BadArchive, DiskFull, RestoreFailed
from core.backups.records import BackupInfo, BackupResult, Reassigned, RestoreReport
from core.backups.service import RESTORE_WAIT_S, BackupService, Progress
from core.cron import cron_trigger

__all__ = [
    "RESTORE_WAIT_S",
    "BackupBusy",
    "BackupInfo",
    "BackupNotFound",
    "BackupResult",
    "BackupService",
    "BadArchive",
    "DiskFull",
    "Progress",
    "Reassigned",
    "RestoreFailed",
    "RestoreReport",
    "cron_trigger",
]
