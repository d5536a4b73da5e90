"""``/nodes``: where the workers run, and how many sessions each node holds."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command
from aiogram.types import Message

from bot import texts
from core import fleet_stats
from core.proxies import ProxyPool
from core.sessions import SessionService


async def nodes(message: Message, pool: ProxyPool, service: SessionService) -> None:
    stats = await fleet_stats.with_nodes(await pool.stats(), service.runner)
    await message.answer(texts.nodes(list(stats.nodes)))


def build_router() -> Router:
    """A fresh router each call, so a second dispatcher (a test, a restart) can be built."""
    router = Router(name="nodes")
    router.message.register(nodes, Command("nodes"))
    return router
