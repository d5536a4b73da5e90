"""The operator's view of a session's incoming messages and receipts: replay and dead letters.

``GET /api/sessions/:id/events?since=`` pages through the durable stream (what was delivered
and what is still on its way); without ``since`` the same path answers the session's
lifecycle history, as before (api/sessions.py hands the request here when ``since`` is given).
Dead letters are listed and put back in line for delivery here too.
"""

from __future__ import annotations

from aiohttp import web

from api.context import SERVICE
from api.describe import SESSION, operation, query
from api.schema import Component, answer, array, obj
from core import event_log
from core.errors import InvalidInput
from core.events import MESSAGE_EVENTS

routes = web.RouteTableDef()
DEFAULT_PAGE = 100
MAX_OFFSET = 1 << 40

OPERATOR_EVENT = Component(
    "OperatorEvent",
    obj(
        {
            "id": {"type": "string", "description": "stable across attempts and redeliveries"},
            "sessionId": {"type": "string"},
            "type": {"type": "string", "enum": sorted(MESSAGE_EVENTS)},
            "data": {"type": "object"},
            "timestamp": {"type": "integer", "description": "when serve stored it (ms)"},
            "streamId": {"type": "string", "description": "its place in the stream (?since=)"},
        },
        description="What the operator's endpoint receives (POST, JSON), signed: headers "
        "X-Wafleet-Timestamp (ms) and X-Wafleet-Signature: sha256=HMAC-SHA256("
        "EVENTS_WEBHOOK_SECRET, '<timestamp>.<raw body>'); also X-Wafleet-Event-Id, "
        "X-Wafleet-Session, X-Wafleet-Attempt. Delivered at least once: deduplicate on id.",
    ),
)
LIMIT = query(
    "limit",
    {"type": "integer", "minimum": 1, "maximum": event_log.MAX_PAGE, "default": DEFAULT_PAGE},
)
# The replay's parameters, taken by GET /api/sessions/{id}/events (api/sessions.py).
REPLAY = (
    query("since", {"type": "string", "pattern": "^[0-9]{1,20}(-[0-9]{1,20})?$"}),
    LIMIT,
)
REPLAY_PAGE = obj(
    {
        "events": array({"type": "object"}),
        "next": {"type": "string", "description": "since of the next page"},
        "deliveredThrough": {
            "type": "string",
            "description": "the last stream id delivered or dead-lettered",
        },
    }
)


def _whole(request: web.Request, name: str, default: int, lowest: int, highest: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdigit()) or not lowest <= int(raw) <= highest:
        raise InvalidInput(f"{name} must be a whole number from {lowest} to {highest}")
    return int(raw)


async def replay(request: web.Request) -> web.Response:
    """What is stored after ``since`` (exclusive; ``0`` from the start), oldest first, at
    most ``limit``; ``next`` is the ``since`` of the following page."""
    service = request.app[SERVICE]
    session_id = request.match_info["id"]
    since = event_log.parse_since(request.query["since"])
    limit = _whole(request, "limit", DEFAULT_PAGE, 1, event_log.MAX_PAGE)
    await service.get(session_id)
    log = service.operator_events
    found = await log.since(session_id, since, limit)
    return web.json_response(
        {
            "events": [service.incoming_media.dress(event.body()) for event in found],
            "next": found[-1].stream_id if found else since,
            "deliveredThrough": await log.cursor(session_id),
        }
    )


@routes.get("/api/sessions/{id}/events/dead-letters")
@operation(
    "Events whose delivery gave up (EVENTS_MAX_ATTEMPTS or EVENTS_MAX_AGE_MS), oldest "
    "first; kept until redelivered",
    {
        200: answer(
            "dead letters: an OperatorEvent plus attempts, error, deadAt",
            obj({"deadLetters": array({"type": "object"}), "total": {"type": "integer"}}),
        )
    },
    404,
    parameters=[
        query("offset", {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET, "default": 0}),
        LIMIT,
    ],
    scopes=SESSION,
)
async def dead_letters(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    session_id = request.match_info["id"]
    offset = _whole(request, "offset", 0, 0, MAX_OFFSET)
    limit = _whole(request, "limit", DEFAULT_PAGE, 1, event_log.MAX_PAGE)
    await service.get(session_id)
    letters, total = await service.operator_events.dead_letters(session_id, offset, limit)
    return web.json_response({"deadLetters": letters, "total": total})


@routes.post("/api/sessions/{id}/events/dead-letters/redeliver")
@operation(
    "Put the dead letters back in line (oldest first, after what waits now, same ids); "
    "up to 1,000 per call",
    {
        202: answer(
            "queued for delivery",
            obj(
                {
                    "redelivered": {"type": "integer"},
                    "remaining": {"type": "integer", "description": "call again if > 0"},
                }
            ),
        )
    },
    404,
    scopes=SESSION,
)
async def redeliver(request: web.Request) -> web.Response:
    """Dead letters go back in line, oldest first, after what is waiting now, with their own
    ids; up to 1,000 per call (``remaining`` says whether to call again)."""
    service = request.app[SERVICE]
    session_id = request.match_info["id"]
    await service.get(session_id)
    moved, left = await service.operator_events.redeliver(session_id)
    return web.json_response({"redelivered": moved, "remaining": left}, status=202)
