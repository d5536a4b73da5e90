"""Plain records that cross layers: what a session and a proxy look like to callers."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from core import endpoint_url
from core.proxy_url import mask


class Status(StrEnum):
    """The ``session:<id>:status`` values: a fixed set that clients rely on."""

    PENDING = "pending"
    QR_READY = "qr_ready"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    FAILED = "failed"
    # Added to that set: stopped by the operator (credentials, proxy and sticky mapping kept).
    STOPPED = "stopped"


class ProxyStatus(StrEnum):
    """The ``proxy:<url>:status`` values: a fixed set that clients rely on."""

    ACTIVE = "active"
    BAD = "bad"


class Reason(StrEnum):
    """Why a session is in its status; lets the operator see *what it waits for*."""

    STARTING = "starting"
    QR_EXPIRED = "qr_expired"  # the QR round ran out: ask for a new QR
    LOGGED_OUT = "logged_out"
    PROXY_ERROR = "proxy_error"
    NO_CAPACITY = "no_proxy_capacity"  # failover impossible
    CONNECTION_LOST = "connection_lost"
    WATCHDOG = "watchdog_restart"
    CRASHED = "worker_crashed"
    CRASH_LOOP = "crash_loop"
    UNSCHEDULABLE = "unschedulable"  # RUNNER=swarm: no node has room for the worker


@dataclass(frozen=True)
class SessionRecord:
    id: str
    status: str
    phone: str | None
    proxy: str = field(repr=False)  # full URL with the password: display ``proxy_masked``
    created: int
    last_ping: int | None
    qr: str | None = field(default=None, repr=False)
    lock: str | None = None
    reason: str | None = None
    qr_expires: int | None = None
    pairing_code: str | None = field(default=None, repr=False)
    connected_at: int | None = None
    boot_id: str | None = None  # the worker process that last reported CONNECTED
    # The operator's endpoint for this session's messages and receipts (may hold credentials:
    # display ``events_webhook_url_masked``); None: EVENTS_WEBHOOK_URL.
    events_webhook_url: str | None = field(default=None, repr=False)

    @property
    def proxy_masked(self) -> str:
        return mask(self.proxy) if self.proxy else ""

    @property
    def events_webhook_url_masked(self) -> str | None:
        return endpoint_url.mask(self.events_webhook_url) if self.events_webhook_url else None

    @property
    def needs_qr(self) -> bool:
        """True when nothing happens until the operator asks for a new QR."""
        return self.status == Status.FAILED and self.reason == Reason.QR_EXPIRED


@dataclass(frozen=True)
class ProxyRecord:
    url: str = field(repr=False)
    status: ProxyStatus
    sessions: int

    @property
    def masked(self) -> str:
        return mask(self.url)


def count_by_status(records: list[SessionRecord]) -> dict[str, int]:
    """Every status (zeros included, so dashboards see them all) with its session count."""
    counts = {s.value: 0 for s in Status}
    for record in records:
        counts[record.status] = counts.get(record.status, 0) + 1
    return counts
