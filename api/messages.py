"""Messages, stop/start and careful-sending limits of one session. Parse, call core, serialize."""

from __future__ import annotations

from aiohttp import web

from api import serialize
from api.body import Body, Field, object_of, only
from api.context import SERVICE, SETTINGS
from api.describe import SESSION, operation
from api.message_media import (
    MEDIA_FIELDS,
    json_cap,
    read_body,
    send_json,
    send_multipart,
)
from api.message_media_doc import MEDIA_VIEW, MULTIPART, SendBody
from api.owned import session_json
from api.schema import answer, obj
from core.message_media import MAX_CAPTION
from core.messages import MAX_IDEMPOTENCY_KEY, MAX_TEXT, STATUSES
from core.send_limits import LIMIT_NAMES, MAX_LIMIT, check_limits

routes = web.RouteTableDef()

MESSAGE = obj(
    {
        "id": {"type": "string"},
        "to": {"type": "string"},
        "status": {"type": "string", "enum": list(STATUSES)},
        "reason": {"type": "string", "description": "why it failed (expired, logged_out, ...)"},
        "media": MEDIA_VIEW,
        "caption": {"type": "string", "maxLength": MAX_CAPTION},
    }
)
_LIMIT_MEANING = {
    "perMinute": "0: no limit",
    "perDay": "0: no limit",
    "warmupDays": "a new number's daily limit ramps up over this many days",
}
# Core checks them (core/send_limits.check_limits), for a provision and a backup's too.
LIMITS = {
    name: {
        "type": "integer",
        "minimum": 0,
        "maximum": MAX_LIMIT,
        "description": _LIMIT_MEANING[name],
    }
    for name in LIMIT_NAMES
}
SEND = SendBody(
    {
        "to": Field({"type": "string", "example": "14155550123"}, required=True),
        "text": Field({"type": "string", "minLength": 1, "maxLength": MAX_TEXT}, required=True),
        "idempotencyKey": Field(
            {"type": "string", "minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY}
        ),
    },
    required=True,
)
SET_LIMITS = Body(
    {name: Field(schema) for name, schema in LIMITS.items()},
    required=True,
    extra={"minProperties": 1},
)


@routes.post("/api/sessions/{id}/messages")
@operation(
    "Send a text or a media file through the session: accepted, durable, sent at most once",
    {202: answer("accepted (the same idempotencyKey: the same message)", MESSAGE)},
    404,
    413,
    415,
    body=SEND,
    scopes=SESSION,
    audit="message",
    description="A text as JSON; a file as JSON with its bytes in base64, or as "
    "multipart/form-data (streamed: the way for big files). A file is checked before "
    "anything is kept: its size per kind (413), its kind against its bytes (415 "
    "media_type_mismatch), an image's decode (415 media_unreadable).",
)
async def send(request: web.Request) -> web.Response:
    if request.content_type == MULTIPART:
        message, _ = await send_multipart(request)
    else:
        raw = await read_body(request, json_cap(request.app[SETTINGS]))
        body = object_of(raw, MEDIA_FIELDS | frozenset(SEND.fields))
        if "media" in body:
            message, _ = await send_json(request, body)
        else:
            SEND.check(only(body, frozenset(SEND.fields)))
            message, _ = await request.app[SERVICE].messages.accept(
                request.match_info["id"],
                body.get("to"),
                body.get("text"),
                body.get("idempotencyKey"),
            )
    # 202 for a resend with the same key too: the same promise, the same message.
    return web.json_response({"id": message.id, "status": message.status}, status=202)


@routes.get("/api/sessions/{id}/messages/{mid}")
@operation(
    "One message and its status", {200: answer("the message", MESSAGE)}, 404, scopes=SESSION
)
async def get_message(request: web.Request) -> web.Response:
    messages = request.app[SERVICE].messages
    message = await messages.get(request.match_info["id"], request.match_info["mid"])
    return web.json_response(message.view())


@routes.get("/api/sessions/{id}/limits")
@operation(
    "The careful-sending limits in force for the session",
    {200: answer("limits", obj(LIMITS))},
    404,
    scopes=SESSION,
)
async def get_limits(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    await service.get(request.match_info["id"])
    return web.json_response(await service.messages.limits(request.match_info["id"]))


@routes.put("/api/sessions/{id}/limits")
@operation(
    "Set the session's own limits (the settings' defaults otherwise)",
    {200: answer("limits in force", obj(LIMITS))},
    404,
    body=SET_LIMITS,
    scopes=SESSION,
    audit="limits",
)
async def set_limits(request: web.Request) -> web.Response:
    body = await SET_LIMITS.read(request)
    limits = check_limits(body)
    service = request.app[SERVICE]
    await service.get(request.match_info["id"])
    return web.json_response(await service.messages.set_limits(request.match_info["id"], limits))


@routes.post("/api/sessions/{id}/stop")
@operation(
    "Stop without deleting: no worker; link, proxy, sticky mapping and queue kept",
    {200: answer("stopped", serialize.SESSION)},
    404,
    409,
    scopes=SESSION,
    audit="stop",
)
async def stop(request: web.Request) -> web.Response:
    record = await request.app[SERVICE].stop(request.match_info["id"])
    return web.json_response(await session_json(request, record))


@routes.post("/api/sessions/{id}/start")
@operation(
    "Start a stopped session with its saved link (no new QR)",
    {200: answer("starting", serialize.SESSION)},
    404,
    409,
    scopes=SESSION,
    audit="start",
)
async def start(request: web.Request) -> web.Response:
    record = await request.app[SERVICE].start(request.match_info["id"])
    return web.json_response(await session_json(request, record))
