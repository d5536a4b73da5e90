"""The command channel's HTTP side: ``POST /worker/commands`` (a long poll) and
``POST /worker/commands/ack``, signed exactly as ``POST /webhook`` (core/commands.py says why).

The signature is checked before the body is parsed, with the session's own derived secret:
a worker cannot read or acknowledge another session's commands (a body naming another
session fails the signature, 401), and an acknowledgement of a command that is not its
session's is refused with 403; neither changes anything.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from api.body import Body, Field
from api.context import SERVICE, SETTINGS
from api.describe import operation
from api.errors import ERROR, error_response
from api.promise import NO_PROMISE
from api.schema import answer
from api.webhook import SIGNED, SIGNED_SESSION, read_signed

log = logging.getLogger("wafleet.commands")
routes = web.RouteTableDef()
MAX_BODY = 4 * 1024
ACK_STATUSES = frozenset({"sent", "failed"})
MAX_REASON = 512

POLL = Body(
    {
        "sessionId": SIGNED_SESSION,
        "waitMs": Field(
            {
                "type": "integer",
                "minimum": 0,
                "description": "how long to wait for a command (at most COMMAND_POLL_MS, "
                "its default)",
            },
            refuse="waitMs must be a whole number of milliseconds",
        ),
    },
    required=True,
    closed=False,
)
_NOT_AN_ACK = f"an ack is {{id, status: {' | '.join(sorted(ACK_STATUSES))}}}"
ACK = Body(
    {
        "sessionId": SIGNED_SESSION,
        "id": Field({"type": "string"}, required=True, refuse=_NOT_AN_ACK),
        "status": Field(
            {"type": "string", "enum": sorted(ACK_STATUSES)}, required=True, refuse=_NOT_AN_ACK
        ),
        "reason": Field(
            {"type": "string", "maxLength": MAX_REASON, "nullable": True},
            refuse=f"reason must be a string of at most {MAX_REASON} characters",
        ),
    },
    required=True,
    closed=False,
)


async def _signed_body(request: web.Request) -> tuple[str, dict[str, Any]]:
    return await read_signed(request, MAX_BODY, "command channel request")


@routes.post("/worker/commands")
@operation(
    "A worker's long poll of its command channel, signed as /webhook",
    {200: answer("the unacknowledged commands", {"type": "object"})},
    400,
    401,
    404,
    parameters=SIGNED,
    body=POLL,
    public=True,
)
async def poll(request: web.Request) -> web.Response:
    session_id, body = await _signed_body(request)
    POLL.check(body)
    service = request.app[SERVICE]
    limit = request.app[SETTINGS].command_poll_ms
    wait_ms = body.get("waitMs", limit)
    commands = await service.commands.poll(session_id, min(wait_ms, limit) / 1000)
    if not commands:
        request[NO_PROMISE] = True  # nothing handed out: nothing to wait for a replica for
    return web.json_response({"commands": commands})


@routes.post("/worker/commands/ack")
@operation(
    "A worker acknowledges one of its session's commands",
    {200: answer("applied", {"type": "object"})},
    400,
    401,
    parameters=SIGNED,
    body=ACK,
    public=True,
    responses={403: answer("not this session's command: nothing changes", ERROR)},
)
async def ack(request: web.Request) -> web.Response:
    session_id, body = await _signed_body(request)
    ACK.check(body)
    message_id, status, reason = body["id"], body["status"], body.get("reason")
    service = request.app[SERVICE]
    if not await service.commands.ack(session_id, message_id, str(status), reason):
        log.warning("%s acknowledged a command that is not its own", session_id)
        return error_response(403, "forbidden", "that command is not this session's")
    return web.json_response({"ok": True})
