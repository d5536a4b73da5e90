"""What the simulated network keeps (its QR timings, the linked devices, the QR rounds
waiting for a scan, the codes and QRs it issued) and the rules both of its sides check
(a phone number, a text's length). simwa/server.py says how they are used."""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

PHONE = re.compile(r"[1-9]\d{7,14}")
MAX_MESSAGE_TEXT = 65_536


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class QrTimings:
    first_ttl_ms: int = 60_000
    next_ttl_ms: int = 20_000
    count: int = 6


@dataclass
class Device:
    token: str
    phone: str
    session_id: str
    logged_out: bool = False
    ip: str | None = None
    ip_history: list[str] = field(default_factory=list)
    presence_count: int = 0
    self_messages: int = 0
    # How often it connected, and how often a newer connection replaced a live one: a
    # reconnect loop between two copies of one worker shows here.
    connect_count: int = 0
    replaced_count: int = 0
    typing_count: int = 0
    ws: web.WebSocketResponse | None = None
    # Receipts and incoming messages not acknowledged yet, by frame id, oldest first: sent
    # when they come (if connected) and again on every connect until the device acks them.
    pending: dict[str, dict[str, Any]] = field(default_factory=dict)
    # The connection each pending frame last went out on (not twice on the same one).
    sent_on: dict[str, web.WebSocketResponse] = field(default_factory=dict)
    # Sends to the device one at a time, so a reconnect's resend keeps the frames' order.
    sending: asyncio.Lock = field(default_factory=asyncio.Lock)
    acked: int = 0
    lose_acks: bool = False

    def view(self) -> dict[str, Any]:
        return {
            "phone": self.phone,
            "sessionId": self.session_id,
            "connected": self.ws is not None and not self.ws.closed,
            "loggedOut": self.logged_out,
            "ip": self.ip,
            "ipHistory": list(self.ip_history),
            "presenceCount": self.presence_count,
            "selfMessages": self.self_messages,
            "connectCount": self.connect_count,
            "replacedCount": self.replaced_count,
            "typingCount": self.typing_count,
            "unacked": len(self.pending),
            "acked": self.acked,
        }


@dataclass
class PendingLink:
    """A connection in its QR round, waiting for a scan."""

    session_id: str
    ws: web.WebSocketResponse
    ip: str | None
    paired: asyncio.Future[Device]


@dataclass
class IssuedCode:
    """A pairing code: valid for the QR round it was asked in, on the phone it names."""

    link: PendingLink
    phone: str


@dataclass
class IssuedQr:
    link: PendingLink
    expires: float  # monotonic seconds
    superseded: bool = False
