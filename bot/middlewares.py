"""Admin-only access: an outer middleware, so nothing (not even a filter) runs for strangers.

Registered after the i18n middleware, so the refusal is in the stranger's language.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import CallbackQuery, Chat, Message, TelegramObject, User

from bot import texts

log = logging.getLogger("wafleet.bot.access")


class AdminOnly(BaseMiddleware):
    def __init__(self, admin_ids: frozenset[int], chat_id: int | None) -> None:
        self.admin_ids = admin_ids
        self.chat_id = chat_id

    def allowed(self, user: User | None, chat: Chat | None) -> bool:
        if user is not None and user.id in self.admin_ids:
            return True
        return chat is not None and self.chat_id is not None and chat.id == self.chat_id

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        user: User | None = data.get("event_from_user")
        chat: Chat | None = data.get("event_chat")
        if self.allowed(user, chat):
            return await handler(event, data)
        attempt = ""
        if isinstance(event, Message):
            attempt = (event.text or event.caption or "<no text>")[:80]
        elif isinstance(event, CallbackQuery):
            attempt = "button " + (event.data or "")[:64]
        log.warning(
            "refused user %s (@%s) in chat %s: %s",
            user.id if user else "-",
            user.username if user and user.username else "-",
            chat.id if chat else "-",
            attempt,
        )
        if isinstance(event, Message):
            await event.answer(texts.refusal())
        elif isinstance(event, CallbackQuery):
            await event.answer(texts.refusal(), show_alert=True)
        return None
