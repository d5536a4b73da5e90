"""``/stats``: the fleet in numbers."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command
from aiogram.types import Message

from bot import texts
from core.proxies import ProxyPool

router = Router(name="stats")


@router.message(Command("stats"))
async def stats(message: Message, pool: ProxyPool) -> None:
    await message.answer(texts.stats(await pool.stats()))
