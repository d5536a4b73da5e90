"""SPEC.md's session endpoints and the dashboard. Parse, call core, serialize."""

from __future__ import annotations

from aiohttp import web

from api import events as operator_events
from api import serialize
from api.body import json_object
from api.context import POOL, SERVICE
from core import qr as qr_render

routes = web.RouteTableDef()


def _now(request: web.Request) -> int:
    return request.app[SERVICE].clock.now_ms()


@routes.post("/api/sessions/provision")
async def provision(request: web.Request) -> web.Response:
    body = await json_object(request, frozenset({"phone", "proxy", "eventsWebhookUrl"}))
    record = await request.app[SERVICE].provision(
        body.get("phone"), body.get("proxy"), body.get("eventsWebhookUrl")
    )
    return web.json_response(serialize.session(record, _now(request)), status=201)


@routes.get("/api/sessions/{id}/qr")
async def get_qr(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    code = await service.qr(request.match_info["id"])
    if "image/png" in request.headers.get("Accept", ""):
        return web.Response(body=qr_render.png(code), content_type="image/png")
    # For operators who cannot scan: the code to type in on the phone, when one was asked.
    pairing = (await service.get(request.match_info["id"])).pairing_code
    return web.json_response({"qr": code, "pairingCode": pairing})


@routes.post("/api/sessions/{id}/qr")
async def new_qr(request: web.Request) -> web.Response:
    record = await request.app[SERVICE].request_new_qr(request.match_info["id"])
    return web.json_response(serialize.session(record, _now(request)), status=202)


@routes.get("/api/sessions/{id}/status")
async def status(request: web.Request) -> web.Response:
    record = await request.app[SERVICE].get(request.match_info["id"])
    return web.json_response(serialize.session(record, _now(request)))


@routes.get("/api/sessions/{id}/events")
async def events(request: web.Request) -> web.Response:
    if "since" in request.query:  # the operator's stream of messages and receipts
        return await operator_events.replay(request)
    found = await request.app[SERVICE].events(request.match_info["id"])
    return web.json_response({"events": found})


@routes.post("/api/sessions/{id}/restart")
async def restart(request: web.Request) -> web.Response:
    record = await request.app[SERVICE].restart(request.match_info["id"])
    return web.json_response(serialize.session(record, _now(request)))


@routes.delete("/api/sessions/{id}")
async def delete(request: web.Request) -> web.Response:
    session_id = request.match_info["id"]
    await request.app[SERVICE].delete(session_id)
    return web.json_response({"deleted": session_id})


@routes.get("/api/v1/dashboard/sessions")
async def dashboard_sessions(request: web.Request) -> web.Response:
    now = _now(request)
    records = await request.app[SERVICE].all_sessions()
    return web.json_response({"sessions": [serialize.session(r, now) for r in records]})


@routes.get("/api/v1/dashboard/stats")
async def dashboard_stats(request: web.Request) -> web.Response:
    stats = await request.app[POOL].stats()
    body: dict[str, object] = {
        "sessions": {"total": stats.sessions, "byStatus": stats.by_status},
        "proxies": {
            "total": len(stats.proxies),
            "active": stats.proxies_active,
            "bad": stats.proxies_bad,
        },
        "capacity": {"free": stats.free_slots, "total": stats.total_slots},
    }
    starting = serialize.starting(request.app[SERVICE].starting)
    if starting is not None:  # only while a bulk start of workers runs
        body["starting"] = starting
    return web.json_response(body)
