"""Builds the bot and its dispatcher, and runs long polling inside ``wafleet serve``.

Services come from the composition root and reach handlers through
``dp.workflow_data``; nothing here is created at import time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import redis.asyncio as aioredis
from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ParseMode
from aiogram.types import BotCommand
from aiogram.utils.token import TokenValidationError, validate_token

from bot import texts
from bot.audit_trail import ChatAudit
from bot.digest import Digest
from bot.handlers import get_routers
from bot.i18n import (
    DEFAULT_LOCALE,
    LANGUAGES,
    CatalogueI18n,
    RedisI18nMiddleware,
    build_i18n,
)
from bot.middlewares import Access
from bot.notifier import TelegramNotifier
from core.api_keys import ApiKeys
from core.audit import Audit
from core.backups import BackupService
from core.errors import ConfigError
from core.history import ConnectedHistory
from core.journal import Journal
from core.proxies import ProxyPool
from core.sessions import SessionService
from core.settings import Settings
from core.tasks import TaskGroup

log = logging.getLogger("wafleet.bot")


def build_bot(settings: Settings) -> Bot:
    try:
        validate_token(settings.telegram_bot_token)
    except TokenValidationError:
        # Said without the value: a token must never reach a log.
        raise ConfigError("TELEGRAM_BOT_TOKEN is not a bot token (<digits>:<secret>)") from None
    session = AiohttpSession(api=TelegramAPIServer.from_base(settings.telegram_api_url))
    return Bot(
        settings.telegram_bot_token,
        session=session,
        default=DefaultBotProperties(parse_mode=ParseMode.HTML),
    )


def build_dispatcher(
    settings: Settings,
    redis: aioredis.Redis,
    i18n: CatalogueI18n,
    service: SessionService,
    pool: ProxyPool,
    backups: BackupService,
    notifier: TelegramNotifier,
) -> Dispatcher:
    dp = Dispatcher(name="wafleet")
    dp.workflow_data.update(
        service=service, pool=pool, backups=backups, notifier=notifier, redis=redis
    )
    dp.workflow_data["history"] = ConnectedHistory(redis, service.clock)
    # Order matters: i18n first, so the access check can refuse in the user's language. The
    # access check is the one place roles are decided (bot/roles.py), for every update.
    RedisI18nMiddleware(i18n, redis).setup(dp)
    access = Access(
        settings.telegram_admin_ids, settings.telegram_viewer_ids, settings.telegram_chat_id
    )
    # The audit trail wraps the access check, so refused attempts are entries too.
    trail = Audit(redis, service.clock, settings.audit_retention_days)
    dp.workflow_data["audit_trail"] = trail
    dp.workflow_data["api_keys"] = ApiKeys(redis, service.clock, settings.key_rotate_grace_s)
    audit = ChatAudit(trail)
    dp.message.outer_middleware(audit)
    dp.callback_query.outer_middleware(audit)
    dp.message.outer_middleware(access)
    dp.callback_query.outer_middleware(access)
    dp.include_routers(*get_routers())
    return dp


class TelegramBot:
    """The bot's life cycle inside ``serve``: start polling, and stop it cleanly."""

    def __init__(
        self,
        settings: Settings,
        redis: aioredis.Redis,
        service: SessionService,
        pool: ProxyPool,
        backups: BackupService,
        journal: Journal | None = None,
    ) -> None:
        """``journal``: the digest's counters; without it the digest (``self.digest``) is off."""
        assert settings.telegram_chat_id is not None  # settings refuse a token without it
        self.bot = build_bot(settings)
        self.i18n = build_i18n()
        self.notifier = TelegramNotifier(
            self.bot,
            redis,
            self.i18n,
            settings.telegram_chat_id,
            service.clock,
            topics=settings.telegram_alert_topics,
        )
        self.dp = build_dispatcher(
            settings, redis, self.i18n, service, pool, backups, self.notifier
        )
        self.digest = (
            None
            if journal is None
            else Digest(
                self.bot,
                redis,
                self.i18n,
                settings.telegram_chat_id,
                self.notifier,
                service,
                pool,
                journal,
                settings.digest_skip_empty,
            )
        )
        self.tasks = TaskGroup()
        self._stopping = False

    def start(self) -> None:
        self.notifier.start()
        self.tasks.spawn(self._register_commands(), name="telegram-commands")
        self.tasks.spawn(self._poll(), name="telegram-polling")

    async def _register_commands(self) -> None:
        """The command menu per language; Telegram picks it by the user's app language."""
        for code in LANGUAGES:
            with self.i18n.context(), self.i18n.use_locale(code):
                commands = texts.commands()
            await self._set_commands(commands, None if code == DEFAULT_LOCALE else code)

    async def _set_commands(self, commands: list[BotCommand], language: str | None) -> None:
        await self.notifier.deliver(
            lambda: self.bot.set_my_commands(commands, language_code=language)
        )

    async def _poll(self) -> None:
        """Long polling; restarted with backoff if it fails to start (e.g. ``getMe``)."""
        delay = 1.0
        while not self._stopping:
            try:
                await self.dp.start_polling(
                    self.bot, handle_signals=False, close_bot_session=False
                )
            except Exception:
                log.exception("Telegram polling failed; retrying in %.0f s", delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 60.0)

    async def stop_polling(self) -> None:
        """First step of shutdown: no new operator commands."""
        self._stopping = True
        with contextlib.suppress(RuntimeError, TimeoutError):  # RuntimeError: never started
            await asyncio.wait_for(self.dp.stop_polling(), 10)
        await self.tasks.cancel()

    async def close(self) -> None:
        """Last step: send what is queued (bounded), then close the HTTP session."""
        await self.stop_polling()
        await self.notifier.close()
        await self.bot.session.close()
        log.info("Telegram bot stopped")
