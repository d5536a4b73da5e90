"""The Telegram ops console: aiogram routers, middlewares, keyboards, texts and the notifier."""
