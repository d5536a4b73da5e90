"""Messages, stop/start and careful-sending limits of one session. Parse, call core, serialize."""

from __future__ import annotations

from aiohttp import web

from api import serialize
from api.body import json_object
from api.context import SERVICE
from core.messages import check_limits

routes = web.RouteTableDef()


@routes.post("/api/sessions/{id}/messages")
async def send(request: web.Request) -> web.Response:
    body = await json_object(request, frozenset({"to", "text", "idempotencyKey"}))
    message, _ = await request.app[SERVICE].messages.accept(
        request.match_info["id"], body.get("to"), body.get("text"), body.get("idempotencyKey")
    )
    # 202 for a resend with the same key too: the same promise, the same message.
    return web.json_response({"id": message.id, "status": message.status}, status=202)


@routes.get("/api/sessions/{id}/messages/{mid}")
async def get_message(request: web.Request) -> web.Response:
    messages = request.app[SERVICE].messages
    message = await messages.get(request.match_info["id"], request.match_info["mid"])
    return web.json_response(message.view())


@routes.get("/api/sessions/{id}/limits")
async def get_limits(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    await service.get(request.match_info["id"])
    return web.json_response(await service.messages.limits(request.match_info["id"]))


@routes.put("/api/sessions/{id}/limits")
async def set_limits(request: web.Request) -> web.Response:
    body = await json_object(request, frozenset({"perMinute", "perDay", "warmupDays"}))
    limits = check_limits(body)
    service = request.app[SERVICE]
    await service.get(request.match_info["id"])
    return web.json_response(await service.messages.set_limits(request.match_info["id"], limits))


@routes.post("/api/sessions/{id}/stop")
async def stop(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    record = await service.stop(request.match_info["id"])
    return web.json_response(serialize.session(record, service.clock.now_ms()))


@routes.post("/api/sessions/{id}/start")
async def start(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    record = await service.start(request.match_info["id"])
    return web.json_response(serialize.session(record, service.clock.now_ms()))
