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
