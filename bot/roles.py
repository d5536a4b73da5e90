"""Who may do what in the chat: the one table of what only looks.

Admins (``TELEGRAM_ADMIN_IDS``, and anyone in the alert chat who is not a named viewer, as
before roles existed) may do everything. Viewers (``TELEGRAM_VIEWER_IDS``) may use only
what is listed here as read-only. Anything not listed (a command or a button added later
and forgotten here) counts as an action: a viewer is refused rather than trusted.
"""

from __future__ import annotations

from enum import StrEnum

from aiogram.types import Chat, User


class Role(StrEnum):
    ADMIN = "admin"
    VIEWER = "viewer"
    STRANGER = "stranger"


# Commands that only read. /qr is not here: a QR links whichever phone scans it.
READ_ONLY_COMMANDS = frozenset(
    {"start", "help", "sessions", "status", "find", "stats", "nodes", "proxies", "backups", "lang"}
)

# Buttons that only read, by the start of their callback data ("prefix" or "prefix:action").
READ_ONLY_BUTTONS = frozenset({"pg", "lang", "s:status", "view:proxies", "view:sessions"})


def role_of(
    user: User | None,
    chat: Chat | None,
    admins: frozenset[int],
    viewers: frozenset[int],
    alert_chat: int | None,
) -> Role:
    """A named viewer is a viewer everywhere, the alert chat included: roles would mean
    nothing if a viewer became an admin by writing in the group."""
    if user is not None and user.id in admins:
        return Role.ADMIN
    if user is not None and user.id in viewers:
        return Role.VIEWER
    if chat is not None and alert_chat is not None and chat.id == alert_chat:
        return Role.ADMIN
    return Role.STRANGER


def command_name(text: str | None) -> str | None:
    """``/status@wafleet_bot worker_1`` → ``status``; None for text that is no command."""
    if not text or not text.startswith("/"):
        return None
    return text[1:].split(maxsplit=1)[0].split("@", 1)[0].lower() if len(text) > 1 else ""


def command_reads_only(text: str | None) -> bool:
    return command_name(text) in READ_ONLY_COMMANDS


def button_reads_only(data: str | None) -> bool:
    parts = (data or "").split(":")
    return parts[0] in READ_ONLY_BUTTONS or ":".join(parts[:2]) in READ_ONLY_BUTTONS
