"""Sessions: provision, list (paged, filtered), find, status, QR, restart, delete, and their
buttons. ``/status`` and ``/qr`` take an id or a phone (``bot/lookup.py``)."""

from __future__ import annotations

import contextlib

from aiogram import F, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command, CommandObject
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message

from bot import keyboards, lookup, paging, texts
from bot.handlers.common import args, chat_of, hide_proxy_url, message_of, one_arg
from bot.keyboards import PageCb, SessionAction, SessionCb, View, ViewCb
from bot.notifier import TelegramNotifier
from core.errors import NotFound
from core.models import SessionRecord, Status
from core.proxies import ProxyPool
from core.sessions import SessionService

PAGE_SIZE = 8  # 8 sessions x 3 buttons + 4 to page: far from Telegram's 100 buttons
FIND_LIMIT = 8


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


async def _page(
    service: SessionService, page: int, status: str = ""
) -> tuple[str, InlineKeyboardMarkup]:
    if status:
        records = [r for r in await service.all_sessions() if r.status == status]
        shown = paging.page_of(records, page, PAGE_SIZE)
    else:
        shown = await _every_session(service, page)
    now = service.clock.now_ms()
    text = texts.sessions_page(shown.items, shown.number, shown.count, now, shown.total, status)
    return text, keyboards.session_buttons(shown.items, shown.number, shown.count, status)


async def _every_session(service: SessionService, page: int) -> paging.Page[SessionRecord]:
    """A page of the whole listing reading only that page's records: the ids come from the
    order index, the records after the id before the page (the store's cursor). At 10,000
    sessions reading every record for each page took seconds a press."""
    ids = await service.store.session_ids()
    numbered = paging.page_of(ids, page, PAGE_SIZE)
    records: list[SessionRecord] = []
    if numbered.items:
        after = ids[numbered.first - 2] if numbered.first > 1 else None
        records, _, _ = await service.session_page(after, PAGE_SIZE)
    return paging.Page(records, numbered.number, numbered.count, numbered.total, numbered.first)


async def sessions(message: Message, command: CommandObject, service: SessionService) -> None:
    parts = args(command, 0, 1)
    status = parts[0].lower() if parts else ""
    if status and status not in set(Status):
        await message.answer(texts.unknown_status(parts[0]))
        return
    text, markup = await _page(service, 0, status)
    await message.answer(text, reply_markup=markup)


async def sessions_page(
    callback: CallbackQuery, callback_data: PageCb, service: SessionService
) -> None:
    status = callback_data.status if callback_data.status in set(Status) else ""
    text, markup = await _page(service, callback_data.page, status)
    if (shown := message_of(callback)) is not None:
        with contextlib.suppress(TelegramBadRequest):  # the same page again: "not modified"
            await shown.edit_text(text, reply_markup=markup)
    await callback.answer()


async def sessions_button(callback: CallbackQuery, service: SessionService) -> None:
    text, markup = await _page(service, 0)
    await callback.answer()
    if (shown := message_of(callback)) is not None:
        await shown.answer(text, reply_markup=markup)


async def find(message: Message, command: CommandObject, service: SessionService) -> None:
    query = " ".join(args(command, 1, 5))  # "+972 50 123 4567" may come in parts
    matches = await lookup.find(service, query)
    shown = matches[:FIND_LIMIT]
    now = service.clock.now_ms()
    await message.answer(
        texts.found(shown, query, len(matches), now),
        reply_markup=keyboards.session_buttons(shown) if shown else None,
    )


async def _one(message: Message, query: str, service: SessionService) -> SessionRecord | None:
    """The session ``query`` names; otherwise say why (none, or which ones to pick from)."""
    matches = await lookup.resolve(service, query)
    if not matches:
        raise NotFound(f"no session {query!r}")  # worded by the one error handler
    if len(matches) == 1:
        return matches[0]
    shown = matches[:FIND_LIMIT]  # a phone may have many sessions: a bounded list
    await message.answer(
        texts.ambiguous(lookup.digits_of(query), shown, service.clock.now_ms(), len(matches)),
        reply_markup=keyboards.session_buttons(shown),
    )
    return None


async def _show_status(target: Message, record: SessionRecord, service: SessionService) -> None:
    events = await service.events(record.id, 5)
    text = texts.session_status(record, service.clock.now_ms(), events)
    counts = texts.counts(await service.messages.counts(record.id))
    await target.answer(f"{text}\n{counts}", reply_markup=keyboards.session_buttons([record]))


async def status(message: Message, command: CommandObject, service: SessionService) -> None:
    if (record := await _one(message, " ".join(args(command, 1, 5)), service)) is not None:
        await _show_status(message, record, service)


async def status_button(
    callback: CallbackQuery, callback_data: SessionCb, service: SessionService
) -> None:
    record = await service.get(callback_data.sid)
    await callback.answer()
    if (shown := message_of(callback)) is not None:
        await _show_status(shown, record, service)


async def _show_qr(
    sid: str, chat: int, service: SessionService, notifier: TelegramNotifier
) -> None:
    code = await service.qr(sid)
    record = await service.get(sid)
    await notifier.show_qr(sid, chat, code, record.qr_expires)


async def qr(
    message: Message,
    command: CommandObject,
    service: SessionService,
    notifier: TelegramNotifier,
) -> None:
    if (record := await _one(message, " ".join(args(command, 1, 5)), service)) is not None:
        await _show_qr(record.id, message.chat.id, service, notifier)


async def restart(message: Message, command: CommandObject, service: SessionService) -> None:
    record = await service.restart(one_arg(command))
    await message.answer(texts.restarting(record))


async def delete(message: Message, command: CommandObject, service: SessionService) -> None:
    record = await service.get(one_arg(command))
    await message.answer(
        texts.confirm_delete(record), reply_markup=keyboards.confirm_delete(record.id)
    )


async def qr_button(
    callback: CallbackQuery,
    callback_data: SessionCb,
    service: SessionService,
    notifier: TelegramNotifier,
) -> None:
    await _show_qr(callback_data.sid, chat_of(callback), service, notifier)
    await callback.answer()


async def new_qr_button(
    callback: CallbackQuery,
    callback_data: SessionCb,
    service: SessionService,
    notifier: TelegramNotifier,
) -> None:
    await notifier.remember_chat(callback_data.sid, chat_of(callback))
    await service.request_new_qr(callback_data.sid)
    await callback.answer(texts.new_qr_requested(callback_data.sid)[:200])


async def restart_button(
    callback: CallbackQuery, callback_data: SessionCb, service: SessionService
) -> None:
    record = await service.restart(callback_data.sid)
    await callback.answer()
    if (shown := message_of(callback)) is not None:
        await shown.answer(texts.restarting(record))


async def delete_button(
    callback: CallbackQuery, callback_data: SessionCb, service: SessionService
) -> None:
    record = await service.get(callback_data.sid)
    await callback.answer()
    if (shown := message_of(callback)) is not None:
        await shown.answer(
            texts.confirm_delete(record), reply_markup=keyboards.confirm_delete(record.id)
        )


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


async def cancel_button(callback: CallbackQuery) -> None:
    await callback.answer()
    if (shown := message_of(callback)) is not None:
        await shown.edit_text(texts.cancelled())


def build_router() -> Router:
    """A fresh router each call, so a second dispatcher (a test, a restart) can be built."""
    router = Router(name="sessions")
    router.message.register(provision, Command("provision"))
    router.message.register(sessions, Command("sessions"))
    router.callback_query.register(sessions_page, PageCb.filter(F.what == View.SESSIONS))
    router.callback_query.register(sessions_button, ViewCb.filter(F.what == View.SESSIONS))
    router.message.register(find, Command("find"))
    router.message.register(status, Command("status"))
    router.message.register(qr, Command("qr"))
    router.message.register(restart, Command("restart"))
    router.message.register(delete, Command("delete"))
    router.callback_query.register(qr_button, SessionCb.filter(F.action == SessionAction.QR))
    router.callback_query.register(
        status_button, SessionCb.filter(F.action == SessionAction.STATUS)
    )
    router.callback_query.register(
        new_qr_button, SessionCb.filter(F.action == SessionAction.NEW_QR)
    )
    router.callback_query.register(
        restart_button, SessionCb.filter(F.action == SessionAction.RESTART)
    )
    router.callback_query.register(
        delete_button, SessionCb.filter(F.action == SessionAction.DELETE)
    )
    router.callback_query.register(
        confirm_delete_button, SessionCb.filter(F.action == SessionAction.CONFIRM_DELETE)
    )
    router.callback_query.register(
        cancel_button, SessionCb.filter(F.action == SessionAction.CANCEL)
    )
    return router
