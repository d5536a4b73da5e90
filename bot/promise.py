"""An operator's action in the chat is a promise too: its answer waits for a Redis replica.

What the REST API does for a 2xx (api/promise.py, core/promise.py), the chat does for the
answer to an action (the commands and buttons the audit trail records as changing the
fleet): "restarting worker_7" is not said until what the restart wrote is on a replica, so a
primary lost right after cannot take back what the chat already told the operator. Reads
(``/status``, ``/sessions``) answer as they are: they promise nothing, and must go on while
no replica can take a write.

Two parts, because aiogram sends the answer from inside the handler: an outer middleware
marks the update being handled as an action (a context variable, so the mark follows the
handler and nothing else), and a request middleware on the bot's session waits before any
Bot API call made under that mark. Not confirmed in time: ``NotReplicated`` leaves the
handler, the mark is gone by then, and the error router says so in the chat ("not
confirmed": the operator checks before repeating), as the API's 503 does. Alerts, the digest
and the QR messages are sent outside any update: they wait for nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from aiogram import BaseMiddleware
from aiogram.client.session.middlewares.base import (
    BaseRequestMiddleware,
    NextRequestMiddlewareType,
)
from aiogram.methods.base import TelegramType
from aiogram.types import TelegramObject

from bot.audit_trail import action_of
from bot.roles import Role
from core.promise import Promises

if TYPE_CHECKING:
    from aiogram.client.bot import Bot
    from aiogram.methods import Response, TelegramMethod

# Set while an admin's action is handled: the primary-switch mark it started at.
_ACTION: ContextVar[int | None] = ContextVar("wafleet_chat_action", default=None)


class MarkActions(BaseMiddleware):
    """Registered after the access check: only an admin's action is marked (a refusal
    changes nothing, so it has nothing to wait for)."""

    def __init__(self, promises: Promises) -> None:
        self.promises = promises

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        if data.get("role") is not Role.ADMIN or action_of(event) is None:
            return await handler(event, data)
        token = _ACTION.set(self.promises.switches())
        try:
            return await handler(event, data)
        finally:
            _ACTION.reset(token)


class WaitBeforeAnswer(BaseRequestMiddleware):
    def __init__(self, promises: Promises) -> None:
        self.promises = promises

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Response[TelegramType]:
        since = _ACTION.get()
        if since is not None:
            try:
                await self.promises.keep(since)
            except BaseException:
                _ACTION.set(None)  # the error's own answer goes out without waiting
                raise
        return await make_request(bot, method)
