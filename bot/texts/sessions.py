"""Sessions: the paged listing, ``/find``, ``/status``, the lifecycle answers, and the captions
of the QR photo the notifier keeps for each session."""

from __future__ import annotations

from typing import Any

from aiogram import html
from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import ngettext

from bot.texts.common import age, bounded, phone, status_name
from core.models import SessionRecord, Status


def session_line(record: SessionRecord, now_ms: int) -> str:
    return _("<b>{sid}</b> · {status} · {phone} · {proxy} · ping {ping}").format(
        sid=html.quote(record.id),
        status=status_name(record.status),
        phone=html.quote(phone(record.phone)),
        proxy=html.code(html.quote(record.proxy_masked)),
        ping=age(now_ms, record.last_ping),
    )


def sessions_page(
    records: list[SessionRecord], page: int, pages: int, now_ms: int, total: int, status: str = ""
) -> str:
    if not total:
        if status:
            return _("No session is {status} now.").format(status=status_name(status))
        return _("No sessions yet. Start one with /provision.")
    if status:
        head = _("Sessions {status} ({n}), page {page} of {pages}:").format(
            status=status_name(status), n=total, page=page + 1, pages=pages
        )
    else:
        head = _("Sessions ({n}), page {page} of {pages}:").format(
            n=total, page=page + 1, pages=pages
        )
    return bounded([head, *(session_line(r, now_ms) for r in records)])


def unknown_status(given: str) -> str:
    return _("There is no status {given}. Filter by one of: {known}").format(
        given=html.code(html.quote(given[:40])),
        known=", ".join(html.code(s.value) for s in Status),
    )


def found(records: list[SessionRecord], query: str, total: int, now_ms: int) -> str:
    """``/find``: the matches (at most a page of them), and how many more there are."""
    if not records:
        return _("No session has a phone or id containing {query}.").format(
            query=html.code(html.quote(query[:40]))
        )
    lines = [
        _("Sessions matching {query} ({n}):").format(
            query=html.code(html.quote(query[:40])), n=total
        )
    ]
    lines += [session_line(r, now_ms) for r in records]
    if total > len(records):
        lines.append(_("…and {n} more: type more of the number.").format(n=total - len(records)))
    return bounded(lines)


def ambiguous(query: str, records: list[SessionRecord], now_ms: int, total: int) -> str:
    """``/status`` or ``/qr`` with a phone that several sessions share: pick one by button."""
    lines = [
        ngettext(
            "{n} session has the phone {phone}; pick one:",
            "{n} sessions have the phone {phone}; pick one:",
            total,
        ).format(n=total, phone=html.quote(phone(query)))
    ]
    lines += [session_line(r, now_ms) for r in records]
    return bounded(lines)


def session_status(record: SessionRecord, now_ms: int, events: list[dict[str, Any]]) -> str:
    lines = [
        _("<b>{sid}</b>: {status}").format(
            sid=html.quote(record.id), status=status_name(record.status)
        ),
        _("Phone: {phone}").format(phone=html.quote(phone(record.phone))),
        _("Proxy: {proxy}").format(proxy=html.code(html.quote(record.proxy_masked))),
        _("Last ping: {ping}").format(ping=age(now_ms, record.last_ping)),
        _("Created: {created}").format(created=age(now_ms, record.created)),
    ]
    if record.reason:
        lines.append(_("Reason: {reason}").format(reason=html.code(html.quote(record.reason))))
    if events:
        lines.append(_("Recent events:"))
        lines += [
            "• " + html.quote(str(e["type"])) + " · " + age(now_ms, int(e["at"])) for e in events
        ]
    return "\n".join(lines)


def provision_started(record: SessionRecord) -> str:
    return _("⏳ Starting {sid} on {proxy}… the QR follows in a moment.").format(
        sid=html.bold(html.quote(record.id)), proxy=html.code(html.quote(record.proxy_masked))
    )


def qr_caption(sid: str, expires_in_s: int | None) -> str:
    text = _("📱 QR for {sid}: WhatsApp → Settings → Linked devices → Link a device.").format(
        sid=html.bold(html.quote(sid))
    )
    if expires_in_s is not None:
        n = max(0, expires_in_s)
        text += "\n" + ngettext(
            "Expires in {n} s; a new one replaces it here.",
            "Expires in {n} s; a new one replaces it here.",
            n,
        ).format(n=n)
    return text


def connected_caption(sid: str, number: str | None) -> str:
    return _("✅ {sid} connected as {phone}").format(
        sid=html.bold(html.quote(sid)), phone=html.quote(phone(number))
    )


def qr_expired_caption(sid: str) -> str:
    return _("⌛ The QR codes for {sid} expired unscanned. Press the button for new ones.").format(
        sid=html.bold(html.quote(sid))
    )


def pairing_code(sid: str, code: str) -> str:
    return _(
        "🔢 Pairing code for {sid}: {code}\n"
        "WhatsApp → Linked devices → Link with phone number instead."
    ).format(sid=html.bold(html.quote(sid)), code=html.code(html.quote(code)))


def restarting(record: SessionRecord) -> str:
    return _("🔄 Restarting {sid} ({status} now).").format(
        sid=html.bold(html.quote(record.id)), status=status_name(record.status)
    )


def new_qr_requested(sid: str) -> str:
    return _("🔄 A new QR round for {sid} has started; the QR follows.").format(
        sid=html.bold(html.quote(sid))
    )


def confirm_delete(record: SessionRecord) -> str:
    return _("Delete {sid} ({phone})? Its worker stops and its credentials are erased.").format(
        sid=html.bold(html.quote(record.id)), phone=html.quote(phone(record.phone))
    )


def deleted(sid: str) -> str:
    return _("🗑 {sid} deleted; its proxy slot is free.").format(sid=html.bold(html.quote(sid)))


def cancelled() -> str:
    return _("Cancelled; nothing was changed.")
