"""The webhook's event types and the shape of their ``data``: a fixed
interface between worker and orchestrator (both sides of a rolling upgrade speak it).

Checked before anything is written, so a malformed event changes nothing: that includes
every string in ``data`` (core/text.py), since a reason or a pairing code with a NUL or a
lone surrogate could not be written to the event stream nor shown in the chat.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from core import text
from core.errors import InvalidInput
from core.phone import normalize as normalize_phone

if TYPE_CHECKING:
    from core.messages import MessageService

MAX_TEXT = 2048
# An event id: what the worker gives each event so the orchestrator applies it once.
EVENT_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")
# A worker process's boot id (random per process start): the only thing that tells two copies
# of one Swarm task apart, since both run with the same environment.
BOOT_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")
# How long an applied id is remembered: well beyond the 5-minute signature window, and
# beyond the time a worker buffers events while the orchestrator is away.
APPLIED_TTL_MS = 24 * 3600 * 1000


def _text(data: dict[str, Any], name: str, required: bool) -> str | None:
    value = data.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_TEXT:
        raise InvalidInput(f"data.{name} must be a non-empty string")
    return value


def _code(data: dict[str, Any]) -> None:
    value = data.get("code")
    if value is not None and not isinstance(value, str | int):
        raise InvalidInput("data.code must be a string or a number")


def _qr(data: dict[str, Any]) -> dict[str, Any]:
    _text(data, "qr", required=True)
    ttl = data.get("ttlMs")
    if ttl is not None and (not isinstance(ttl, int) or isinstance(ttl, bool) or ttl <= 0):
        raise InvalidInput("data.ttlMs must be a positive whole number of milliseconds")
    return data


def _pairing(data: dict[str, Any]) -> dict[str, Any]:
    _text(data, "code", required=True)
    return data


def _connected(data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "phoneNumber": normalize_phone(data.get("phoneNumber"))}


def _disconnected(data: dict[str, Any]) -> dict[str, Any]:
    _text(data, "reason", required=False)
    _code(data)
    return data


def _ping(data: dict[str, Any]) -> dict[str, Any]:
    ts = data.get("timestamp")
    if ts is not None and (not isinstance(ts, int) or isinstance(ts, bool)):
        raise InvalidInput("data.timestamp must be milliseconds since the epoch")
    return data


def _proxy_error(data: dict[str, Any]) -> dict[str, Any]:
    _text(data, "error", required=False)
    _text(data, "proxyId", required=False)  # which proxy the worker used (never its URL)
    return data


def _auth_failure(data: dict[str, Any]) -> dict[str, Any]:
    _text(data, "reason", required=False)
    return data


MAX_MESSAGE_TEXT = 16 * 1024  # an incoming message; the webhook's body cap bounds it anyway
MESSAGE_STATUSES = frozenset({"sent", "delivered", "read", "failed"})


def _timestamp(data: dict[str, Any]) -> None:
    ts = data.get("timestamp")
    if ts is not None and (not isinstance(ts, int) or isinstance(ts, bool) or ts < 0):
        raise InvalidInput("data.timestamp must be milliseconds since the epoch")


def _message_in(data: dict[str, Any]) -> dict[str, Any]:
    """A message that arrived at the session's phone (streamed to the operator)."""
    _text(data, "messageId", required=True)
    _text(data, "from", required=True)
    body = data.get("text")
    if not isinstance(body, str) or len(body) > MAX_MESSAGE_TEXT:
        raise InvalidInput(f"data.text must be a string of at most {MAX_MESSAGE_TEXT} characters")
    _timestamp(data)
    return data


def _message_status(data: dict[str, Any]) -> dict[str, Any]:
    """About a message this session sent; ``messageId`` is OUR id (core/messages.py)."""
    _text(data, "messageId", required=True)
    if data.get("status") not in MESSAGE_STATUSES:
        raise InvalidInput(f"data.status must be one of {', '.join(sorted(MESSAGE_STATUSES))}")
    _text(data, "reason", required=False)
    return data


CHECKS = {
    "QR_CODE": _qr,
    "PAIRING_CODE": _pairing,
    "CONNECTED": _connected,
    "DISCONNECTED": _disconnected,
    "PING": _ping,
    "PROXY_ERROR": _proxy_error,
    "AUTH_FAILURE": _auth_failure,
    "MESSAGE_IN": _message_in,
    "MESSAGE_STATUS": _message_status,
}
# Message events are not session life-cycle events: they go to the operator's stream
# (core/event_log.py, delivered by core/deliveries.py) and to ``on_message_event``, not to the
# session's event history (hundreds a day would push its story out of the capped stream).
# They must carry an ``id``, so a resend is stored and applied once.
MESSAGE_EVENTS = frozenset({"MESSAGE_IN", "MESSAGE_STATUS"})
EVENT_TYPES = frozenset(CHECKS)


def check(kind: object, data: object) -> tuple[str, dict[str, Any]]:
    """Validated ``(type, data)``; ``InvalidInput`` names the first problem."""
    if not isinstance(kind, str) or kind not in CHECKS:
        raise InvalidInput(f"type must be one of {', '.join(sorted(CHECKS))}")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InvalidInput("data must be a JSON object")
    text.check_tree(data, "data")
    boot = data.get("bootId")
    if boot is not None and (not isinstance(boot, str) or not BOOT_ID.fullmatch(boot)):
        raise InvalidInput("data.bootId must be 8-64 letters, digits, '_' or '-'")
    return kind, CHECKS[kind](data)


def boot_id(data: dict[str, Any]) -> str | None:
    """The sending process's boot id (checked by ``check``), or None from an older worker."""
    value = data.get("bootId")
    return value if isinstance(value, str) else None


def stale_disconnect(data: dict[str, Any], status: str, connected_boot: str | None) -> bool:
    """True for a ``DISCONNECTED`` from another process than the one now connected.

    After a split brain two copies of a worker run; the newer connection replaces the older
    one, whose "stream replaced" can reach ``serve`` after the newer copy's ``CONNECTED``.
    Applied, it would show the session disconnected although a worker is connected. A worker
    reports ``DISCONNECTED`` only for a connection it held, so one from a process other than
    the last to report ``CONNECTED``, while the session is connected, is about a connection
    that was already superseded. Events without boot ids (older workers) are applied as before.
    """
    if status != "connected" or connected_boot is None:
        return False
    sender = boot_id(data)
    return sender is not None and sender != connected_boot


def check_id(value: object) -> str | None:
    """The event's ``id``, or None for an event from an older worker that sends none."""
    if value is None:
        return None
    if not isinstance(value, str) or not EVENT_ID.fullmatch(value):
        raise InvalidInput("id must be 8-64 letters, digits, '_' or '-'")
    return value


async def on_message_event(
    messages: MessageService, session_id: str, kind: str, data: dict[str, Any], now: int
) -> None:
    """The one place a checked, first-time ``MESSAGE_IN`` / ``MESSAGE_STATUS`` goes.

    A status goes to our message record; an incoming message is counted. (Both were already
    appended to the operator's stream by ``SessionService``.)
    """
    if kind == "MESSAGE_STATUS":
        await messages.update(
            session_id, data["messageId"], data["status"], data.get("reason"), ack=False
        )
    elif kind == "MESSAGE_IN":
        await messages.count_received(session_id)
