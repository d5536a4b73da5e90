"""Builds the bot and its dispatcher, and runs long polling inside ``wafleet serve``.

Services come from the composition root and reach handlers through
``dp.workflow_data``; nothing here is created at import time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import redis.asyncio as aioredis
from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ParseMode
from aiogram.methods import GetUpdates, TelegramMethod
from aiogram.types import BotCommand, Update
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
from bot.promise import MarkActions, WaitBeforeAnswer
from core.api_keys import ApiKeys
from core.audit import Audit
from core.backups import BackupService
from core.errors import ConfigError
from core.history import ConnectedHistory
from core.journal import Journal
from core.promise import Promises
from core.proxies import ProxyPool
from core.sessions import SessionService
from core.settings import Settings
from core.tasks import TaskGroup

log = logging.getLogger("wafleet.bot")

POLL_TIMEOUT_S = 10  # how long Telegram holds a getUpdates open when nothing comes
# A poll must end this long before the lease does, by this replica's clock (whole seconds:
# Telegram's timeout is one); LEADER_LEASE_MS's minimum leaves room for a one-second poll.
POLL_SPARE_S = 1


def build_bot(settings: Settings, promises: Promises | None = None) -> Bot:
    """``promises``: with Redis Sentinel, the answer to an operator's action waits for a
    replica (bot/promise.py)."""
    try:
        validate_token(settings.telegram_bot_token)
    except TokenValidationError:
        # Said without the value: a token must never reach a log.
        raise ConfigError("TELEGRAM_BOT_TOKEN is not a bot token (<digits>:<secret>)") from None
    session = AiohttpSession(api=TelegramAPIServer.from_base(settings.telegram_api_url))
    if promises is not None:
        session.middleware(WaitBeforeAnswer(promises))
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
    promises: Promises | None = None,
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
    if promises is not None:  # after the access check: it marks an admin's actions only
        dp.message.outer_middleware(MarkActions(promises))
        dp.callback_query.outer_middleware(MarkActions(promises))
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
        promises: Promises | None = None,
    ) -> None:
        """``journal``: the digest's counters; without it the digest (``self.digest``) is off.
        ``promises``: with Redis Sentinel, an action's answer waits for a replica."""
        assert settings.telegram_chat_id is not None  # settings refuse a token without it
        self.bot = build_bot(settings, promises)
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
            settings, redis, self.i18n, service, pool, backups, self.notifier, promises
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
        self._polling: asyncio.Task[None] | None = None

    def start(self, lead: bool = True) -> None:
        """``lead`` False: a replica that is not the leader yet; ``lead`` starts the polling
        and the alerts when it wins the lease, ``follow`` stops them when it loses it."""
        self.notifier.start(alerts=False)
        self.tasks.spawn(self._register_commands(), name="telegram-commands")
        if lead:
            self.lead(lambda: 3600.0)

    def lead(self, lease_left_s: Callable[[], float]) -> None:
        """Poll and send alerts while ``lease_left_s()`` (this replica's lease, by its own
        clock) leaves room: Telegram answers a second poller with 409, and two leaders
        would both act on one operator's command."""
        self.notifier.lead(lambda: lease_left_s() > 0)
        if self._polling is None or self._polling.done():
            self._polling = self.tasks.spawn(self._poll(lease_left_s), name="telegram-polling")

    async def follow(self) -> None:
        """This replica lost the lease: no poll from here on, no alert sent."""
        if self._polling is not None:
            self._polling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._polling
            self._polling = None
        await self.notifier.follow()

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

    async def _poll(self, lease_left_s: Callable[[], float]) -> None:
        """Long polling that never outlives the lease: each ``getUpdates`` asks Telegram to
        hold it no longer than the lease has left minus ``POLL_SPARE_S``, so even a poll
        sent just before this replica froze has ended when another can win the lease and
        poll. A poll that comes back after the lease ran out is not handled: its updates
        were not confirmed (no next offset was sent), so the next leader gets them."""
        await self.bot.me()  # a wrong token fails here, once, and is logged
        allowed = self.dp.resolve_used_update_types()
        offset: int | None = None
        delay = 1.0
        while not self._stopping:
            wait_s = min(POLL_TIMEOUT_S, int(lease_left_s() - POLL_SPARE_S))
            if wait_s < 1:
                await asyncio.sleep(0.1)  # the lease is about to be renewed (or lost)
                continue
            try:
                updates = await self.bot(
                    GetUpdates(offset=offset, timeout=wait_s, allowed_updates=allowed),
                    request_timeout=wait_s + POLL_SPARE_S + 10,
                )
                delay = 1.0
            except Exception as exc:
                log.warning("Telegram polling failed (%s); again in %.0f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 60.0)
                continue
            if lease_left_s() <= 0:
                log.warning("the lease ran out during a poll: its updates are the next leader's")
                return
            for update in updates:
                offset = update.update_id + 1
                self.tasks.spawn(self._handle(update), name=f"telegram-update-{update.update_id}")

    async def _handle(self, update: Update) -> None:
        try:
            answer = await self.dp.feed_update(self.bot, update)
            if isinstance(answer, TelegramMethod):
                await self.dp.silent_call_request(bot=self.bot, result=answer)
        except Exception:
            log.exception("could not handle Telegram update %d", update.update_id)

    async def stop_polling(self) -> None:
        """First step of shutdown: no new operator commands."""
        self._stopping = True
        await self.follow()
        await self.tasks.cancel()

    async def close(self) -> None:
        """Last step: send what is queued (bounded), then close the HTTP session."""
        await self.stop_polling()
        await self.notifier.close()
        await self.bot.session.close()
        log.info("Telegram bot stopped")
