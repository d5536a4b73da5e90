"""What core tells the operator. The bot implements ``Notifier``; until then, the log does.

Each alert carries what happened *and* what wafleet already did about it, because an
operator woken at night needs to know whether to act. Both are codes and parameters
(``facts``, ``done``), never sentences: core does not know the operator's language. The
bot renders every word from its catalogue; ``describe`` renders English for the log.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

log = logging.getLogger("wafleet.alerts")

Fact = str | int | float


class AlertKind(StrEnum):
    QR_READY = "qr_ready"
    PAIRING_CODE = "pairing_code"  # facts: code
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"  # facts: code (the worker's classification), reason
    LOGGED_OUT = "logged_out"  # facts: reason
    QR_EXPIRED = "qr_expired"
    PROXY_BAD = "proxy_bad"  # facts: error; with the sessions moved (old -> new)
    FAILOVER_IMPOSSIBLE = "failover_impossible"  # facts: sessions
    WATCHDOG_RESTART = "watchdog_restart"  # facts: seconds (since the last ping)
    WORKER_CRASHED = "worker_crashed"  # facts: exit_code (when known)
    CRASH_LOOP = "crash_loop"  # facts: exits, minutes
    PROXY_RECOVERED = "proxy_recovered"
    CAPACITY_LOW = "capacity_low"  # facts: free, total
    PHONE_MISMATCH = "phone_mismatch"  # facts: expected, linked
    BACKUP_DONE = "backup_done"  # facts: archive, size_bytes, sessions, max_pause_ms, kept
    BACKUP_FAILED = "backup_failed"  # facts: code (a stable error code), error
    RESTORE_DONE = "restore_done"  # facts: backup, sessions, connected; moves if any
    # RUNNER=swarm. facts: node, sessions, sessionIds, movedTo (node:count,...), notMoved.
    NODE_LOST = "node_lost"
    UNSCHEDULABLE = "unschedulable"  # no node has room for the session's worker
    BULK_START_DONE = "bulk_start_done"  # facts: total, started, failed (reconcile, restore)


class Done(StrEnum):
    """What wafleet already did about an alert: a code the bot words in the reader's language."""

    NOTHING = "nothing"
    NOTHING_NEEDED = "nothing_needed"
    RECONNECTING = "reconnecting"
    NOT_RECONNECTING_REPLACED = "not_reconnecting_replaced"
    WAITING_OUT_BAN = "waiting_out_ban"
    NOT_RECONNECTING_OUTDATED = "not_reconnecting_outdated"
    NEW_QR_ROUND = "new_qr_round"
    WAITING_FOR_NEW_QR = "waiting_for_new_qr"
    MOVED_SESSIONS = "moved_sessions"
    STOPPED_UNTIL_SLOT = "stopped_until_slot"
    RESTARTED_WORKER = "restarted_worker"
    STOPPED_RESTARTING = "stopped_restarting"
    RETURNED_TO_POOL = "returned_to_pool"
    ADD_PROXY_SOON = "add_proxy_soon"
    KEPT_LINK = "kept_link"
    KEPT_NEWEST_BACKUPS = "kept_newest_backups"
    KEPT_PREVIOUS_BACKUPS = "kept_previous_backups"
    RESTARTED_RESTORED = "restarted_restored"
    MOVED_TO_OTHER_NODES = "moved_to_other_nodes"
    STOPPED_WAITING = "stopped_waiting"


@dataclass(frozen=True)
class Move:
    session_id: str
    phone: str | None
    old_proxy: str  # masked
    new_proxy: str | None  # masked; None when no capacity was left


def new_alert_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class Alert:
    kind: AlertKind
    session_id: str | None = None
    phone: str | None = None
    facts: Mapping[str, Fact] = field(default_factory=dict)  # what happened, as parameters
    done: Done = Done.NOTHING  # what wafleet already did
    proxy: str | None = None  # masked
    qr: str | None = field(default=None, repr=False)
    qr_expires: int | None = None
    moves: tuple[Move, ...] = ()
    # Unique per alert: the bot's outbox delivers at least once and drops repeats by it.
    id: str = field(default_factory=new_alert_id)

    def to_json(self) -> str:
        """The alert as the outbox stores it (QR codes are never stored: they grant access)."""
        return json.dumps(
            {
                "id": self.id,
                "kind": self.kind.value,
                "session": self.session_id,
                "phone": self.phone,
                "facts": dict(self.facts),
                "done": self.done.value,
                "proxy": self.proxy,
                "moves": [[m.session_id, m.phone, m.old_proxy, m.new_proxy] for m in self.moves],
            },
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, raw: str) -> Alert:
        data: dict[str, Any] = json.loads(raw)
        return cls(
            AlertKind(data["kind"]),
            data.get("session"),
            data.get("phone"),
            facts=dict(data.get("facts") or {}),
            done=Done(data.get("done") or Done.NOTHING),
            proxy=data.get("proxy"),
            moves=tuple(Move(*m) for m in data.get("moves") or ()),
            id=str(data["id"]),
        )


class Notifier(Protocol):
    async def notify(self, alert: Alert) -> None: ...


_DONE_EN = {
    Done.NOTHING: "",
    Done.NOTHING_NEEDED: "nothing needed",
    Done.RECONNECTING: "the worker reconnects by itself",
    Done.NOT_RECONNECTING_REPLACED: "not reconnecting: another client took over this session",
    Done.WAITING_OUT_BAN: "waiting out the ban before reconnecting",
    Done.NOT_RECONNECTING_OUTDATED: "not reconnecting: the worker needs an update",
    Done.NEW_QR_ROUND: "deleted the session's auth; a new QR is on its way",
    Done.WAITING_FOR_NEW_QR: "the worker waits; ask for a new QR to start another round",
    Done.MOVED_SESSIONS: "marked the proxy bad and moved its sessions",
    Done.STOPPED_UNTIL_SLOT: "their workers are stopped; they restart when a proxy frees up",
    Done.RESTARTED_WORKER: "restarted the worker",
    Done.STOPPED_RESTARTING: "stopped restarting it; see its log, then restart it by hand",
    Done.RETURNED_TO_POOL: "returned it to the pool",
    Done.ADD_PROXY_SOON: "nothing yet: add a proxy (/addproxy) before provisioning more",
    Done.KEPT_LINK: "kept the link; the sticky proxy now belongs to the linked phone",
    Done.KEPT_NEWEST_BACKUPS: "kept the newest backups",
    Done.KEPT_PREVIOUS_BACKUPS: "kept the previous backups; the next try is at the next time",
    Done.RESTARTED_RESTORED: "started the restored workers",
    Done.MOVED_TO_OTHER_NODES: "started its sessions on the other nodes",
    Done.STOPPED_WAITING: "gave up waiting; make room, then restart it by hand",
}


def describe(alert: Alert) -> str:
    """The alert in English, for the log (the chat words it from the catalogue instead)."""
    f = alert.facts
    templates = {
        AlertKind.WATCHDOG_RESTART: "no ping for {seconds} s",
        AlertKind.WORKER_CRASHED: "the worker exited (code {exit_code})",
        AlertKind.CRASH_LOOP: "the worker exited {exits} times in {minutes} min",
        AlertKind.CAPACITY_LOW: "{free} free slot(s) left of {total}",
        AlertKind.PHONE_MISMATCH: "provisioned for +{expected} but linked by +{linked}",
        AlertKind.FAILOVER_IMPOSSIBLE: "{sessions} session(s) have no proxy to move to",
        AlertKind.BACKUP_DONE: "{archive}: {size_bytes} bytes, {sessions} session(s)",
        AlertKind.RESTORE_DONE: "restored {sessions} session(s) from {backup}",
        AlertKind.BULK_START_DONE: "started {started} of {total} worker(s), {failed} failed",
        AlertKind.NODE_LOST: "node {node} lost with {sessions} session(s); moved to {movedTo}",
    }
    template = templates.get(alert.kind, "")
    try:
        what = template.format(**f)
    except KeyError:  # a fact missing: say the facts as they are
        what, template = "", ""
    if alert.kind is AlertKind.PAIRING_CODE:
        return what  # a pairing code grants access: never in the log
    rest = ", ".join(f"{k}={v}" for k, v in sorted(f.items()) if "{" + k + "}" not in template)
    return "; ".join(p for p in (what, rest) if p)


class LogNotifier:
    """The notifier when no bot is configured: one log line per alert."""

    async def notify(self, alert: Alert) -> None:
        if alert.kind is AlertKind.QR_READY:
            log.info("session %s: new QR ready", alert.session_id)
            return
        moves = "; ".join(
            f"{m.session_id}: {m.old_proxy} -> {m.new_proxy or 'none'}" for m in alert.moves
        )
        done = _DONE_EN[alert.done]
        log.warning(
            "%s session=%s phone=%s proxy=%s: %s%s%s",
            alert.kind.value,
            alert.session_id or "-",
            alert.phone or "-",
            alert.proxy or "-",
            describe(alert),
            f" | done: {done}" if done else "",
            f" | moves: {moves}" if moves else "",
        )


class FanoutNotifier:
    """Several notifiers at once (the log always, the bot when configured)."""

    def __init__(self, *notifiers: Notifier) -> None:
        self.notifiers = list(notifiers)

    def add(self, notifier: Notifier) -> None:
        self.notifiers.append(notifier)

    async def notify(self, alert: Alert) -> None:
        for notifier in self.notifiers:
            try:
                await notifier.notify(alert)
            except Exception:
                log.exception("notifier %s failed on %s", type(notifier).__name__, alert.kind)
