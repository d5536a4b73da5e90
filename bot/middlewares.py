"""Access by role: one outer middleware, so nothing (not even a filter) runs for strangers,
and no action runs for viewers.

Which commands and buttons only read is decided in ``bot/roles.py``'s one table, here, for
every update: handlers never check roles themselves. A refused message that carries a proxy
URL is deleted all the same, as an admin's is: the refusal must not leave a password in the
chat. Registered after the i18n middleware, so a refusal is in the reader's language.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import CallbackQuery, Chat, Message, TelegramObject, User

from bot import texts
from bot.handlers.common import hide_proxy_url
from bot.roles import Role, button_reads_only, command_name, command_reads_only, role_of

log = logging.getLogger("wafleet.bot.access")


class Access(BaseMiddleware):
    def __init__(
        self, admin_ids: frozenset[int], viewer_ids: frozenset[int], chat_id: int | None
    ) -> None:
        self.admin_ids = admin_ids
        self.viewer_ids = viewer_ids
        self.chat_id = chat_id

    def role(self, user: User | None, chat: Chat | None) -> Role:
        return role_of(user, chat, self.admin_ids, self.viewer_ids, self.chat_id)

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        user: User | None = data.get("event_from_user")
        chat: Chat | None = data.get("event_chat")
        role = self.role(user, chat)
        data["role"] = role
        if role is Role.ADMIN:
            return await handler(event, data)
        if role is Role.VIEWER:
            if isinstance(event, Message):
                if command_name(event.text) is None:
                    return None  # a viewer chatting in the group: not for the bot, no answer
                if command_reads_only(event.text):
                    return await handler(event, data)
            elif isinstance(event, CallbackQuery) and button_reads_only(event.data):
                return await handler(event, data)
        self._log_refusal(role, user, chat, event)
        text = texts.viewer_refusal() if role is Role.VIEWER else texts.refusal()
        if isinstance(event, Message):
            # Refused or not, a command that carries a proxy URL carries its password: out of
            # the chat, as an admin's is (``/addproxy``, ``/provision <proxy>``).
            await hide_proxy_url(event)
            await event.answer(text)
        elif isinstance(event, CallbackQuery):
            await event.answer(text[:200], show_alert=True)
        return None

    @staticmethod
    def _log_refusal(
        role: Role, user: User | None, chat: Chat | None, event: TelegramObject
    ) -> None:
        attempt = ""
        if isinstance(event, Message):
            said = event.text or event.caption or "<no text>"
            # Never the words of a message with a URL: it may hold a password, and a cut at
            # 80 characters could leave one the log's redaction no longer recognises.
            if "://" in said:
                name = command_name(said)
                said = (f"/{name} " if name else "") + "<a URL, not logged>"
            attempt = said[:80]
        elif isinstance(event, CallbackQuery):
            attempt = "button " + (event.data or "")[:64]
        log.warning(
            "refused %s %s (@%s) in chat %s: %s",
            "viewer" if role is Role.VIEWER else "user",
            user.id if user else "-",
            user.username if user and user.username else "-",
            chat.id if chat else "-",
            attempt,
        )
