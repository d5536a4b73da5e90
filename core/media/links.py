"""Signed, expiring links to one media file: ``<base>/media/<id>?exp=<epoch s>&sig=<hex>``.

The signature is the credential (the operator's systems and the workers fetch without an API
key), so it is an HMAC over the id and the expiry with a key derived from ``WEBHOOK_SECRET``:
every replica can make and check one, a link cannot be moved to another id or kept past its
``exp``, and the media id itself is random, so none can be guessed either.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from enum import Enum
from urllib.parse import urlencode

MEDIA_ID = re.compile(r"md_[0-9a-f]{32}", re.ASCII)
_PURPOSE = b"wafleet media links"


class LinkProblem(Enum):
    BAD_SIGNATURE = "bad_signature"  # 403
    EXPIRED = "expired"  # 410


def new_media_id() -> str:
    return "md_" + secrets.token_hex(16)


def stable_media_id(webhook_secret: str, origin: str) -> str:
    """The same id each time for one origin (an incoming message's event id), so a message
    delivered again keeps its media id; unguessable without the secret."""
    mac = hmac.new(webhook_secret.encode(), b"media id\0" + origin.encode(), hashlib.sha256)
    return "md_" + mac.hexdigest()[:32]


class MediaLinks:
    def __init__(self, webhook_secret: str) -> None:
        self._key = hmac.new(webhook_secret.encode(), _PURPOSE, hashlib.sha256).digest()

    def signature(self, media_id: str, exp: int) -> str:
        return hmac.new(self._key, f"{media_id}.{exp}".encode(), hashlib.sha256).hexdigest()

    def url(self, base: str, media_id: str, exp: int) -> str:
        query = urlencode({"exp": exp, "sig": self.signature(media_id, exp)})
        return f"{base.rstrip('/')}/media/{media_id}?{query}"

    def check(self, media_id: str, exp: str, sig: str, now_s: int) -> LinkProblem | None:
        """None when the link is good. A bad signature is told before an expiry, so an
        altered ``exp`` is never reported as merely late."""
        if not (exp.isascii() and exp.isdigit() and len(exp) <= 12 and sig.isascii()):
            return LinkProblem.BAD_SIGNATURE
        if not hmac.compare_digest(self.signature(media_id, int(exp)), sig):
            return LinkProblem.BAD_SIGNATURE
        if int(exp) < now_s:
            return LinkProblem.EXPIRED
        return None
