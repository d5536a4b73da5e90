"""The bot's languages: gettext catalogues compiled in memory, the choice kept in Redis.

The ``.po`` files are the source of truth and the only thing shipped; compiling them at
start (Babel) means a stale ``.mo`` can never disagree with what the repository says.
"""

from __future__ import annotations

import gettext
import io
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from aiogram.types import TelegramObject, User
from aiogram.utils.i18n import I18n, I18nMiddleware
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

from core import keys

DOMAIN = "messages"
DEFAULT_LOCALE = "en"
LANGUAGES = {"en": "English", "he": "עברית"}


def locales_dir() -> Path:
    return Path(str(resources.files("locales")))


def compile_catalogue(po_path: Path) -> gettext.GNUTranslations:
    with po_path.open("rb") as source:
        catalog = read_po(source)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return gettext.GNUTranslations(buffer)


class CatalogueI18n(I18n):
    """aiogram's ``I18n``, reading ``.po`` catalogues instead of pre-compiled ``.mo``."""

    @contextmanager
    def context(self) -> Iterator[I18n]:
        # ContextInstanceMixin gives every subclass its own context variable, but
        # ``gettext``/``_`` look the instance up on ``I18n``'s: set that one.
        token = I18n.set_current(self)
        try:
            yield self
        finally:
            I18n.reset_current(token)

    def find_locales(self) -> dict[str, gettext.GNUTranslations]:
        found: dict[str, gettext.GNUTranslations] = {}
        for folder in sorted(self.path.iterdir()):
            po_path = folder / "LC_MESSAGES" / f"{self.domain}.po"
            if po_path.is_file():
                found[folder.name] = compile_catalogue(po_path)
        return found


def build_i18n() -> CatalogueI18n:
    return CatalogueI18n(path=locales_dir(), default_locale=DEFAULT_LOCALE, domain=DOMAIN)


async def chat_locale(redis: aioredis.Redis, chat_id: int) -> str:
    stored = await redis.get(keys.bot_lang(chat_id))
    return str(stored) if stored in LANGUAGES else DEFAULT_LOCALE


async def set_locale(redis: aioredis.Redis, user_id: int, locale: str) -> None:
    await redis.set(keys.bot_lang(user_id), locale)


class RedisI18nMiddleware(I18nMiddleware):
    """The user's ``/lang`` choice from Redis, else their Telegram language, else English."""

    def __init__(self, i18n: I18n, redis: aioredis.Redis) -> None:
        super().__init__(i18n)
        self.redis = redis

    async def get_locale(self, event: TelegramObject, data: dict[str, Any]) -> str:
        user: User | None = data.get("event_from_user")
        if user is None:
            return DEFAULT_LOCALE
        stored = await self.redis.get(keys.bot_lang(user.id))
        if stored in LANGUAGES:
            return str(stored)
        code = (user.language_code or "").split("-")[0]
        return code if code in LANGUAGES else DEFAULT_LOCALE
