"""What core tells the operator. The bot implements ``Notifier``; until then, the log does.

Each alert carries what happened *and* what wafleet already did about it, because an
operator woken at night needs to know whether to act.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

log = logging.getLogger("wafleet.alerts")


class AlertKind(StrEnum):
    QR_READY = "qr_ready"
    PAIRING_CODE = "pairing_code"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    LOGGED_OUT = "logged_out"
    QR_EXPIRED = "qr_expired"
    PROXY_BAD = "proxy_bad"  # with the sessions moved (old -> new)
    FAILOVER_IMPOSSIBLE = "failover_impossible"
    WATCHDOG_RESTART = "watchdog_restart"
    WORKER_CRASHED = "worker_crashed"
    CRASH_LOOP = "crash_loop"
    PROXY_RECOVERED = "proxy_recovered"
    CAPACITY_LOW = "capacity_low"
    PHONE_MISMATCH = "phone_mismatch"
    BACKUP_DONE = "backup_done"  # with the archive's size and session count
    BACKUP_FAILED = "backup_failed"  # with the reason
    RESTORE_DONE = "restore_done"  # with the sessions moved to another proxy, if any
    # RUNNER=swarm. facts: node, sessions, sessionIds, movedTo {node: count}, notMoved.
    NODE_LOST = "node_lost"
    UNSCHEDULABLE = "unschedulable"  # no node has room for the session's worker


@dataclass(frozen=True)
class Move:
    session_id: str
    phone: str | None
    old_proxy: str  # masked
    new_proxy: str | None  # masked; None when no capacity was left


@dataclass(frozen=True)
class Alert:
    kind: AlertKind
    session_id: str | None = None
    phone: str | None = None
    detail: str = ""  # what happened, in words
    action: str = ""  # what wafleet already did
    proxy: str | None = None  # masked
    qr: str | None = field(default=None, repr=False)
    qr_expires: int | None = None
    moves: tuple[Move, ...] = ()
    # What happened as plain values, for kinds that concern more than one session (NODE_LOST).
    facts: dict[str, object] = field(default_factory=dict)


class Notifier(Protocol):
    async def notify(self, alert: Alert) -> None: ...


class LogNotifier:
    """The notifier when no bot is configured: one log line per alert."""

    async def notify(self, alert: Alert) -> None:
        if alert.kind is AlertKind.QR_READY:
            log.info("session %s: new QR ready", alert.session_id)
            return
        moves = "; ".join(
            f"{m.session_id}: {m.old_proxy} -> {m.new_proxy or 'none'}" for m in alert.moves
        )
        log.warning(
            "%s session=%s phone=%s proxy=%s: %s%s%s",
            alert.kind.value,
            alert.session_id or "-",
            alert.phone or "-",
            alert.proxy or "-",
            alert.detail,
            f" | done: {alert.action}" if alert.action else "",
            f" | moves: {moves}" if moves else "",
        )
        if alert.facts:
            log.warning("%s facts: %s", alert.kind.value, alert.facts)


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
