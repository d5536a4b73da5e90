"""The proxy pool: list with load (paged, filtered by status), add at run time (by command,
or by button then a message holding the URL), remove by button."""

from __future__ import annotations

import contextlib

from aiogram import F, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command, CommandObject, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message

from bot import keyboards, paging, texts
from bot.handlers.common import args, hide_proxy_url, message_of, one_arg
from bot.keyboards import AskCb, PageCb, ProxyCb, View, ViewCb
from core.models import ProxyStatus
from core.proxies import ProxyPool

# 10 proxies a page: even with long hosts and user names far within 4,096 characters, and
# 10 remove buttons + 4 to page far within Telegram's 100. 2,500 proxies: 250 pages, or
# ``/proxies bad`` for the ones that need a look.
PAGE_SIZE = 10


class AddProxy(StatesGroup):
    """After "Add proxy": the next message of that admin in that chat is the URL."""

    url = State()


async def _page(
    pool: ProxyPool, page: int, status: str = ""
) -> tuple[str, InlineKeyboardMarkup | None]:
    """The listing's page ``page`` as text and buttons, as ``/sessions`` pages its own."""
    records = await pool.all_proxies()
    if status:
        records = [r for r in records if r.status == status]
    shown = paging.page_of(records, page, PAGE_SIZE)
    return texts.proxies(shown, pool.cap, status), keyboards.proxy_buttons(shown, status)


async def proxies(message: Message, command: CommandObject, pool: ProxyPool) -> None:
    parts = args(command, 0, 1)
    status = parts[0].lower() if parts else ""
    if status and status not in set(ProxyStatus):
        await message.answer(texts.unknown_proxy_status(parts[0]))
        return
    text, markup = await _page(pool, 0, status)
    await message.answer(text, reply_markup=markup)


async def proxies_page(callback: CallbackQuery, callback_data: PageCb, pool: ProxyPool) -> None:
    status = callback_data.status if callback_data.status in set(ProxyStatus) else ""
    text, markup = await _page(pool, callback_data.page, status)
    if (shown := message_of(callback)) is not None:
        with contextlib.suppress(TelegramBadRequest):  # the same page again: "not modified"
            await shown.edit_text(text, reply_markup=markup)
    await callback.answer()


async def proxies_button(callback: CallbackQuery, pool: ProxyPool) -> None:
    await callback.answer()
    if (shown := message_of(callback)) is not None:
        text, markup = await _page(pool, 0)
        await shown.answer(text, reply_markup=markup)


async def add_proxy(message: Message, command: CommandObject, pool: ProxyPool) -> None:
    await hide_proxy_url(message)
    record = await pool.add_from_input(one_arg(command))
    await message.answer(texts.proxy_added(record))


async def ask_proxy_button(callback: CallbackQuery, state: FSMContext) -> None:
    await state.set_state(AddProxy.url)
    await callback.answer()
    if (shown := message_of(callback)) is not None:
        await shown.answer(texts.ask_proxy_url())


async def proxy_url_given(message: Message, state: FSMContext, pool: ProxyPool) -> None:
    """The awaited URL: out of the chat first (it holds a password), then added. One try:
    a bad URL gets the pool's clear error and the wait ends."""
    await state.clear()
    await hide_proxy_url(message, always=True)
    record = await pool.add_from_input((message.text or "").strip())
    await message.answer(texts.proxy_added(record))


async def remove_proxy(callback: CallbackQuery, callback_data: ProxyCb, pool: ProxyPool) -> None:
    record = await pool.get(callback_data.pid)
    await pool.remove(record.url)
    await callback.answer()
    if (shown := message_of(callback)) is not None:
        await shown.answer(texts.proxy_removed(record.masked))
        status = callback_data.status if callback_data.status in set(ProxyStatus) else ""
        text, markup = await _page(pool, callback_data.page, status)
        with contextlib.suppress(TelegramBadRequest):  # the listing is gone or too old
            await shown.edit_text(text, reply_markup=markup)


def build_router() -> Router:
    """A fresh router each call, so a second dispatcher (a test, a restart) can be built."""
    router = Router(name="proxies")
    router.message.register(proxies, Command("proxies"))
    router.message.register(add_proxy, Command("addproxy"))
    router.message.register(
        proxy_url_given, StateFilter(AddProxy.url), F.text, ~F.text.startswith("/")
    )
    router.callback_query.register(proxies_page, PageCb.filter(F.what == View.PROXIES))
    router.callback_query.register(proxies_button, ViewCb.filter(F.what == View.PROXIES))
    router.callback_query.register(ask_proxy_button, AskCb.filter(F.what == "proxy"))
    router.callback_query.register(remove_proxy, ProxyCb.filter())
    return router
