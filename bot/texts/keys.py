"""The chat texts of ``/keys`` and ``/audit``, beside ``texts.py`` and under its rules:
built inside an i18n context, every dynamic value HTML-escaped here, once. A key's value is
never shown: it exists only in the API's answer that issued it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiogram import html
from aiogram.utils.i18n import gettext as _

from core.api_keys import ApiKey


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


def keys(found: list[ApiKey]) -> str:
    if not found:
        return _("No keys issued besides API_KEY. Issue one with POST /api/v1/keys.")
    lines = [_("Issued keys (API_KEY is the admin key besides these):")]
    for key in found:
        line = _("• {name} · {scope} · id {id}").format(
            name=html.bold(html.quote(key.name)),
            scope=html.quote(key.scope),
            id=html.code(html.quote(key.id)),
        )
        if key.expires_at is not None:
            line += " · " + _("expires {when}").format(when=_when(key.expires_at))
        lines.append(line)
    return "\n".join(lines)


def audit(entries: list[dict[str, Any]]) -> str:
    if not entries:
        return _("The audit trail is empty.")
    lines = [_("The latest entries of the audit trail, newest last:")]
    for e in entries:
        what = " ".join(
            html.quote(str(part))
            for part in (e["actor"], e["action"], e.get("session") or "", e["result"])
            if part
        )
        if e.get("reason"):
            what += f" ({html.quote(str(e['reason']))}"
            what += f" ×{e['count']})" if "count" in e else ")"
        lines.append(f"• {_when(int(e['at']))} · {what}")
    return "\n".join(lines)
