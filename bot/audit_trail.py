"""The chat's side of the audit trail: each command or button that changes the fleet is an
entry (actor ``tg:<user id>``), done or refused, like the REST API's.

An outer middleware registered before the access check, so a stranger's or a viewer's
attempt is recorded too (the access check has put the caller's role in ``data`` by the time
it returns). Only the action and the session are written: never a message's text or a
proxy URL from the command.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import CallbackQuery, Message, TelegramObject, User

from bot.handlers.common import UsageError
from bot.roles import Role, command_name
from core.audit import Audit, Entry
from core.errors import WafleetError

log = logging.getLogger("wafleet.bot.audit")

COMMANDS = {
    "provision": "provision",
    "restart": "restart",
    "delete": "delete",
    "qr": "qr",
    "send": "message",
    "stop": "stop",
    "start_session": "start",
    "addproxy": "proxy_add",
    "backup": "backup",
}
# Buttons by their callback data's first two parts (``prefix:action``) or prefix alone.
BUTTONS = {
    "s:qr": "qr",
    "s:newqr": "qr",
    "s:restart": "restart",
    "s:del!": "delete",
    "b:restore!": "restore",
    "p": "proxy_remove",
}
_SESSION = re.compile(r"[A-Za-z0-9_]{1,40}")


def action_of(event: TelegramObject) -> tuple[str, str | None] | None:
    """``(action, session id or None)`` of an update that changes the fleet; None for reads."""
    if isinstance(event, Message):
        name = command_name(event.text)
        action = COMMANDS.get(name or "")
        if action is None:
            return None
        words = (event.text or "").split()
        first = words[1] if len(words) > 1 and action != "provision" else None
        # An id or a phone: an id is recorded as the session, a phone or a URL never.
        sid = (
            first if first and first.startswith("worker_") and _SESSION.fullmatch(first) else None
        )
        return action, sid
    if isinstance(event, CallbackQuery):
        parts = (event.data or "").split(":")
        action = BUTTONS.get(":".join(parts[:2])) or BUTTONS.get(parts[0])
        if action is None:
            return None
        sid = parts[2] if parts[0] == "s" and len(parts) > 2 else None
        return action, sid
    return None


class ChatAudit(BaseMiddleware):
    def __init__(self, audit: Audit) -> None:
        self.audit = audit

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        found = action_of(event)
        if found is None:
            return await handler(event, data)
        action, session = found
        user: User | None = data.get("event_from_user")
        actor = f"tg:{user.id}" if user is not None else "tg:unknown"
        try:
            result = await handler(event, data)
        except WafleetError as exc:
            await self._record(actor, action, session, exc.code)
            raise
        except UsageError:
            await self._record(actor, action, session, "usage")
            raise
        refused = None if data.get("role") is Role.ADMIN else "forbidden"
        await self._record(actor, action, session, refused)
        return result

    async def _record(
        self, actor: str, action: str, session: str | None, reason: str | None
    ) -> None:
        entry = Entry(
            actor=actor,
            via="chat",
            action=action,
            result="done" if reason is None else "refused",
            session=session,
            reason=reason,
        )
        try:
            await self.audit.record(entry)
        except Exception:  # the chat answers even when the trail cannot be written
            log.exception("audit entry for %s by %s not written", action, actor)
