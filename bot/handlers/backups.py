"""Backups from the chat: make one now, list them, restore one (after a confirmation)."""

from __future__ import annotations

import contextlib

from aiogram import F, Router, html
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command, CommandObject
from aiogram.types import CallbackQuery, Message

from bot import keyboards, texts
from bot.handlers.common import message_of, one_arg
from bot.keyboards import BackupAction, BackupCb
from core.backups import BackupService, Progress


def _progress_on(shown: Message | None, headline: str) -> Progress:
    """Progress lines from core edit one message under its (translated) headline."""

    async def show(line: str) -> None:
        if shown is not None:
            with contextlib.suppress(TelegramBadRequest):  # "message is not modified"
                await shown.edit_text(f"{headline}\n{html.italic(html.quote(line))}")

    return show


async def backup(message: Message, backups: BackupService) -> None:
    headline = texts.backup_started()
    shown = await message.answer(headline)
    result = await backups.create(_progress_on(shown, headline))
    await shown.edit_text(texts.backup_done(result))


async def list_backups(message: Message, backups: BackupService) -> None:
    found = await backups.list()
    await message.answer(texts.backups(found), reply_markup=keyboards.backup_buttons(found))


async def _confirm(target: Message, backup_id: str, backups: BackupService) -> None:
    info = await backups.get(backup_id)
    await target.answer(
        texts.confirm_restore(info), reply_markup=keyboards.confirm_restore(info.id)
    )


async def restore(message: Message, command: CommandObject, backups: BackupService) -> None:
    await _confirm(message, one_arg(command), backups)


async def restore_button(
    callback: CallbackQuery, callback_data: BackupCb, backups: BackupService
) -> None:
    await callback.answer()
    if (shown := message_of(callback)) is not None:
        await _confirm(shown, callback_data.id, backups)


async def confirm_restore_button(
    callback: CallbackQuery, callback_data: BackupCb, backups: BackupService
) -> None:
    await callback.answer()
    shown = message_of(callback)
    headline = texts.restore_started(callback_data.id)
    if shown is not None:
        await shown.edit_text(headline)
    report = await backups.restore(callback_data.id, _progress_on(shown, headline))
    if shown is not None:
        await shown.edit_text(texts.restore_done(report))


def build_router() -> Router:
    """A fresh router each call, so a second dispatcher (a test, a restart) can be built."""
    router = Router(name="backups")
    router.message.register(backup, Command("backup"))
    router.message.register(list_backups, Command("backups"))
    router.message.register(restore, Command("restore"))
    router.callback_query.register(
        restore_button, BackupCb.filter(F.action == BackupAction.RESTORE)
    )
    router.callback_query.register(
        confirm_restore_button, BackupCb.filter(F.action == BackupAction.CONFIRM)
    )
    return router
