"""The command channel's HTTP side: ``POST /worker/commands`` (a long poll) and
``POST /worker/commands/ack``, signed exactly as ``POST /webhook`` (core/commands.py says why).

The signature is checked before the body is parsed, with the session's own derived secret:
a worker cannot read or acknowledge another session's commands (a body naming another
session fails the signature, 401), and an acknowledgement of a command that is not its
session's is refused with 403; neither changes anything.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from aiohttp import web

from api.body import parse
from api.context import SERVICE, SETTINGS
from api.errors import Unauthorized, error_response
from core import signing, text
from core.errors import InvalidInput

log = logging.getLogger("wafleet.commands")
routes = web.RouteTableDef()
MAX_BODY = 4 * 1024
SESSION_ID = re.compile(r"worker_\d{1,12}", re.ASCII)
_SESSION_FIELD = re.compile(rb'"sessionId"\s*:\s*"([^"\\]{0,64})"')
ACK_STATUSES = frozenset({"sent", "failed"})
MAX_REASON = 512


async def _signed_body(request: web.Request) -> tuple[str, dict[str, Any]]:
    """``(session id, body)`` of a request signed with that session's secret, or 401."""
    raw = await request.content.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise InvalidInput("the request is too large")
    found = _SESSION_FIELD.search(raw)
    session_id = found.group(1).decode("ascii", "replace") if found else ""
    if not SESSION_ID.fullmatch(session_id):
        raise InvalidInput("the body must be a JSON object with a sessionId (worker_<n>)")
    service = request.app[SERVICE]
    timestamp = request.headers.get(signing.TIMESTAMP_HEADER, "")
    signature = request.headers.get(signing.SIGNATURE_HEADER, "")
    problem = (
        "malformed signature headers"
        if not (timestamp.isascii() and signature.isascii())
        else signing.verify(
            signing.session_secret(request.app[SETTINGS].webhook_secret, session_id),
            timestamp,
            signature,
            raw,
            service.clock.now_ms(),
        )
    )
    if problem is not None:
        log.warning("command channel request for %s refused: %s", session_id, problem)
        raise Unauthorized(f"refused: {problem}")
    body = parse(raw)
    if not isinstance(body, dict) or body.get("sessionId") != session_id:
        raise InvalidInput("the body must be a JSON object with one sessionId")
    text.check_tree(body)
    return session_id, body


@routes.post("/worker/commands")
async def poll(request: web.Request) -> web.Response:
    session_id, body = await _signed_body(request)
    service = request.app[SERVICE]
    await service.get(session_id)
    limit = request.app[SETTINGS].command_poll_ms
    wait_ms = body.get("waitMs", limit)
    if not isinstance(wait_ms, int) or isinstance(wait_ms, bool) or wait_ms < 0:
        raise InvalidInput("waitMs must be a whole number of milliseconds")
    commands = await service.commands.poll(session_id, min(wait_ms, limit) / 1000)
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
