"""The one place errors become chat messages: domain errors say what was wrong, others are
logged. Handlers never ``try``: they let core's ``WafleetError`` reach this router."""

from __future__ import annotations

import logging

from aiogram import Bot, Router
from aiogram.filters import ExceptionTypeFilter
from aiogram.types import ErrorEvent

from bot import texts
from bot.handlers.common import UsageError
from core.errors import WafleetError

log = logging.getLogger("wafleet.bot")


async def _reply(event: ErrorEvent, bot: Bot, text: str) -> None:
    update = event.update
    if update.message is not None:
        await update.message.answer(text)
    elif update.callback_query is not None:
        callback = update.callback_query
        await callback.answer()
        chat = callback.message.chat.id if callback.message else callback.from_user.id
        await bot.send_message(chat, text)


async def usage_error(event: ErrorEvent, bot: Bot) -> None:
    assert isinstance(event.exception, UsageError)
    await _reply(event, bot, texts.usage(event.exception.command))


async def domain_error(event: ErrorEvent, bot: Bot) -> None:
    assert isinstance(event.exception, WafleetError)
    log.info("refused by core: %s: %s", event.exception.code, event.exception.message)
    await _reply(event, bot, texts.error(event.exception))


async def unexpected_error(event: ErrorEvent, bot: Bot) -> None:
    log.error("bot handler failed", exc_info=event.exception)
    await _reply(event, bot, texts.unexpected())


def build_router() -> Router:
    """A fresh router each call, so a second dispatcher (a test, a restart) can be built."""
    router = Router(name="errors")
    router.errors.register(usage_error, ExceptionTypeFilter(UsageError))
    router.errors.register(domain_error, ExceptionTypeFilter(WafleetError))
    router.errors.register(unexpected_error)
    return router
