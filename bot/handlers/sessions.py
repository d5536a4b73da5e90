"""Sessions: provision, list, status, QR, restart, delete, and their buttons."""

from __future__ import annotations

import math

from aiogram import F, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message

from bot import keyboards, texts
from bot.handlers.common import args, chat_of, hide_proxy_url, message_of, one_arg
from bot.keyboards import PageCb, SessionAction, SessionCb
from bot.notifier import TelegramNotifier
from core.proxies import ProxyPool
from core.sessions import SessionService

router = Router(name="sessions")
PAGE_SIZE = 8


@router.message(Command("provision"))
async def provision(
    message: Message,
    command: CommandObject,
    service: SessionService,
    pool: ProxyPool,
    notifier: TelegramNotifier,
) -> None:
    await hide_proxy_url(message)
    parts = args(command, 0, 2)
    if parts and "://" in parts[0]:
        parts.insert(0, "")  # /provision <proxy>: no phone
    phone = parts[0] if parts else None
    proxy = parts[1] if len(parts) > 1 else None
    if proxy and "://" not in proxy:
        proxy = (await pool.get(proxy)).url  # a proxy id from /proxies
    record = await service.provision(phone, proxy)
    await notifier.remember_chat(record.id, message.chat.id)
    await message.answer(texts.provision_started(record))


async def _page(service: SessionService, page: int) -> tuple[str, InlineKeyboardMarkup]:
    records = await service.all_sessions()
    pages = max(1, math.ceil(len(records) / PAGE_SIZE))
    page = min(max(page, 0), pages - 1)
    shown = records[page * PAGE_SIZE : (page + 1) * PAGE_SIZE]
    now = service.clock.now_ms()
    return texts.sessions_page(shown, page, pages, now), keyboards.session_buttons(
        shown, page, pages
    )


@router.message(Command("sessions"))
async def sessions(message: Message, service: SessionService) -> None:
    text, markup = await _page(service, 0)
    await message.answer(text, reply_markup=markup)


@router.callback_query(PageCb.filter())
async def sessions_page(
    callback: CallbackQuery, callback_data: PageCb, service: SessionService
) -> None:
    text, markup = await _page(service, callback_data.page)
    if (shown := message_of(callback)) is not None:
        await shown.edit_text(text, reply_markup=markup)
    await callback.answer()


@router.message(Command("status"))
async def status(message: Message, command: CommandObject, service: SessionService) -> None:
    record = await service.get(one_arg(command))
    events = await service.events(record.id, 5)
    await message.answer(texts.session_status(record, service.clock.now_ms(), events))


async def _show_qr(
    sid: str, chat: int, service: SessionService, notifier: TelegramNotifier
) -> None:
    code = await service.qr(sid)
    record = await service.get(sid)
    await notifier.show_qr(sid, chat, code, record.qr_expires)


@router.message(Command("qr"))
async def qr(
    message: Message,
    command: CommandObject,
    service: SessionService,
    notifier: TelegramNotifier,
) -> None:
    await _show_qr(one_arg(command), message.chat.id, service, notifier)


@router.message(Command("restart"))
async def restart(message: Message, command: CommandObject, service: SessionService) -> None:
    record = await service.restart(one_arg(command))
    await message.answer(texts.restarting(record))


@router.message(Command("delete"))
async def delete(message: Message, command: CommandObject, service: SessionService) -> None:
    record = await service.get(one_arg(command))
    await message.answer(
        texts.confirm_delete(record), reply_markup=keyboards.confirm_delete(record.id)
    )


@router.callback_query(SessionCb.filter(F.action == SessionAction.QR))
async def qr_button(
    callback: CallbackQuery,
    callback_data: SessionCb,
    service: SessionService,
    notifier: TelegramNotifier,
) -> None:
    await _show_qr(callback_data.sid, chat_of(callback), service, notifier)
    await callback.answer()


@router.callback_query(SessionCb.filter(F.action == SessionAction.NEW_QR))
async def new_qr_button(
    callback: CallbackQuery,
    callback_data: SessionCb,
    service: SessionService,
    notifier: TelegramNotifier,
) -> None:
    await notifier.remember_chat(callback_data.sid, chat_of(callback))
    await service.request_new_qr(callback_data.sid)
    await callback.answer(texts.new_qr_requested(callback_data.sid)[:200])


@router.callback_query(SessionCb.filter(F.action == SessionAction.RESTART))
async def restart_button(
    callback: CallbackQuery, callback_data: SessionCb, service: SessionService
) -> None:
    record = await service.restart(callback_data.sid)
    await callback.answer()
    if (shown := message_of(callback)) is not None:
        await shown.answer(texts.restarting(record))


@router.callback_query(SessionCb.filter(F.action == SessionAction.DELETE))
async def delete_button(
    callback: CallbackQuery, callback_data: SessionCb, service: SessionService
) -> None:
    record = await service.get(callback_data.sid)
    await callback.answer()
    if (shown := message_of(callback)) is not None:
        await shown.answer(
            texts.confirm_delete(record), reply_markup=keyboards.confirm_delete(record.id)
        )


@router.callback_query(SessionCb.filter(F.action == SessionAction.CONFIRM_DELETE))
async def confirm_delete_button(
    callback: CallbackQuery,
    callback_data: SessionCb,
    service: SessionService,
    notifier: TelegramNotifier,
) -> None:
    await service.delete(callback_data.sid)
    await notifier.forget(callback_data.sid)
    await callback.answer()
    if (shown := message_of(callback)) is not None:
        await shown.edit_text(texts.deleted(callback_data.sid))


@router.callback_query(SessionCb.filter(F.action == SessionAction.CANCEL))
async def cancel_button(callback: CallbackQuery) -> None:
    await callback.answer()
    if (shown := message_of(callback)) is not None:
        await shown.edit_text(texts.cancelled())
