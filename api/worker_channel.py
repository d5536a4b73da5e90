"""The command channel's HTTP side: ``POST /worker/commands`` (a long poll, carrying the
acknowledgements of what the worker carried out since its last poll) and
``POST /worker/commands/ack`` (one acknowledgement alone, as older workers send it), signed
exactly as ``POST /webhook`` (core/commands.py says why).

The signature is checked before the body is parsed, with the session's own derived secret:
a worker cannot read or acknowledge another session's commands (a body naming another
session fails the signature, 401), and an acknowledgement of a command that is not its
session's is refused with 403; neither changes anything (a poll whose acks include one that
is not its session's applies none of them).
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
from core.commands import Ack

log = logging.getLogger("wafleet.commands")
routes = web.RouteTableDef()
MAX_BODY = 48 * 1024  # a poll with its acks: 64 of them, reasons of 512 characters
ACK_STATUSES = frozenset({"sent", "failed"})
MAX_REASON = 512
MAX_ACKS = 64

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
        "acks": Field(
            {
                "type": "array",
                "maxItems": MAX_ACKS,
                "items": {
                    "type": "object",
                    "required": ["id", "status"],
                    "properties": {
                        "id": {"type": "string"},
                        "status": {"type": "string", "enum": sorted(ACK_STATUSES)},
                        "reason": {"type": "string", "maxLength": MAX_REASON},
                    },
                },
                "description": "outcomes of the commands carried out since the last poll",
            },
            refuse=f"acks must be a list of at most {MAX_ACKS} {_NOT_AN_ACK.split(' is ')[1]}",
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
    responses={403: answer("an ack not this session's: nothing applied", ERROR)},
)
async def poll(request: web.Request) -> web.Response:
    session_id, body = await _signed_body(request)
    POLL.check(body)
    acks = [_ack(item) for item in body.get("acks") or []]
    service = request.app[SERVICE]
    if acks and not await service.commands.ack(session_id, acks):
        log.warning("%s acknowledged a command that is not its own", session_id)
        return error_response(403, "forbidden", "a command acknowledged is not this session's")
    limit = request.app[SETTINGS].command_poll_ms
    wait_ms = body.get("waitMs", limit)
    commands = await service.commands.poll(session_id, min(wait_ms, limit) / 1000)
    if not commands and not acks:
        request[NO_PROMISE] = True  # nothing handed out or applied: nothing to wait for
    return web.json_response({"commands": commands})


def _ack(item: dict[str, Any]) -> Ack:
    return Ack(str(item["id"]), str(item["status"]), item.get("reason") or None)


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
    service = request.app[SERVICE]
    if not await service.commands.ack(session_id, [_ack(body)]):
        log.warning("%s acknowledged a command that is not its own", session_id)
        return error_response(403, "forbidden", "that command is not this session's")
    return web.json_response({"ok": True})
