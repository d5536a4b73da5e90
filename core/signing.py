"""Webhook signatures (a fixed interface): the worker signs, the API checks.

Each session signs with its own secret, HMAC(WEBHOOK_SECRET, session id), so a worker
(or a container someone broke into) can only ever speak for its own session.
"""

from __future__ import annotations

import hashlib
import hmac

TIMESTAMP_HEADER = "X-Wafleet-Timestamp"
SIGNATURE_HEADER = "X-Wafleet-Signature"
MAX_SKEW_MS = 5 * 60 * 1000


def session_secret(webhook_secret: str, session_id: str) -> str:
    return hmac.new(webhook_secret.encode(), session_id.encode(), hashlib.sha256).hexdigest()


def sign(secret: str, timestamp_ms: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp_ms}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def media_descriptor(session_id: str, sha256: str, size: int, kind: str) -> bytes:
    """What a worker signs to upload an incoming file (``PUT /worker/media/<sha256>``): the
    file is too large to sign whole before sending, so its hash and size are signed, and
    ``serve`` checks the bytes it receives against them."""
    return f"{session_id}\n{sha256}\n{size}\n{kind}".encode()


def verify(secret: str, timestamp: str, signature: str, body: bytes, now_ms: int) -> str | None:
    """``None`` when valid, else the reason (for the log; the client only sees 401)."""
    try:
        ts = int(timestamp)
    except ValueError:
        return "missing or malformed timestamp"
    if abs(now_ms - ts) > MAX_SKEW_MS:
        return "stale timestamp"
    if not hmac.compare_digest(sign(secret, ts, body), signature):
        return "bad signature"
    return None
