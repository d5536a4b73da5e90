"""What the bot says when it does nothing: a refusal by role, a usage hint, core's error."""

from __future__ import annotations

from aiogram import html
from aiogram.utils.i18n import gettext as _

from core.errors import WafleetError

MAX_DETAIL = 300  # of an error's message from core, in a chat answer


def refusal() -> str:
    return _("Sorry, this bot only answers its operators. Nothing was done.")


def viewer_refusal() -> str:
    return _("You can look, not act: you are a viewer here. Ask an admin. Nothing was done.")


def usage(command: str) -> str:
    examples = {
        "find": "/find 97250",
        "status": "/status worker_1",
        "qr": "/qr worker_1",
        "restart": "/restart worker_1",
        "delete": "/delete worker_1",
        "send": "/send worker_1 972501234567 hello",
        "stop": "/stop worker_1",
        "start_session": "/start_session worker_1",
        "addproxy": "/addproxy socks5h://user:pass@host:1080",
        "lang": "/lang he",
        "restore": "/restore backup_2025-01-31",
        "audit": "/audit 20",
    }
    return _("Missing or extra arguments. Example: {example}").format(
        example=html.code(examples.get(command, "/" + command))
    )


def error(exc: WafleetError) -> str:
    titles = {
        "invalid_input": _("That input is not valid."),
        "not_found": _("Not found."),
        "conflict": _("Not possible right now."),
        "phone_limit": _("This phone already has its maximum number of sessions."),
        "qr_unavailable": _("There is no QR to show."),
        "no_proxy_capacity": _("No proxy capacity for that."),
        "redis_unavailable": _(
            "Not confirmed: Redis could not copy this to a replica in time. It may or may "
            "not have been done: check (/status) before you repeat it."
        ),
    }
    title = titles.get(exc.code, _("That did not work."))
    # Core's message may quote what was typed, up to a whole message long: cut, so the
    # answer still fits in one.
    detail = exc.message if len(exc.message) <= MAX_DETAIL else exc.message[:MAX_DETAIL] + "…"
    return _("❌ {title}\n{detail}\nNothing was changed.").format(
        title=title, detail=html.italic(html.quote(detail))
    )


def unexpected() -> str:
    return _("❌ Something went wrong on our side; it is in the log. Nothing else was changed.")
