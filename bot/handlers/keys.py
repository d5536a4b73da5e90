"""``/keys`` and ``/audit`` (admins only): the issued API keys and the latest of the audit
trail. Issuing, revoking and rotating stay in the API, where a key's value can be handed over
once without passing through a chat."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message

from bot.handlers.common import UsageError, args
from bot.texts import keys as key_texts
from core.api_keys import ApiKeys
from core.audit import Audit

LATEST = 15
MOST = 50


async def keys(message: Message, api_keys: ApiKeys) -> None:
    await message.answer(key_texts.keys(await api_keys.list()))


async def audit(message: Message, command: CommandObject, audit_trail: Audit) -> None:
    parts = args(command, 0, 1)
    n = LATEST
    if parts:
        if not parts[0].isdigit() or not 1 <= int(parts[0]) <= MOST:
            raise UsageError(command.command)
        n = int(parts[0])
    await message.answer(key_texts.audit(await audit_trail.latest(n)))


def build_router() -> Router:
    """A fresh router each call, so a second dispatcher (a test, a restart) can be built."""
    router = Router(name="keys")
    router.message.register(keys, Command("keys"))
    router.message.register(audit, Command("audit"))
    return router
