"""``/stats``: the fleet as a picture, with the numbers as its caption."""

from __future__ import annotations

import asyncio

from aiogram import Router
from aiogram.filters import Command
from aiogram.types import BufferedInputFile, Message

from bot import charts, texts
from core import fleet_stats
from core.fleet_stats import FleetStats
from core.history import ConnectedHistory
from core.proxies import ProxyPool
from core.sessions import SessionService


async def fleet_picture(
    pool: ProxyPool, service: SessionService, history: ConnectedHistory
) -> tuple[FleetStats, bytes]:
    """One count of the fleet and its picture in the current locale (drawn in a thread, off
    the event loop), so the caption built from the count tells what the picture shows."""
    fleet = await fleet_stats.with_nodes(await pool.stats(), service.runner)
    picture = texts.stats_picture(fleet, await history.since(), service.clock.now_ms(), pool.cap)
    return fleet, await asyncio.to_thread(charts.render, picture)


async def stats(
    message: Message, pool: ProxyPool, service: SessionService, history: ConnectedHistory
) -> None:
    fleet, png = await fleet_picture(pool, service, history)
    sent = texts.fleet_counts(await service.messages.fleet_counts())
    caption = f"{texts.stats(fleet, service.starting)}\n{sent}"
    await message.answer_photo(BufferedInputFile(png, "fleet.png"), caption=caption)


def build_router() -> Router:
    """A fresh router each call, so a second dispatcher (a test, a restart) can be built."""
    router = Router(name="stats")
    router.message.register(stats, Command("stats"))
    return router
