"""The fleet's numbers (``bot/handlers/stats.py``, ``nodes.py``, ``bot/digest.py``): the
``/stats`` caption and picture, the daily digest, and the nodes with their sessions."""

from __future__ import annotations

from aiogram import html
from aiogram.utils.i18n import get_i18n, ngettext
from aiogram.utils.i18n import gettext as _

from bot import charts
from bot.texts.common import sessions_count, status_name
from core.bulk_start import BulkStart
from core.fleet_stats import FleetStats
from core.history import DAY_MS, Sample
from core.journal import Happened, Tally
from core.models import ProxyStatus, Status
from core.runner import NodeInfo


def stats(fleet: FleetStats, starting: BulkStart | None = None) -> str:
    lines = [_("Sessions: {n}").format(n=fleet.sessions)]
    lines += [
        f"• {status_name(s)}: {fleet.by_status[s]}" for s in Status if fleet.by_status.get(s)
    ]
    lines.append(
        _("Proxies: {active} active, {bad} bad").format(
            active=fleet.proxies_active, bad=fleet.proxies_bad
        )
    )
    lines.append(
        _("Free slots: {free} of {total}").format(free=fleet.free_slots, total=fleet.total_slots)
    )
    if starting is not None:
        lines.append(
            _("Starting workers: {started} of {total} started, {pending} to go").format(
                started=starting.started, total=starting.total, pending=starting.pending
            )
        )
    return "\n".join(lines)


RTL_LOCALES = frozenset({"he"})


def stats_picture(
    fleet: FleetStats, history: list[Sample], now_ms: int, cap: int
) -> charts.Picture:
    """The words and numbers of the fleet picture, in the current locale."""
    statuses = [
        charts.Bar(status_name(s), fleet.by_status.get(s, 0), charts.STATUS_COLOURS[s])
        for s in Status
    ]

    def proxy_colour(sessions: int, bad: bool) -> tuple[int, int, int]:
        if bad:
            return charts.PROXY_BAD
        return charts.PROXY_FULL if sessions >= cap else charts.PROXY_ACTIVE

    loads = sorted(fleet.proxies, key=lambda p: (-p.sessions, p.id))
    proxies = [
        charts.Bar(
            p.id,
            p.sessions,
            proxy_colour(p.sessions, p.status == ProxyStatus.BAD),
            f"{p.sessions}/{cap}",
        )
        for p in loads
    ]
    nodes = [
        charts.Bar(
            n.name if n.state == "ready" else f"{n.name} · {node_state(n.state, 'active')}",
            len(n.session_ids),
            charts.NODE_UP if n.state == "ready" else charts.OTHER,
        )
        for n in fleet.nodes
    ]
    return charts.Picture(
        rtl=get_i18n().current_locale in RTL_LOCALES,
        status_title=_("Sessions by status"),
        statuses=statuses,
        history_title=_("Connected, last 24 hours"),
        history=[(s.at_ms, s.connected) for s in history],
        now_ms=now_ms,
        span_ms=DAY_MS,
        axis=(_("24 h ago"), _("12 h ago"), _("now")),
        proxies_title=_("Proxy load (sessions / cap)"),
        proxies=proxies,
        proxy_cap=cap,
        nodes_title=_("Sessions per node"),
        nodes=nodes,
        empty=_("none yet"),
    )


def digest(tally: Tally, fleet: FleetStats, now_ms: int) -> str:
    """The digest's caption: what happened since the last one, then the fleet's numbers."""
    lines = [_("📰 <b>Daily digest</b>")]
    if tally.since_ms is not None:
        hours = max(1, round((now_ms - tally.since_ms) / 3_600_000))
        lines[0] += " · " + ngettext("the last hour", "the last {hours} hours", hours).format(
            hours=hours
        )
    if tally.empty:
        lines.append(_("Nothing happened since the last digest."))
    else:
        lines += [
            _("Sessions added: {added}, removed: {removed}").format(
                added=tally[Happened.SESSIONS_ADDED], removed=tally[Happened.SESSIONS_REMOVED]
            ),
            _("Failovers to another proxy: {n}").format(n=tally[Happened.FAILOVERS]),
            _("Restarts: {watchdog} by the watchdog, {crashes} after a crash").format(
                watchdog=tally[Happened.WATCHDOG_RESTARTS], crashes=tally[Happened.CRASHES]
            ),
            _("Logged out on the phone: {n}").format(n=tally[Happened.LOGOUTS]),
            _("Scheduled backups made: {n}").format(n=tally[Happened.BACKUPS]),
        ]
    return "\n".join([*lines, "", stats(fleet)])


def node_state(state: str, availability: str) -> str:
    """A node's state in words; Swarm's own code when it is one we have no words for."""
    names = {"ready": _("ready"), "down": _("down"), "unknown": _("unknown")}
    word = names.get(state) or html.code(html.quote(state))
    if availability == "drain":
        return _("{state}, drained").format(state=word)
    if availability == "pause":
        return _("{state}, paused").format(state=word)
    return word


def nodes(found: list[NodeInfo]) -> str:
    if not found:
        return _("The runner could not list its nodes; see the log.")
    lines = [_("Nodes and their sessions:")]
    lines += [
        _("• {name} · {state} · {sessions}").format(
            name=html.bold(html.quote(node.name)),
            state=node_state(node.state, node.availability),
            sessions=sessions_count(len(node.session_ids)),
        )
        for node in found
    ]
    return "\n".join(lines)
