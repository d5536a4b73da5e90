"""``/stats``: the fleet in numbers."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command
from aiogram.types import Message

from bot import texts
from core.proxies import ProxyPool
from core.sessions import SessionService

router = Router(name="stats")


@router.message(Command("stats"))
async def stats(message: Message, service: SessionService, pool: ProxyPool) -> None:
    free, total = await pool.free_slots()
    await message.answer(
        texts.stats(await service.all_sessions(), await pool.all_proxies(), free, total)
    )
