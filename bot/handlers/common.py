"""Small helpers the handlers share: argument splitting and where to answer a button."""

from __future__ import annotations

import contextlib

from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import CommandObject
from aiogram.types import CallbackQuery, Message


class UsageError(Exception):
    """A command with the wrong number of arguments; the error router answers with usage."""

    def __init__(self, command: str) -> None:
        super().__init__(command)
        self.command = command


def args(command: CommandObject, least: int, most: int) -> list[str]:
    parts = (command.args or "").split()
    if not least <= len(parts) <= most:
        raise UsageError(command.command)
    return parts


def one_arg(command: CommandObject) -> str:
    return args(command, 1, 1)[0]


def chat_of(callback: CallbackQuery) -> int:
    """The chat a button was pressed in (its message may be too old to be accessible)."""
    return callback.message.chat.id if callback.message else callback.from_user.id


def message_of(callback: CallbackQuery) -> Message | None:
    return callback.message if isinstance(callback.message, Message) else None


async def hide_proxy_url(message: Message, always: bool = False) -> None:
    """A command carrying a proxy URL carries its password: take it out of the chat first,
    before anything can fail and leave it there. ``always``: a message that was asked for as
    a URL goes even when it does not look like one (a URL mistyped still holds a password)."""
    if always or "://" in (message.text or ""):
        with contextlib.suppress(TelegramBadRequest):
            await message.delete()
