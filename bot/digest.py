"""The daily digest: the fleet picture plus what happened since the last one, one message.

Scheduled by ``serve`` on ``DIGEST_CRON`` and sent to the operators' chat
(``TELEGRAM_CHAT_ID``) in that chat's language. The counters are taken from the journal
atomically when the digest is made and given back if the message cannot be sent, so the
next digest tells them. With ``DIGEST_SKIP_EMPTY`` a quiet day sends nothing.
"""

from __future__ import annotations

import logging

import redis.asyncio as aioredis
from aiogram import Bot
from aiogram.types import BufferedInputFile

from bot import texts
from bot.handlers.stats import fleet_picture
from bot.i18n import CatalogueI18n, chat_locale
from bot.notifier import TelegramNotifier
from core.history import ConnectedHistory
from core.journal import Journal
from core.proxies import ProxyPool
from core.sessions import SessionService

log = logging.getLogger("wafleet.bot.digest")


class Digest:
    def __init__(
        self,
        bot: Bot,
        redis: aioredis.Redis,
        i18n: CatalogueI18n,
        chat_id: int,
        notifier: TelegramNotifier,
        service: SessionService,
        pool: ProxyPool,
        journal: Journal,
        skip_empty: bool,
    ) -> None:
        self.bot = bot
        self.redis = redis
        self.i18n = i18n
        self.chat_id = chat_id
        self.notifier = notifier
        self.service = service
        self.pool = pool
        self.journal = journal
        self.history = ConnectedHistory(redis, service.clock)
        self.skip_empty = skip_empty

    async def send(self) -> bool:
        """The scheduler's job: True if a digest reached the chat."""
        tally = await self.journal.take()
        if tally.empty and self.skip_empty:
            log.info("digest skipped: nothing happened since the last one")
            return False
        try:
            locale = await chat_locale(self.redis, self.chat_id)
            with self.i18n.use_locale(locale), self.i18n.context():
                fleet, png = await fleet_picture(self.pool, self.service, self.history)
                caption = texts.digest(tally, fleet, self.service.clock.now_ms())
            sent = await self.notifier.deliver(
                lambda: self.bot.send_photo(
                    self.chat_id, BufferedInputFile(png, "digest.png"), caption=caption
                )
            )
        except Exception:
            await self.journal.give_back(tally)
            raise
        if sent is None:
            log.warning("digest not delivered; its counts go into the next one")
            await self.journal.give_back(tally)
            return False
        log.info("digest sent: %s", {k.value: v for k, v in tally.counts.items() if v})
        return True
