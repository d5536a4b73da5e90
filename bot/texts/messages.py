"""``/send``, ``/stop`` and ``/start_session``, and the message counts of ``/status`` and
``/stats``."""

from __future__ import annotations

from aiogram import html
from aiogram.utils.i18n import gettext as _

from core.messages import Counts, Message
from core.models import SessionRecord


def message_accepted(sid: str, message: Message) -> str:
    return _("✉️ Message {mid} to {phone} queued on {sid}; status: {status}").format(
        mid=html.code(html.quote(message.id)),
        phone=html.quote("+" + message.to),
        sid=html.bold(html.quote(sid)),
        status=html.quote(message.status),
    )


def stopped(record: SessionRecord) -> str:
    return _(
        "⏸ {sid} stopped: no worker runs; its link, proxy and queued messages are kept. "
        "/start_session {sid} brings it back."
    ).format(sid=html.bold(html.quote(record.id)))


def started(record: SessionRecord) -> str:
    return _("▶️ {sid} starting again with its saved link; no QR needed.").format(
        sid=html.bold(html.quote(record.id))
    )


def counts(found: Counts) -> str:
    return _("Messages: {sent} sent, {received} received, {failed} failed").format(
        sent=found.sent, received=found.received, failed=found.failed
    )


def fleet_counts(found: Counts) -> str:
    """``/stats``: the whole fleet's messages (a deleted session's stay counted)."""
    return _("Messages in the fleet: {sent} sent, {received} received, {failed} failed").format(
        sent=found.sent, received=found.received, failed=found.failed
    )
