"""What every area's texts share: the message size, whole-line cutting, and the words for a
phone, an age, a count of sessions, a size and a session's status."""

from __future__ import annotations

from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import ngettext

from core.models import Status

MAX_MESSAGE = 4000  # Telegram's limit is 4096; leave room for the markup


def status_name(status: str) -> str:
    names: dict[str, str] = {
        Status.PENDING: _("starting"),
        Status.QR_READY: _("waiting for a scan"),
        Status.CONNECTED: _("connected"),
        Status.DISCONNECTED: _("disconnected"),
        Status.FAILED: _("failed"),
        Status.STOPPED: _("stopped"),
    }
    return names.get(status, status)


def age(now_ms: int, then_ms: int | None) -> str:
    if then_ms is None:
        return "—"
    n = max(0, (now_ms - then_ms) // 1000)
    return ngettext("{n} s ago", "{n} s ago", n).format(n=n)


def sessions_count(n: int | None) -> str:
    """A count of sessions in words ("1 session"); "?" when not known (an old archive)."""
    if n is None:
        return "?"
    return ngettext("{n} session", "{n} sessions", n).format(n=n)


def phone(number: str | None) -> str:
    return "+" + number if number else "—"


def bounded(lines: list[str]) -> str:
    """Lines joined, cut (whole lines, with an ellipsis) to fit one Telegram message."""
    text = ""
    for line in lines:
        if len(text) + len(line) + 2 > MAX_MESSAGE:
            return text + "…"
        text += line + "\n"
    return text.rstrip("\n")


def megabytes(size: int) -> str:
    return _("{size} MB").format(size=f"{size / 1_000_000:.1f}")
