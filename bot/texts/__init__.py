"""Every text the bot shows, built from core's records and the gettext catalogue.

Called inside an i18n context (a handler, or the notifier's ``use_locale``). Dynamic
values are HTML-escaped here, once; nothing outside this package formats chat text. A count
that a word agrees with takes the word's plural form from the catalogue (``ngettext``:
English has two forms, Hebrew three, with the dual of "hour" or "time").

One module per area of ``bot/handlers/``, and ``common`` for what they share; callers know
them all as ``texts.<name>`` from here. Three areas are named apart from their handlers,
because a function already holds the handler's name here: ``pool`` (``proxies``), ``fleet``
(``stats``, ``nodes``) and ``backup`` (``backups``).
"""

from __future__ import annotations

from bot.texts.alerts import (
    ALERT_ICONS,
    _alert_facts,
    _alert_title,
    _done_text,
    alert_burst,
    fold_burst,
    moved_sessions,
)
from bot.texts.backup import (
    backup_done,
    backup_started,
    backups,
    confirm_restore,
    restore_done,
    restore_started,
)
from bot.texts.common import (
    MAX_MESSAGE,
    age,
    bounded,
    megabytes,
    phone,
    sessions_count,
    status_name,
)
from bot.texts.errors import MAX_DETAIL, error, refusal, unexpected, usage, viewer_refusal
from bot.texts.fleet import RTL_LOCALES, digest, node_state, nodes, stats, stats_picture
from bot.texts.lang import language_prompt, language_set
from bot.texts.messages import counts, fleet_counts, message_accepted, started, stopped
from bot.texts.pool import (
    ask_proxy_url,
    proxies,
    proxy_added,
    proxy_removed,
    proxy_status_name,
    unknown_proxy_status,
)
from bot.texts.sessions import (
    ambiguous,
    cancelled,
    confirm_delete,
    connected_caption,
    deleted,
    found,
    new_qr_requested,
    pairing_code,
    provision_started,
    qr_caption,
    qr_expired_caption,
    restarting,
    session_line,
    session_status,
    sessions_page,
    unknown_status,
)
from bot.texts.start import commands, help_text

# What callers use as ``texts.<name>``; the catalogue's test reads three private ones.
__all__ = [
    "ALERT_ICONS",
    "MAX_DETAIL",
    "MAX_MESSAGE",
    "RTL_LOCALES",
    "age",
    "alert_burst",
    "ambiguous",
    "ask_proxy_url",
    "backup_done",
    "backup_started",
    "backups",
    "bounded",
    "cancelled",
    "commands",
    "confirm_delete",
    "confirm_restore",
    "counts",
    "connected_caption",
    "deleted",
    "digest",
    "error",
    "fleet_counts",
    "fold_burst",
    "found",
    "help_text",
    "language_prompt",
    "language_set",
    "megabytes",
    "message_accepted",
    "moved_sessions",
    "new_qr_requested",
    "node_state",
    "nodes",
    "pairing_code",
    "phone",
    "provision_started",
    "proxies",
    "proxy_added",
    "proxy_removed",
    "proxy_status_name",
    "qr_caption",
    "qr_expired_caption",
    "refusal",
    "restarting",
    "restore_done",
    "restore_started",
    "session_line",
    "session_status",
    "sessions_count",
    "sessions_page",
    "started",
    "stats",
    "stats_picture",
    "status_name",
    "stopped",
    "unexpected",
    "unknown_proxy_status",
    "unknown_status",
    "usage",
    "viewer_refusal",
    "_alert_facts",
    "_alert_title",
    "_done_text",
]
