"""The session endpoints and the dashboard. Parse, call core, serialize."""

from __future__ import annotations

import dataclasses

from aiohttp import web

from api import events as operator_events
from api import serialize
from api.body import json_object
from api.context import POOL, SERVICE
from api.webhook import SESSION_ID
from core import fleet_stats
from core import qr as qr_render
from core.errors import InvalidInput

routes = web.RouteTableDef()

# A page of the dashboard's listing: bounded, so an answer stays small at 10,000 sessions.
DEFAULT_PAGE = 500
MAX_PAGE = 1000


def _now(request: web.Request) -> int:
    return request.app[SERVICE].clock.now_ms()


@routes.post("/api/sessions/provision")
async def provision(request: web.Request) -> web.Response:
    body = await json_object(request, frozenset({"phone", "proxy", "eventsWebhookUrl", "limits"}))
    record = await request.app[SERVICE].provision(
        body.get("phone"), body.get("proxy"), body.get("eventsWebhookUrl"), body.get("limits")
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
    after, limit = _page_query(request)
    records, cursor, total = await request.app[SERVICE].session_page(after, limit)
    now = _now(request)
    return web.json_response(
        {
            "sessions": [serialize.session(r, now) for r in records],
            "total": total,
            "next": cursor,
        }
    )


def _page_query(request: web.Request) -> tuple[str | None, int]:
    """``?limit=`` (1 to ``MAX_PAGE``, default ``DEFAULT_PAGE``) and ``?cursor=`` (the
    ``next`` of the page before: a session id). Anything else is refused, not ignored."""
    query = request.rel_url.query
    unknown = sorted(set(query) - {"limit", "cursor"})
    if unknown:
        raise InvalidInput(f"unknown query parameter(s): {', '.join(unknown)}; use limit, cursor")
    if len(query.getall("limit", [])) > 1 or len(query.getall("cursor", [])) > 1:
        raise InvalidInput("give limit and cursor at most once each")
    raw_limit = query.get("limit")
    limit = DEFAULT_PAGE
    if raw_limit is not None:
        digits = raw_limit.isascii() and raw_limit.isdigit() and len(raw_limit) <= 4
        if not digits or not 1 <= int(raw_limit) <= MAX_PAGE:
            raise InvalidInput(f"limit must be a whole number from 1 to {MAX_PAGE}")
        limit = int(raw_limit)
    cursor = query.get("cursor")
    if cursor is not None and not SESSION_ID.fullmatch(cursor):
        raise InvalidInput("cursor must be the next of the page before (a session id, worker_<n>)")
    return cursor, limit


@routes.get("/api/v1/dashboard/stats")
async def dashboard_stats(request: web.Request) -> web.Response:
    stats = await fleet_stats.with_nodes(
        await request.app[POOL].stats(), request.app[SERVICE].runner
    )
    body: dict[str, object] = {
        "sessions": {"total": stats.sessions, "byStatus": stats.by_status},
        "proxies": {
            "total": len(stats.proxies),
            "active": stats.proxies_active,
            "bad": stats.proxies_bad,
        },
        "capacity": {"free": stats.free_slots, "total": stats.total_slots},
        "nodes": [serialize.node(n) for n in stats.nodes],
    }
    service = request.app[SERVICE]
    # Sent / received / failed over the fleet: one hash, whatever the fleet's size.
    body["messages"] = dataclasses.asdict(await service.messages.fleet_counts())
    if service.reconciling:  # only while serve's start-up reconcile runs
        body["reconciling"] = True
    starting = serialize.starting(service.starting)
    if starting is not None:  # only while a bulk start of workers runs
        body["starting"] = starting
    return web.json_response(body)
