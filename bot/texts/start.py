"""``/start`` and ``/help``: the command menu (also set per chat by ``/lang``) and the help."""

from __future__ import annotations

from aiogram import html
from aiogram.types import BotCommand
from aiogram.utils.i18n import gettext as _


def commands() -> list[BotCommand]:
    """The command menu, in the current locale."""
    return [
        BotCommand(command="start", description=_("What this bot does")),
        BotCommand(command="help", description=_("Every command")),
        BotCommand(command="provision", description=_("New session: [phone] [proxy]")),
        BotCommand(
            command="sessions", description=_("All sessions, with buttons: [status] to filter")
        ),
        BotCommand(command="find", description=_("Find sessions by phone: /find <digits>")),
        BotCommand(command="status", description=_("One session: /status <id or phone>")),
        BotCommand(command="qr", description=_("Show a session's QR: /qr <id or phone>")),
        BotCommand(command="restart", description=_("Restart a session: /restart <id>")),
        BotCommand(command="delete", description=_("Delete a session: /delete <id>")),
        BotCommand(
            command="send", description=_("Send a test message: /send <id> <phone> <text>")
        ),
        BotCommand(command="stop", description=_("Stop a session, keeping it: /stop <id>")),
        BotCommand(
            command="start_session", description=_("Start a stopped session: /start_session <id>")
        ),
        BotCommand(command="proxies", description=_("The proxy pool and its load")),
        BotCommand(command="addproxy", description=_("Add a proxy: /addproxy <url>")),
        BotCommand(command="stats", description=_("Fleet statistics")),
        BotCommand(command="nodes", description=_("Where the workers run")),
        BotCommand(command="backup", description=_("Back up every session now")),
        BotCommand(command="backups", description=_("The backups, to restore one")),
        BotCommand(command="restore", description=_("Restore a backup: /restore <id>")),
        BotCommand(command="keys", description=_("The issued API keys (admins)")),
        BotCommand(command="audit", description=_("The latest of the audit trail: [n]")),
        BotCommand(command="lang", description=_("Language: English / Hebrew")),
    ]


def help_text() -> str:
    lines = [_("<b>wafleet</b>: your WhatsApp sessions, from this chat."), ""]
    lines += [f"/{c.command} — {html.quote(c.description)}" for c in commands()]
    return "\n".join(lines)
