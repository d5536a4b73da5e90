"""``/stats``: the fleet in numbers."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command
from aiogram.types import Message

from bot import texts
from core.proxies import ProxyPool
from core.sessions import SessionService


async def stats(message: Message, pool: ProxyPool, service: SessionService) -> None:
    await message.answer(texts.stats(await pool.stats(), service.starting))


def build_router() -> Router:
    """A fresh router each call, so a second dispatcher (a test, a restart) can be built."""
    router = Router(name="stats")
    router.message.register(stats, Command("stats"))
    return router
