"""Inline keyboards and their typed callback data.

Buttons carry ids only (a session id, a proxy's hashed id): never a URL, so a proxy
password cannot end up in Telegram's callback data.
"""

from __future__ import annotations

from enum import StrEnum

from aiogram.filters.callback_data import CallbackData
from aiogram.types import InlineKeyboardMarkup
from aiogram.utils.i18n import gettext as _
from aiogram.utils.keyboard import InlineKeyboardBuilder

from bot.i18n import LANGUAGES
from bot.paging import Page
from core.backups import BackupInfo
from core.models import ProxyRecord, SessionRecord
from core.notifier import Alert, AlertKind
from core.proxy_url import ProxyUrl

# Telegram allows 100 buttons under a message; an alert names at most this many sessions in
# buttons (two each, plus a few for the fleet), the text still names them all.
MAX_ALERT_SESSIONS = 20
NEW_QR_KINDS = frozenset({AlertKind.LOGGED_OUT, AlertKind.QR_EXPIRED})
# A parked or restarted worker: the operator restarts it by hand or looks at it first.
RESTART_KINDS = frozenset(
    {
        AlertKind.CRASH_LOOP,
        AlertKind.WORKER_CRASHED,
        AlertKind.WATCHDOG_RESTART,
        AlertKind.UNSCHEDULABLE,
    }
)
PROXIES_KINDS = frozenset({AlertKind.PROXY_BAD, AlertKind.FAILOVER_IMPOSSIBLE})
ADD_PROXY_KINDS = frozenset({AlertKind.CAPACITY_LOW, AlertKind.FAILOVER_IMPOSSIBLE})


class SessionAction(StrEnum):
    QR = "qr"
    NEW_QR = "newqr"
    RESTART = "restart"
    STATUS = "status"
    DELETE = "delete"  # asks first
    CONFIRM_DELETE = "del!"
    CANCEL = "cancel"


class SessionCb(CallbackData, prefix="s"):
    action: SessionAction
    sid: str


class ProxyCb(CallbackData, prefix="p"):
    """Remove a proxy; ``page`` and ``status``: the listing page to show again after."""

    pid: str
    page: int = 0
    status: str = ""


class View(StrEnum):
    PROXIES = "proxies"
    SESSIONS = "sessions"


class PageCb(CallbackData, prefix="pg"):
    """A page of a listing (``bot/paging.py``): the one page button of every listing."""

    page: int
    status: str = ""  # the list's filter; empty: everything
    what: View = View.SESSIONS  # which listing


class ViewCb(CallbackData, prefix="view"):
    """A button that only shows something (read-only for viewers, see ``bot/roles.py``)."""

    what: View


class AskCb(CallbackData, prefix="ask"):
    """A button that asks for input before acting: the next message is the answer."""

    what: str  # "proxy": the URL of a proxy to add


class LangCb(CallbackData, prefix="lang"):
    code: str


class BackupAction(StrEnum):
    RESTORE = "restore"  # asks first
    CONFIRM = "restore!"


class BackupCb(CallbackData, prefix="b"):
    action: BackupAction
    id: str


def session_buttons(
    records: list[SessionRecord], page: int = 0, pages: int = 1, status: str = ""
) -> InlineKeyboardMarkup:
    """Three buttons per session, then the pages: first, previous, next, last."""
    kb = InlineKeyboardBuilder()
    for record in records:
        kb.button(
            text=_("QR {sid}").format(sid=record.id),
            callback_data=SessionCb(action=SessionAction.QR, sid=record.id),
        )
        kb.button(
            text=_("Restart"), callback_data=SessionCb(action=SessionAction.RESTART, sid=record.id)
        )
        kb.button(
            text=_("Delete"), callback_data=SessionCb(action=SessionAction.DELETE, sid=record.id)
        )
    sizes = [3] * len(records)
    if nav := page_row(kb, page, pages, status, View.SESSIONS):
        sizes.append(nav)
    kb.adjust(*sizes)
    return kb.as_markup()


def page_row(kb: InlineKeyboardBuilder, page: int, pages: int, status: str, what: View) -> int:
    """The page buttons of every listing: first, previous, next, last (those that lead
    somewhere). Returns how many were added, for the keyboard's last row."""
    targets: list[tuple[str, int]] = []
    if page > 1:
        targets.append(("⏮", 0))
    if page > 0:
        targets.append(("◀", page - 1))
    if page + 1 < pages:
        targets.append(("▶", page + 1))
    if page + 2 < pages:
        targets.append(("⏭", pages - 1))
    for text, target in targets:
        kb.button(text=text, callback_data=PageCb(page=target, status=status, what=what))
    return len(targets)


def confirm_delete(sid: str) -> InlineKeyboardMarkup:
    kb = InlineKeyboardBuilder()
    kb.button(
        text=_("Yes, delete {sid}").format(sid=sid),
        callback_data=SessionCb(action=SessionAction.CONFIRM_DELETE, sid=sid),
    )
    kb.button(text=_("Cancel"), callback_data=SessionCb(action=SessionAction.CANCEL, sid=sid))
    return kb.as_markup()


def new_qr(session_ids: list[str]) -> InlineKeyboardMarkup | None:
    if not session_ids:
        return None
    kb = InlineKeyboardBuilder()
    for sid in session_ids:
        kb.button(
            text=_("New QR for {sid}").format(sid=sid),
            callback_data=SessionCb(action=SessionAction.NEW_QR, sid=sid),
        )
    kb.adjust(1)
    return kb.as_markup()


def alert_buttons(alerts: list[Alert]) -> InlineKeyboardMarkup | None:
    """What an operator does next about a burst of alerts, one button per next step."""
    new_qr: list[str] = []
    restart: list[str] = []
    status: list[str] = []
    for alert in alerts:
        if alert.kind in NEW_QR_KINDS and alert.session_id:
            new_qr.append(alert.session_id)
        elif alert.kind in RESTART_KINDS and alert.session_id:
            restart.append(alert.session_id)
        elif alert.kind is AlertKind.NODE_LOST:
            status += [s for s in str(alert.facts.get("sessionIds") or "").split(",") if s]
    kb = InlineKeyboardBuilder()
    sizes: list[int] = []
    for sid in _first(new_qr):
        kb.button(
            text=_("New QR for {sid}").format(sid=sid),
            callback_data=SessionCb(action=SessionAction.NEW_QR, sid=sid),
        )
        sizes.append(1)
    for sid in _first(restart):
        kb.button(
            text=_("Restart {sid}").format(sid=sid),
            callback_data=SessionCb(action=SessionAction.RESTART, sid=sid),
        )
        kb.button(
            text=_("Status {sid}").format(sid=sid),
            callback_data=SessionCb(action=SessionAction.STATUS, sid=sid),
        )
        sizes.append(2)
    for sid in _first(status):
        kb.button(
            text=_("Status {sid}").format(sid=sid),
            callback_data=SessionCb(action=SessionAction.STATUS, sid=sid),
        )
        sizes.append(1)
    kinds = {a.kind for a in alerts}
    fleet = 0
    if kinds & PROXIES_KINDS:
        kb.button(text=_("Proxies"), callback_data=ViewCb(what=View.PROXIES))
        fleet += 1
    if kinds & ADD_PROXY_KINDS:
        kb.button(text=_("Add proxy"), callback_data=AskCb(what="proxy"))
        fleet += 1
    if AlertKind.NODE_LOST in kinds:
        kb.button(text=_("Sessions"), callback_data=ViewCb(what=View.SESSIONS))
        fleet += 1
    if fleet:
        sizes.append(fleet)
    if not sizes:
        return None
    kb.adjust(*sizes)
    return kb.as_markup()


def _first(session_ids: list[str]) -> list[str]:
    """Each session once, in id order, at most ``MAX_ALERT_SESSIONS``."""
    return sorted(set(session_ids), key=lambda s: (len(s), s))[:MAX_ALERT_SESSIONS]


def proxy_buttons(shown: Page[ProxyRecord], status: str = "") -> InlineKeyboardMarkup | None:
    """A remove button per proxy on the page (numbered as the listing numbers it), four to
    a row, then the page buttons."""
    if not shown.items:
        return None
    kb = InlineKeyboardBuilder()
    for n, record in enumerate(shown.items, shown.first):
        pid = ProxyUrl.parse(record.url).id
        kb.button(
            text=_("Remove #{n}").format(n=n),
            callback_data=ProxyCb(pid=pid, page=shown.number, status=status),
        )
    n = len(shown.items)
    sizes = [min(4, n - at) for at in range(0, n, 4)]
    if nav := page_row(kb, shown.number, shown.count, status, View.PROXIES):
        sizes.append(nav)
    kb.adjust(*sizes)
    return kb.as_markup()


def languages() -> InlineKeyboardMarkup:
    kb = InlineKeyboardBuilder()
    for code, name in LANGUAGES.items():
        kb.button(text=name, callback_data=LangCb(code=code))
    return kb.as_markup()


def backup_buttons(found: list[BackupInfo]) -> InlineKeyboardMarkup | None:
    if not found:
        return None
    kb = InlineKeyboardBuilder()
    for info in found:
        kb.button(
            text=_("Restore {id}").format(id=info.id),
            callback_data=BackupCb(action=BackupAction.RESTORE, id=info.id),
        )
    kb.adjust(1)
    return kb.as_markup()


def confirm_restore(backup_id: str) -> InlineKeyboardMarkup:
    kb = InlineKeyboardBuilder()
    kb.button(
        text=_("Yes, restore {id}").format(id=backup_id),
        callback_data=BackupCb(action=BackupAction.CONFIRM, id=backup_id),
    )
    return kb.as_markup()
