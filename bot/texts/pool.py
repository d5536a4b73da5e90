"""The proxy pool (``bot/handlers/proxies.py``): the paged listing with each proxy's load,
adding and removing. Named ``pool`` because ``proxies`` is the listing's own function."""

from __future__ import annotations

from aiogram import html
from aiogram.utils.i18n import gettext as _

from bot.paging import Page
from bot.texts.common import bounded
from core.models import ProxyRecord, ProxyStatus


def ask_proxy_url() -> str:
    return _(
        "Send the proxy URL as your next message here, e.g. "
        "socks5h://user:pass@host:1080 — I delete your message as soon as I read it."
    )


def proxy_status_name(status: str) -> str:
    return _("active") if status == ProxyStatus.ACTIVE else _("bad")


def proxies(shown: Page[ProxyRecord], cap: int, status: str = "") -> str:
    """A page of the pool, numbered as in the whole listing, with each proxy's load."""
    if not shown.total:
        if status:
            return _("No proxy is {status} now.").format(status=proxy_status_name(status))
        return _("The pool is empty. Add a proxy with /addproxy socks5h://user:pass@host:port")
    where = {"n": shown.total, "page": shown.number + 1, "pages": shown.count}
    if status:
        head = _("Proxies {status} ({n}), page {page} of {pages}; load in sessions / cap:")
        head = head.format(status=proxy_status_name(status), **where)
    else:
        head = _("Proxies ({n}), page {page} of {pages}; load in sessions / cap:").format(**where)
    lines = [head]
    for n, record in enumerate(shown.items, shown.first):
        lines.append(
            f"{n}. {html.code(html.quote(record.masked))} · "
            f"{proxy_status_name(record.status)} · {record.sessions}/{cap}"
        )
    return bounded(lines)


def unknown_proxy_status(given: str) -> str:
    return _("There is no proxy status {given}. Filter by one of: {known}").format(
        given=html.code(html.quote(given[:40])),
        known=", ".join(html.code(s.value) for s in ProxyStatus),
    )


def proxy_added(record: ProxyRecord) -> str:
    return _("➕ Added {proxy} to the pool.").format(proxy=html.code(html.quote(record.masked)))


def proxy_removed(masked: str) -> str:
    return _("➖ Removed {proxy} from the pool.").format(proxy=html.code(html.quote(masked)))
