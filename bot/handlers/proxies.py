"""The proxy pool: list with load, add at run time (by command, or by button then a message
holding the URL), remove by button."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import Command, CommandObject, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, Message

from bot import keyboards, texts
from bot.handlers.common import hide_proxy_url, message_of, one_arg
from bot.keyboards import AskCb, ProxyCb, View, ViewCb
from core.proxies import ProxyPool


class AddProxy(StatesGroup):
    """After "Add proxy": the next message of that admin in that chat is the URL."""

    url = State()


async def _show(target: Message, pool: ProxyPool) -> None:
    records = await pool.all_proxies()
    await target.answer(
        texts.proxies(records, pool.cap), reply_markup=keyboards.proxy_buttons(records)
    )


async def proxies(message: Message, pool: ProxyPool) -> None:
    await _show(message, pool)


async def proxies_button(callback: CallbackQuery, pool: ProxyPool) -> None:
    await callback.answer()
    if (shown := message_of(callback)) is not None:
        await _show(shown, pool)


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
        records = await pool.all_proxies()
        await shown.answer(texts.proxy_removed(record.masked))
        await shown.edit_text(
            texts.proxies(records, pool.cap), reply_markup=keyboards.proxy_buttons(records)
        )


def build_router() -> Router:
    """A fresh router each call, so a second dispatcher (a test, a restart) can be built."""
    router = Router(name="proxies")
    router.message.register(proxies, Command("proxies"))
    router.message.register(add_proxy, Command("addproxy"))
    router.message.register(
        proxy_url_given, StateFilter(AddProxy.url), F.text, ~F.text.startswith("/")
    )
    router.callback_query.register(proxies_button, ViewCb.filter(F.what == View.PROXIES))
    router.callback_query.register(ask_proxy_button, AskCb.filter(F.what == "proxy"))
    router.callback_query.register(remove_proxy, ProxyCb.filter())
    return router
