"""Every Redis key wafleet uses, built in one place.

The ``session:*``, ``phone:*`` and ``proxy:*`` keys are SPEC.md's contract, byte for byte;
the ``wafleet:*`` indexes and the extra per-session keys are ours.
"""

from __future__ import annotations

SESSIONS = "wafleet:sessions"  # set of session ids
PROXIES = "wafleet:proxies"  # set of full proxy URLs
SESSION_SEQ = "wafleet:session_seq"  # counter behind worker_<n>

SESSION_FIELDS = ("status", "phone", "proxy", "qr", "lock", "created", "lastPing")
EXTRA_SESSION_FIELDS = ("reason", "qrExpires", "pairingCode", "connectedAt")


def session(session_id: str, field: str) -> str:
    return f"session:{session_id}:{field}"


def session_events(session_id: str) -> str:
    return f"session:{session_id}:events"


def phone_proxy(phone: str) -> str:
    return f"phone:{phone}:proxy"


def phone_session(phone: str) -> str:
    return f"phone:{phone}:session"


def phone_sessions(phone: str) -> str:
    return f"phone:{phone}:sessions"


def proxy_status(url: str) -> str:
    return f"proxy:{url}:status"


def proxy_sessions(url: str) -> str:
    return f"proxy:{url}:sessions"


def proxy_members(url: str) -> str:
    return f"proxy:{url}:members"


# The Telegram bot's own state (not SPEC.md's): the chat language and where a QR is shown.
def bot_lang(chat_or_user_id: int) -> str:
    return f"wafleet:lang:{chat_or_user_id}"


def bot_qr_message(session_id: str) -> str:
    """Hash ``chat`` + ``message``: the chat that shows the session's QR, and its message."""
    return f"wafleet:bot:qr:{session_id}"


def bot_outbox() -> str:
    """Stream of alerts waiting for the chat (field ``alert``: the alert's JSON); an entry is
    deleted once sent, so what is left after a crash goes out after the next start."""
    return "wafleet:bot:outbox"


def bot_alert_sent(alert_id: str) -> str:
    """Set (with a day's expiry) once an alert reached the chat: a repeat of it is dropped."""
    return f"wafleet:bot:sent:{alert_id}"
