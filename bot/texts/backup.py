"""Backing up and restoring (``bot/handlers/backups.py``). Named ``backup`` because
``backups`` is the listing's own function."""

from __future__ import annotations

from aiogram import html
from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import ngettext

from bot.texts.common import megabytes, sessions_count
from core.backups import BackupInfo, BackupResult, RestoreReport


def backup_started() -> str:
    return _("💾 Backing up every session… (workers pause one at a time)")


def backup_done(result: BackupResult) -> str:
    return _("💾 Backup {name}: {size}, {sessions}; longest pause {pause} ms.").format(
        name=html.code(html.quote(result.info.path.name)),
        size=megabytes(result.info.size),
        sessions=sessions_count(result.info.sessions),
        pause=round(result.max_pause_ms),
    )


def backups(found: list[BackupInfo]) -> str:
    if not found:
        return _("No backups yet. Make one with /backup.")
    lines = [_("Backups, newest first:")]
    lines += [
        _("{id} · {size} · {sessions}").format(
            id=html.code(html.quote(info.id)),
            size=megabytes(info.size),
            sessions=sessions_count(info.sessions),
        )
        for info in found
    ]
    return "\n".join(lines)


def confirm_restore(info: BackupInfo) -> str:
    return _(
        "Restore {id}? Every worker stops, the sessions are replaced by the archive's, "
        "then they start again."
    ).format(id=html.code(html.quote(info.id)))


def restore_started(backup_id: str) -> str:
    return _("📦 Restoring {id}… this takes up to a minute.").format(
        id=html.code(html.quote(backup_id))
    )


def restore_done(report: RestoreReport) -> str:
    n = len(report.sessions)
    return ngettext(
        "📦 Restored {n} session from {id}; {connected} connected so far.",
        "📦 Restored {n} sessions from {id}; {connected} connected so far.",
        n,
    ).format(
        n=n,
        id=html.code(html.quote(report.backup_id)),
        connected=len(report.connected),
    )
