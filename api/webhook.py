"""``POST /webhook``: events from workers, each signed with its own session's secret.

This is the hot path (every worker pings every 15 s), so it does one HMAC check, one
JSON parse and, for a ``PING``, one Redis round trip.

The signature is checked *before* the body is parsed: the session id, needed to derive
the secret, is read from the raw bytes with a bounded pattern, and the parsed body must
then name the same session. So an unsigned body, however hostile (deeply nested, huge
strings), costs one regex and one HMAC, never a parse.
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache
from typing import Any

from aiohttp import web

from api.body import Body, Field, parse, read_capped
from api.context import SERVICE, SETTINGS
from api.describe import header, operation
from api.errors import Unauthorized
from api.promise import NO_PROMISE
from api.schema import answer
from core import signing, text
from core.errors import InvalidInput, NotFound
from core.events import EventKind

log = logging.getLogger("wafleet.webhook")
routes = web.RouteTableDef()
MAX_BODY = 64 * 1024
MAX_BATCH = 100  # events in one request (the worker sends at most this many)
SESSION_ID = re.compile(r"worker_[0-9]{1,12}", re.ASCII)
_SESSION_FIELD = re.compile(rb'"sessionId"\s*:\s*"([^"\\]{0,64})"')
# Every request a worker sends: its headers, and the session it speaks for.
SIGNED = (header(signing.TIMESTAMP_HEADER), header(signing.SIGNATURE_HEADER))
SIGNED_SESSION = Field({"type": "string", "pattern": f"^{SESSION_ID.pattern}$"}, required=True)
# Core checks the event (core/sessions/event_rules.py) after the signature; this describes it.
_ONE_EVENT = {
    "type": "object",
    "properties": {
        "type": {"type": "string", "enum": [k.value for k in EventKind]},
        "data": {"type": "object"},
        "timestamp": {"type": "integer"},
        "id": {"type": "string"},
    },
}
EVENT = Body(
    {
        "sessionId": SIGNED_SESSION,
        # One event (type, data, id), or a batch of them in order (events).
        "type": Field({"type": "string", "enum": [k.value for k in EventKind]}),
        "data": Field({"type": "object"}),
        "timestamp": Field({"type": "integer"}),
        "id": Field({"type": "string"}),
        "events": Field({"type": "array", "items": _ONE_EVENT, "minItems": 1, "maxItems": 100}),
    },
    required=True,
    closed=False,
)


@lru_cache(maxsize=4096)
def _secret(webhook_secret: str, session_id: str) -> str:
    return signing.session_secret(webhook_secret, session_id)


def _claimed_session(raw: bytes) -> str:
    found = _SESSION_FIELD.search(raw)
    session_id = found.group(1).decode("ascii", "replace") if found else ""
    if not SESSION_ID.fullmatch(session_id):
        # Checked before the secret is derived (and cached) for an unauthenticated id.
        raise InvalidInput("the body must be a JSON object with a sessionId (worker_<n>)")
    return session_id


def signature_problem(request: web.Request, session_id: str, signed: bytes) -> str | None:
    """Why the request's signature headers do not sign ``signed`` with ``session_id``'s own
    secret (for the log; the caller answers 401), or None when they do."""
    timestamp = request.headers.get(signing.TIMESTAMP_HEADER, "")
    signature = request.headers.get(signing.SIGNATURE_HEADER, "")
    # hmac.compare_digest raises on non-ASCII str, int() reads other digit systems.
    if not (timestamp.isascii() and signature.isascii()):
        return "malformed signature headers"
    return signing.verify(
        _secret(request.app[SETTINGS].webhook_secret, session_id),
        timestamp,
        signature,
        signed,
        request.app[SERVICE].clock.now_ms(),
    )


async def read_signed(
    request: web.Request, max_body: int, what: str
) -> tuple[str, dict[str, Any]]:
    """``(session id, body)`` of a request signed with that session's own secret, or 400/401.

    The one door for everything a worker sends (events, command-channel polls and acks): the
    signature is checked before the body is parsed, so a worker can speak only for its own
    session. ``what`` names the request in errors and the log.
    """
    raw = await read_capped(request, max_body, what)
    session_id = _claimed_session(raw)
    problem = signature_problem(request, session_id, raw)
    if problem is not None:
        log.warning("%s for %s refused: %s", what, session_id, problem)
        raise Unauthorized(f"{what} refused: {problem}")
    body = parse(raw)
    if not isinstance(body, dict) or body.get("sessionId") != session_id:
        raise InvalidInput("the body must be a JSON object with one sessionId")
    if not text.plain_json(raw):
        text.check_tree(body)
    return session_id, body


@routes.post("/webhook")
@operation(
    "Events from workers, HMAC-signed per session",
    {200: answer("accepted", {"type": "object"})},
    400,
    401,
    404,
    parameters=SIGNED,
    body=EVENT,
    public=True,
    description="The signature is checked before the body is parsed; every string in data "
    "obeys the same rule as REST bodies (no control characters, no lone surrogates). A batch "
    "(events) is applied in order; the answer's refused names each event refused for good",
)
async def webhook(request: web.Request) -> web.Response:
    session_id, body = await read_signed(request, MAX_BODY, "webhook")
    service = request.app[SERVICE]
    if "events" in body:
        return web.json_response({"ok": True, "refused": await _batch(request, session_id, body)})
    if body.get("type") == "PING":
        request[NO_PROMISE] = True  # kept in memory and flushed later: it promises nothing
    await service.handle_event(
        session_id, body.get("type"), body.get("data"), event_id=body.get("id")
    )
    return web.json_response({"ok": True})


async def _batch(
    request: web.Request, session_id: str, body: dict[str, Any]
) -> list[dict[str, Any]]:
    """Apply a batch in order; the events refused for good, each with why.

    The envelope is checked whole before anything is applied (a malformed batch is a 400
    and changes nothing; the worker then sends its events one by one). An event refused
    for good (bad data, a deleted session) does not stop the ones after it, and is named
    in the answer, as a single event's 400 would have told the worker. Anything else
    (Redis away) stops the batch with its error: the worker sends the whole batch again,
    and each event already applied is applied once (its id).
    """
    events = body["events"]
    if not isinstance(events, list) or not 1 <= len(events) <= MAX_BATCH:
        raise InvalidInput(f"events must be a list of 1 to {MAX_BATCH} events")
    for event in events:
        if not isinstance(event, dict) or event.get("sessionId", session_id) != session_id:
            raise InvalidInput("each event must be an object of the signed session")
    service = request.app[SERVICE]
    refused = []
    for event in events:
        try:
            await service.handle_event(
                session_id, event.get("type"), event.get("data"), event_id=event.get("id")
            )
        except (InvalidInput, NotFound) as exc:
            log.warning("webhook event %s of %s refused: %s", event.get("id"), session_id, exc)
            refused.append({"id": event.get("id"), "error": str(exc)})
    return refused
