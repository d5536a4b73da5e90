"""The REST side of the audit trail: each action a route declares is recorded with its
result, and ``GET /api/v1/audit`` pages through the trail (admin only).

The middleware sits outside the key check, so a refusal by scope, rate or ownership is an
entry too (its reason the error code); a request with no valid key is recorded as the actor
``anonymous``. Only routes that change the fleet declare an action: reads are not recorded.
"""

from __future__ import annotations

import json
import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from api.auth import principal
from api.context import AUDIT
from api.describe import declared, query
from api.describe import operation as declare
from api.schema import answer, array, obj
from core.audit import ACTIONS, DEFAULT_PAGE, MAX_PAGE, Entry
from core.errors import InvalidInput, WafleetError

log = logging.getLogger("wafleet.audit")
routes = web.RouteTableDef()
# What a handler may set for the entry when the session is known only after it ran.
SESSION_OF_ACTION = web.RequestKey("audit_session", str)

ENTRY = obj(
    {
        "id": {"type": "string", "description": "its stream id (since= of the next page)"},
        "at": {"type": "integer", "description": "epoch ms"},
        "actor": {"type": "string", "description": "key name, admin, or tg:<user id>"},
        "via": {"type": "string", "enum": ["rest", "chat"]},
        "from": {"type": "string", "description": "the client's address"},
        "action": {"type": "string", "enum": list(ACTIONS)},
        "session": {"type": "string"},
        "result": {"type": "string", "enum": ["done", "refused"]},
        "reason": {"type": "string", "description": "why refused; flood: one entry for many"},
        "count": {"type": "integer", "description": "with reason flood: how many it stands for"},
    }
)


@web.middleware
async def audit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    found = declared(request.match_info.route.handler)
    action = found.audit if found is not None else None
    if action is None:
        response: web.StreamResponse = await handler(request)
        return response
    try:
        response = await handler(request)
    except WafleetError as exc:
        await _record(request, action, exc.code)
        raise
    except web.HTTPException as exc:
        await _record(request, action, exc.reason.lower().replace(" ", "_"))
        raise
    reason = None if response.status < 400 else _code(response)
    await _record(request, action, reason)
    return response


def _code(response: web.StreamResponse) -> str:
    try:
        text = response.text if isinstance(response, web.Response) else None
        return str(json.loads(text or "")["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return f"http_{response.status}"


async def _record(request: web.Request, action: str, reason: str | None) -> None:
    caller = principal(request)
    session = request.get(SESSION_OF_ACTION) or request.match_info.get("id")
    if action.startswith(("key_", "proxy_", "backup", "restore")):
        session = None  # their path id is a key's, a proxy's or a backup's
    entry = Entry(
        actor=caller.name if caller is not None else "anonymous",
        via="rest",
        action=action,
        result="done" if reason is None else "refused",
        session=session,
        reason=reason,
        origin=request.remote,
    )
    try:
        await request.app[AUDIT].record(entry)
    except Exception:  # the answer stands even when the trail cannot be written
        log.exception("audit entry for %s %s not written", request.method, request.path)


@routes.get("/api/v1/audit")
@declare(
    "The audit trail, oldest first from `since` (a stream id; 0: from the start): every "
    "action that changed the fleet or was refused, by whom, from where; `next` is the since "
    "of the following page",
    {200: answer("entries", obj({"entries": array(ENTRY), "next": {"type": "string"}}))},
    parameters=[
        query("since", {"type": "string", "pattern": "^[0-9]{1,20}(-[0-9]{1,20})?$"}),
        query("session", {"type": "string"}),
        query("actor", {"type": "string"}),
        query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}),
    ],
)
async def audit_page(request: web.Request) -> web.Response:
    q = request.rel_url.query
    unknown = sorted(set(q) - {"since", "session", "actor", "limit"})
    if unknown:
        raise InvalidInput(f"unknown query parameter(s): {', '.join(unknown)}")
    since = q.get("since", "0")
    head, dash, tail = since.partition("-")
    if not (head.isascii() and head.isdigit() and len(head) <= 20) or (
        dash and not (tail.isascii() and tail.isdigit() and len(tail) <= 20)
    ):
        raise InvalidInput("since must be a stream id (the next of the page before) or 0")
    raw = q.get("limit", str(DEFAULT_PAGE))
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 4) or not 1 <= int(raw) <= MAX_PAGE:
        raise InvalidInput(f"limit must be a whole number from 1 to {MAX_PAGE}")
    entries, cursor = await request.app[AUDIT].page(
        since, int(raw), q.get("session"), q.get("actor")
    )
    return web.json_response({"entries": entries, "next": cursor})
