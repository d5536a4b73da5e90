"""``/lang``: each operator picks English or Hebrew; the choice is kept in Redis."""

from __future__ import annotations

import redis.asyncio as aioredis
from aiogram import Bot, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import BotCommandScopeChat, CallbackQuery, Message
from aiogram.utils.i18n import I18n

from bot import keyboards, texts
from bot.i18n import LANGUAGES, set_locale
from bot.keyboards import LangCb


async def _switch(
    bot: Bot, redis: aioredis.Redis, i18n: I18n, user: int, chat: int, code: str
) -> str:
    """The user's language; in a group also the group's, which its alerts use."""
    await set_locale(redis, user, code)
    if chat != user:
        await set_locale(redis, chat, code)
    with i18n.use_locale(code):
        await bot.set_my_commands(texts.commands(), scope=BotCommandScopeChat(chat_id=chat))
        return texts.language_set()


async def lang(
    message: Message, command: CommandObject, bot: Bot, redis: aioredis.Redis, i18n: I18n
) -> None:
    code = (command.args or "").strip().lower()
    if code not in LANGUAGES or message.from_user is None:
        await message.answer(texts.language_prompt(), reply_markup=keyboards.languages())
        return
    await message.answer(
        await _switch(bot, redis, i18n, message.from_user.id, message.chat.id, code)
    )


async def lang_button(
    callback: CallbackQuery, callback_data: LangCb, bot: Bot, redis: aioredis.Redis, i18n: I18n
) -> None:
    code = callback_data.code if callback_data.code in LANGUAGES else "en"
    chat = callback.message.chat.id if callback.message else callback.from_user.id
    text = await _switch(bot, redis, i18n, callback.from_user.id, chat, code)
    await callback.answer()
    await bot.send_message(chat, text)


def build_router() -> Router:
    """A fresh router each call, so a second dispatcher (a test, a restart) can be built."""
    router = Router(name="lang")
    router.message.register(lang, Command("lang"))
    router.callback_query.register(lang_button, LangCb.filter())
    return router
