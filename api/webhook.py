"""``POST /webhook``: events from workers, each signed with its own session's secret.

This is the hot path (every worker pings every 15 s), so it does one HMAC check, one
JSON parse and, for a ``PING``, one Redis round trip.
"""

from __future__ import annotations

import json
import logging
import re
from functools import lru_cache

from aiohttp import web

from api.context import SERVICE, SETTINGS
from api.errors import Unauthorized
from core import signing
from core.errors import InvalidInput

log = logging.getLogger("wafleet.webhook")
routes = web.RouteTableDef()
MAX_BODY = 64 * 1024
SESSION_ID = re.compile(r"worker_\d{1,12}")


@lru_cache(maxsize=4096)
def _secret(webhook_secret: str, session_id: str) -> str:
    return signing.session_secret(webhook_secret, session_id)


@routes.post("/webhook")
async def webhook(request: web.Request) -> web.Response:
    raw = await request.content.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise InvalidInput("the event is too large")
    try:
        body = json.loads(raw)
    except ValueError:
        raise InvalidInput("the body is not valid JSON") from None
    if not isinstance(body, dict) or not isinstance(body.get("sessionId"), str):
        raise InvalidInput("the body must be a JSON object with a sessionId")
    session_id = body["sessionId"]
    if not SESSION_ID.fullmatch(session_id):
        # Checked before the secret is derived (and cached) for an unauthenticated id.
        raise InvalidInput("sessionId is not a wafleet session id (worker_<n>)")
    service = request.app[SERVICE]
    problem = signing.verify(
        _secret(request.app[SETTINGS].webhook_secret, session_id),
        request.headers.get(signing.TIMESTAMP_HEADER, ""),
        request.headers.get(signing.SIGNATURE_HEADER, ""),
        raw,
        service.clock.now_ms(),
    )
    if problem is not None:
        log.warning("webhook for %s refused: %s", session_id[:64], problem)
        raise Unauthorized(f"webhook refused: {problem}")
    await service.handle_event(
        session_id, body.get("type"), body.get("data"), event_id=body.get("id")
    )
    return web.json_response({"ok": True})
