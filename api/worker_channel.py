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

from api.context import SERVICE, SETTINGS
from api.errors import error_response
from api.promise import NO_PROMISE
from api.webhook import read_signed
from core.errors import InvalidInput

log = logging.getLogger("wafleet.commands")
routes = web.RouteTableDef()
MAX_BODY = 4 * 1024
ACK_STATUSES = frozenset({"sent", "failed"})
MAX_REASON = 512


async def _signed_body(request: web.Request) -> tuple[str, dict[str, Any]]:
    return await read_signed(request, MAX_BODY, "command channel request")


@routes.post("/worker/commands")
async def poll(request: web.Request) -> web.Response:
    session_id, body = await _signed_body(request)
    service = request.app[SERVICE]
    limit = request.app[SETTINGS].command_poll_ms
    wait_ms = body.get("waitMs", limit)
    if not isinstance(wait_ms, int) or isinstance(wait_ms, bool) or wait_ms < 0:
        raise InvalidInput("waitMs must be a whole number of milliseconds")
    commands = await service.commands.poll(session_id, min(wait_ms, limit) / 1000)
    if not commands:
        request[NO_PROMISE] = True  # nothing handed out: nothing to wait for a replica for
    return web.json_response({"commands": commands})


@routes.post("/worker/commands/ack")
async def ack(request: web.Request) -> web.Response:
    session_id, body = await _signed_body(request)
    message_id, status, reason = body.get("id"), body.get("status"), body.get("reason")
    if not isinstance(message_id, str) or status not in ACK_STATUSES:
        raise InvalidInput(f"an ack is {{id, status: {' | '.join(sorted(ACK_STATUSES))}}}")
    if reason is not None and (not isinstance(reason, str) or len(reason) > MAX_REASON):
        raise InvalidInput(f"reason must be a string of at most {MAX_REASON} characters")
    service = request.app[SERVICE]
    if not await service.commands.ack(session_id, message_id, str(status), reason):
        log.warning("%s acknowledged a command that is not its own", session_id)
        return error_response(403, "forbidden", "that command is not this session's")
    return web.json_response({"ok": True})
