"""``/send``, ``/stop`` and ``/start_session`` (``/start`` is the greeting): thin, core decides."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message

from bot import texts
from bot.handlers.common import UsageError, one_arg
from core.sessions import SessionService


async def send(message: Message, command: CommandObject, service: SessionService) -> None:
    """``/send <id> <phone> <text>``: a test message through a session."""
    parts = (command.args or "").split(maxsplit=2)
    if len(parts) < 3:
        raise UsageError(command.command)
    sid, phone, text = parts
    sent, _ = await service.messages.accept(sid, phone, text)
    await message.answer(texts.message_accepted(sid, sent))


async def stop(message: Message, command: CommandObject, service: SessionService) -> None:
    record = await service.stop(one_arg(command))
    await message.answer(texts.stopped(record))


async def start_session(message: Message, command: CommandObject, service: SessionService) -> None:
    record = await service.start(one_arg(command))
    await message.answer(texts.started(record))


def build_router() -> Router:
    """A fresh router each call, so a second dispatcher (a test, a restart) can be built."""
    router = Router(name="messages")
    router.message.register(send, Command("send"))
    router.message.register(stop, Command("stop"))
    router.message.register(start_session, Command("start_session"))
    return router
