"""The notifier's alerts: one burst folded (a failover explains the disconnects it caused),
grouped by kind, each group with what was done, cut into as few messages as fit."""

from __future__ import annotations

from collections.abc import Iterable

from aiogram import html
from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import ngettext

from bot.texts.common import MAX_MESSAGE, megabytes, phone, sessions_count
from core.notifier import Alert, AlertKind, Done

ALERT_ICONS = {
    AlertKind.CONNECTED: "✅",
    AlertKind.DISCONNECTED: "🔌",
    AlertKind.LOGGED_OUT: "🚪",
    AlertKind.QR_EXPIRED: "⌛",
    AlertKind.PROXY_BAD: "🛑",
    AlertKind.FAILOVER_IMPOSSIBLE: "🚨",
    AlertKind.WATCHDOG_RESTART: "🐕",
    AlertKind.WORKER_CRASHED: "💥",
    AlertKind.CRASH_LOOP: "🔁",
    AlertKind.PROXY_RECOVERED: "♻️",
    AlertKind.CAPACITY_LOW: "📉",
    AlertKind.PHONE_MISMATCH: "📵",
    AlertKind.BACKUP_DONE: "💾",
    AlertKind.BACKUP_FAILED: "🚨",
    AlertKind.RESTORE_DONE: "📦",
    AlertKind.NODE_LOST: "🖥️",
    AlertKind.UNSCHEDULABLE: "🈵",
    AlertKind.BULK_START_DONE: "🚀",
}


def _alert_title(kind: AlertKind) -> str:
    titles = {
        AlertKind.CONNECTED: _("Connected"),
        AlertKind.DISCONNECTED: _("Disconnected"),
        AlertKind.LOGGED_OUT: _("Logged out on the phone"),
        AlertKind.QR_EXPIRED: _("QR codes expired unscanned"),
        AlertKind.PROXY_BAD: _("Proxy dead: marked bad"),
        AlertKind.FAILOVER_IMPOSSIBLE: _("Failover impossible: no free proxy slot"),
        AlertKind.WATCHDOG_RESTART: _("No keep-alive ping"),
        AlertKind.WORKER_CRASHED: _("Worker crashed"),
        AlertKind.CRASH_LOOP: _("Worker keeps crashing"),
        AlertKind.PROXY_RECOVERED: _("Proxy answers again"),
        AlertKind.CAPACITY_LOW: _("Proxy capacity running low"),
        AlertKind.PHONE_MISMATCH: _("Linked by a different phone"),
        AlertKind.BACKUP_DONE: _("Backup made"),
        AlertKind.BACKUP_FAILED: _("Backup failed"),
        AlertKind.RESTORE_DONE: _("Backup restored"),
        AlertKind.NODE_LOST: _("Swarm node lost: its sessions moved"),
        AlertKind.UNSCHEDULABLE: _("No node has room for the worker"),
        AlertKind.BULK_START_DONE: _("Workers started"),
    }
    return titles.get(kind, kind.value)


def _done_text(done: Done) -> str:
    texts = {
        Done.NOTHING: "",
        Done.NOTHING_NEEDED: _("nothing needed: the session is up."),
        Done.RECONNECTING: _("the worker reconnects by itself."),
        Done.NOT_RECONNECTING_REPLACED: _(
            "not reconnecting: another client took over this session."
        ),
        Done.WAITING_OUT_BAN: _("waiting out the temporary ban before reconnecting."),
        Done.NOT_RECONNECTING_OUTDATED: _("not reconnecting: the worker needs an update."),
        Done.NEW_QR_ROUND: _("deleted its credentials; a new QR round has started."),
        Done.WAITING_FOR_NEW_QR: _("the worker waits: press the button for a new QR."),
        Done.MOVED_SESSIONS: _("moved its sessions to other proxies (old → new above)."),
        Done.STOPPED_UNTIL_SLOT: _(
            "stopped these workers; they restart when a slot frees up. Add a proxy: /addproxy"
        ),
        Done.RESTARTED_WORKER: _("restarted the worker."),
        Done.STOPPED_RESTARTING: _("stopped restarting it: read its log, then /restart it."),
        Done.RETURNED_TO_POOL: _("returned it to the pool; parked sessions get slots again."),
        Done.ADD_PROXY_SOON: _("nothing yet: add a proxy (/addproxy) before provisioning."),
        Done.KEPT_LINK: _("kept the link; the sticky proxy now belongs to the linked phone."),
        Done.KEPT_NEWEST_BACKUPS: _("kept the newest archives, deleted older ones."),
        Done.KEPT_PREVIOUS_BACKUPS: _("the sessions run on; the previous archives are untouched."),
        Done.RESTARTED_RESTORED: _("restarted the restored sessions (moves above, if any)."),
        Done.MOVED_TO_OTHER_NODES: _(
            "started its sessions on the other nodes; they reconnect with their saved credentials."
        ),
        Done.STOPPED_WAITING: _("stopped waiting: make room on a node, then restart it."),
    }
    return texts.get(done, "")


def _disconnect_reason(code: str) -> str:
    """The worker's classification of a disconnect; an unknown one is shown as its code."""
    names = {
        "connection_lost": _("connection lost"),
        "proxy_error": _("proxy error"),
        "stream_replaced": _("another client took over"),
        "temporary_ban": _("temporary ban"),
        "client_outdated": _("client outdated"),
    }
    return names.get(code) or html.code(html.quote(code))


def _alert_facts(alert: Alert) -> str:
    """What happened, from the alert's parameters; only the numbers and ids come from core."""
    f = alert.facts
    try:
        if alert.kind is AlertKind.WATCHDOG_RESTART:
            n = int(f["seconds"])
            return ngettext("no ping for {n} s", "no ping for {n} s", n).format(n=n)
        if alert.kind is AlertKind.WORKER_CRASHED and "exit_code" in f:
            return _("exit code {code}").format(code=int(f["exit_code"]))
        if alert.kind is AlertKind.CRASH_LOOP:
            n, minutes = int(f["exits"]), int(f["minutes"])
            within = ngettext("{n} min", "{n} min", minutes).format(n=minutes)
            return ngettext(
                "exited {n} time in {within}", "exited {n} times in {within}", n
            ).format(n=n, within=within)
        if alert.kind is AlertKind.CAPACITY_LOW:
            free = int(f["free"])
            return ngettext(
                "{free} free slot left of {total}", "{free} free slots left of {total}", free
            ).format(free=free, total=int(f["total"]))
        if alert.kind is AlertKind.PHONE_MISMATCH:
            return _("provisioned for {expected}").format(
                expected=html.quote(phone(str(f["expected"])))
            )
        if alert.kind is AlertKind.FAILOVER_IMPOSSIBLE:
            n = int(f["sessions"])
            return ngettext(
                "{n} session has no proxy to move to", "{n} sessions have no proxy to move to", n
            ).format(n=n)
        if alert.kind is AlertKind.DISCONNECTED:
            return _disconnect_reason(str(f.get("code") or "connection_lost"))
        if alert.kind is AlertKind.BACKUP_DONE:
            return _("{name}: {size}, {sessions}").format(
                name=html.code(html.quote(str(f["archive"]))),
                size=megabytes(int(f["size_bytes"])),
                sessions=sessions_count(int(f["sessions"])),
            )
        if alert.kind is AlertKind.BACKUP_FAILED:
            # The error's own text is English from the OS or a library: the log has it.
            return _("the disk is full") if f.get("code") == "disk_full" else ""
        if alert.kind is AlertKind.NODE_LOST:
            stuck = int(f.get("notMoved") or 0)
            n = int(f["sessions"]) - stuck
            return ngettext(
                "node {node}: {n} session moved, {stuck} not moved",
                "node {node}: {n} sessions moved, {stuck} not moved",
                n,
            ).format(node=html.code(html.quote(str(f["node"])[:12])), n=n, stuck=stuck)
        if alert.kind is AlertKind.BULK_START_DONE:
            return _("{started} of {total} started, {failed} failed").format(
                started=int(f["started"]), total=int(f["total"]), failed=int(f["failed"])
            )
        if alert.kind is AlertKind.RESTORE_DONE:
            n = int(f["sessions"])
            return ngettext(
                "{n} session from {id}; {connected} connected so far",
                "{n} sessions from {id}; {connected} connected so far",
                n,
            ).format(
                n=n,
                id=html.code(html.quote(str(f["backup"]))),
                connected=int(f["connected"]),
            )
    except (KeyError, ValueError):
        pass  # an alert from an older or newer serve: the title and the ids still say enough
    return ""


def _alert_line(alert: Alert, with_done: bool) -> list[str]:
    parts = []
    if alert.session_id:
        parts.append(html.bold(html.quote(alert.session_id)))
    if alert.phone:
        parts.append(html.quote(phone(alert.phone)))
    if alert.proxy:
        parts.append(html.code(html.quote(alert.proxy)))
    facts = _alert_facts(alert)
    if facts:
        parts.append(html.italic(facts))
    lines = ["• " + " · ".join(parts)] if parts else []
    for move in alert.moves:
        target = html.code(html.quote(move.new_proxy)) if move.new_proxy else _("no proxy left")
        lines.append(
            "   "
            + _("{sid} ({phone}): {old} → {new}").format(
                sid=html.bold(html.quote(move.session_id)),
                phone=html.quote(phone(move.phone)),
                old=html.code(html.quote(move.old_proxy)),
                new=target,
            )
        )
    if with_done and alert.done is not Done.NOTHING:
        lines.append("   " + _("Done: {what}").format(what=_done_text(alert.done)))
    return lines


def moved_sessions(burst: Iterable[Alert]) -> set[str]:
    """Sessions a failover in ``burst`` moved, or parked for want of a free slot."""
    failover = (AlertKind.PROXY_BAD, AlertKind.FAILOVER_IMPOSSIBLE)
    return {m.session_id for a in burst if a.kind in failover for m in a.moves}


def fold_burst(alerts: Iterable[Alert]) -> list[Alert]:
    """Drop what the same burst already answers: a disconnect of a session that a failover
    in this burst moved reads "reconnects by itself" right above "moved to another proxy"
    (or "stopped until a slot frees up"); the failover is the whole story. Repeats of one
    alert id are dropped too."""
    burst = list(alerts)
    moved = moved_sessions(burst)
    seen: set[str] = set()
    kept = []
    for alert in burst:
        if alert.id in seen:
            continue
        seen.add(alert.id)
        if alert.kind is AlertKind.DISCONNECTED and alert.session_id in moved:
            continue
        kept.append(alert)
    return kept


def alert_burst(alerts: Iterable[Alert]) -> list[str]:
    """One burst of alerts as few messages as Telegram's size limit allows, grouped by kind."""
    groups: dict[AlertKind, list[Alert]] = {}
    for alert in fold_burst(alerts):
        groups.setdefault(alert.kind, []).append(alert)
    blocks: list[list[str]] = []
    for kind, members in groups.items():
        block = [
            _("{icon} <b>{title}</b> ({n})").format(
                icon=ALERT_ICONS.get(kind, "ℹ️"), title=_alert_title(kind), n=len(members)
            )
        ]
        # One "Done:" for the group when every member had the same done, else one each.
        dones = {a.done for a in members}
        shared = len(dones) == 1
        for alert in members:
            block += _alert_line(alert, with_done=not shared)
        if shared and (done := dones.pop()) is not Done.NOTHING:
            block.append(_("Done: {what}").format(what=_done_text(done)))
        blocks.append(block)
    messages: list[str] = []
    current = ""
    for line in (line for block in blocks for line in [*block, ""]):
        if current and len(current) + len(line) + 1 > MAX_MESSAGE:
            messages.append(current.rstrip())
            current = ""
        current += line + "\n"
    if current.strip():
        messages.append(current.rstrip())
    return messages
