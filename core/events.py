"""A worker event's envelope: which kinds there are, and the ids that come with one.

What each kind's ``data`` must hold, and what the event does, is the session service's
(core/sessions/event_rules.py); the names here are what other parts also speak of (the
session folder's outbox, a backup).
"""

from __future__ import annotations

import hashlib
import re
import uuid
from enum import StrEnum
from typing import Any

from core.errors import InvalidInput


class EventKind(StrEnum):
    """The webhook's ``type``."""

    QR_CODE = "QR_CODE"
    PAIRING_CODE = "PAIRING_CODE"
    CONNECTED = "CONNECTED"
    DISCONNECTED = "DISCONNECTED"
    PING = "PING"
    PROXY_ERROR = "PROXY_ERROR"
    AUTH_FAILURE = "AUTH_FAILURE"
    MESSAGE_IN = "MESSAGE_IN"
    MESSAGE_STATUS = "MESSAGE_STATUS"


# Message events are not session life-cycle events: they go to the operator's stream
# (core/event_log.py, delivered by core/deliveries.py), not to the session's event history
# (hundreds a day would push its story out of the capped stream). They must carry an ``id``,
# so a resend is stored and applied once.
MESSAGE_EVENTS = frozenset({EventKind.MESSAGE_IN, EventKind.MESSAGE_STATUS})

# An event id: what the worker gives each event so the orchestrator applies it once.
EVENT_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")
# A worker process's boot id (random per process start): the only thing that tells two copies
# of one Swarm task apart, since both run with the same environment.
BOOT_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")
# How long an applied id is remembered: well beyond the 5-minute signature window, and
# beyond the time a worker buffers events while the orchestrator is away.
APPLIED_TTL_MS = 24 * 3600 * 1000


def boot_id(data: dict[str, Any]) -> str | None:
    """The sending process's boot id (checked with the data), or None from an older worker."""
    value = data.get("bootId")
    return value if isinstance(value, str) else None


def check_id(value: object) -> str | None:
    """The event's ``id``, or None for an event from an older worker that sends none."""
    if value is None:
        return None
    if not isinstance(value, str) or not EVENT_ID.fullmatch(value):
        raise InvalidInput("id must be 8-64 letters, digits, '_' or '-'")
    return value


def event_id(kind: str, data: dict[str, Any]) -> str:
    """A worker event's id: for a message event, derived from the network's own ids, so a
    frame the network delivered twice (it was not acknowledged before a crash) is one event
    to ``serve``; a random one otherwise. 8-64 characters of ``[A-Za-z0-9_-]``.

    Here, not in the worker, because ``serve`` makes one too: the "sent"/"failed" status of
    a message it handed out comes with the worker's acknowledgement (core/commands.py), and
    must be the same event as the one an older worker posts for it.
    """
    if kind == EventKind.MESSAGE_IN:
        key = f"in\0{data.get('from')}\0{data.get('messageId')}"
    elif kind == EventKind.MESSAGE_STATUS:
        key = f"status\0{data.get('messageId')}\0{data.get('status')}"
    else:
        return uuid.uuid4().hex
    return hashlib.sha256(key.encode(errors="surrogatepass")).hexdigest()[:40]
