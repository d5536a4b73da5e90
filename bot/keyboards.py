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
from core.backups import BackupInfo
from core.models import ProxyRecord, SessionRecord
from core.proxy_url import ProxyUrl


class SessionAction(StrEnum):
    QR = "qr"
    NEW_QR = "newqr"
    RESTART = "restart"
    DELETE = "delete"  # asks first
    CONFIRM_DELETE = "del!"
    CANCEL = "cancel"


class SessionCb(CallbackData, prefix="s"):
    action: SessionAction
    sid: str


class ProxyCb(CallbackData, prefix="p"):
    pid: str


class PageCb(CallbackData, prefix="pg"):
    page: int


class LangCb(CallbackData, prefix="lang"):
    code: str


class BackupAction(StrEnum):
    RESTORE = "restore"  # asks first
    CONFIRM = "restore!"


class BackupCb(CallbackData, prefix="b"):
    action: BackupAction
    id: str


def session_buttons(records: list[SessionRecord], page: int, pages: int) -> InlineKeyboardMarkup:
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
    nav = 0
    if page > 0:
        kb.button(text="◀", callback_data=PageCb(page=page - 1))
        nav += 1
    if page + 1 < pages:
        kb.button(text="▶", callback_data=PageCb(page=page + 1))
        nav += 1
    if nav:
        sizes.append(nav)
    kb.adjust(*sizes)
    return kb.as_markup()


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


def proxy_buttons(records: list[ProxyRecord]) -> InlineKeyboardMarkup | None:
    if not records:
        return None
    kb = InlineKeyboardBuilder()
    for n, record in enumerate(records, 1):
        kb.button(
            text=_("Remove #{n}").format(n=n),
            callback_data=ProxyCb(pid=ProxyUrl.parse(record.url).id),
        )
    kb.adjust(4)
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
