"""The Telegram ops console: aiogram routers, middlewares, keyboards, texts and the notifier."""

from bot.deferred_types import import_aiogram_types_deferred

# Before any module of this package imports aiogram: its types are then built on first use,
# not all at import (~100 MB less in ``serve``; see ``bot/deferred_types.py``).
import_aiogram_types_deferred()
