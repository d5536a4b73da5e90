"""What making and restoring a backup both work with: the fleet's parts that
``BackupService`` drives, its progress callback, and a failure told in one line."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from core.backups.archive import Limits
from core.clock import Clock
from core.notifier import Notifier
from core.runner import Runner
from core.sessions import SessionService
from core.settings import Settings
from core.store import Store

# A line of text for the operator ("stopping 12 workers"): a bot edits one message with it.
Progress = Callable[[str], Awaitable[None]]
# Called with a step's name ("maintenance": the fleet is about to stop) so a test can hold a
# restore at a known point; None in production.
StepHook = Callable[[str], Awaitable[None]]


class BackupParts:
    """What ``BackupService`` holds, declared once for its two halves (``make.Making`` and
    ``restore.Restoring``), which read it as their own."""

    settings: Settings
    store: Store
    service: SessionService
    runner: Runner
    notifier: Notifier
    clock: Clock
    on_step: StepHook | None

    @property
    def limits(self) -> Limits:
        s = self.settings
        return Limits(s.backup_max_bytes, s.backup_max_files, s.backup_max_manifest_bytes)


def why(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
