"""``/start`` and ``/help``: what the bot does and every command."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command, CommandStart
from aiogram.types import Message

from bot import texts


async def start(message: Message) -> None:
    await message.answer(texts.help_text())


def build_router() -> Router:
    """A fresh router each call, so a second dispatcher (a test, a restart) can be built."""
    router = Router(name="start")
    router.message.register(start, Command("help"))
    router.message.register(start, CommandStart())
    return router
