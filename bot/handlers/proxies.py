"""The proxy pool: list with load, add at run time, remove by button."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command, CommandObject
from aiogram.types import CallbackQuery, Message

from bot import keyboards, texts
from bot.handlers.common import hide_proxy_url, message_of, one_arg
from bot.keyboards import ProxyCb
from core.proxies import ProxyPool


async def proxies(message: Message, pool: ProxyPool) -> None:
    records = await pool.all_proxies()
    await message.answer(
        texts.proxies(records, pool.cap), reply_markup=keyboards.proxy_buttons(records)
    )


async def add_proxy(message: Message, command: CommandObject, pool: ProxyPool) -> None:
    await hide_proxy_url(message)
    record = await pool.add_from_input(one_arg(command))
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
    router.callback_query.register(remove_proxy, ProxyCb.filter())
    return router
