"""The session endpoints and the dashboard. Parse, call core, serialize."""

from __future__ import annotations

import dataclasses

from aiohttp import web

from api import events as operator_events
from api import serialize
from api.body import Body, Field
from api.context import POOL, SERVICE
from api.describe import operation, query
from api.messages import LIMITS
from api.proxies import PROXY_URL
from api.schema import answer, array, obj
from api.webhook import SESSION_ID
from core import fleet_stats
from core import qr as qr_render
from core.errors import InvalidInput
from core.messages import Counts

routes = web.RouteTableDef()

# A page of the dashboard's listing: bounded, so an answer stays small at 10,000 sessions.
DEFAULT_PAGE = 500
MAX_PAGE = 1000

# Core checks every field (core/sessions.provision), after refusing a provision during a
# restore, so the API only refuses unknown fields.
PROVISION = Body(
    {
        "phone": Field(
            {
                "type": "string",
                "description": "country code first; ASCII digits, '+', spaces, dashes, dots "
                "and parentheses",
                "example": "972501234567",
            }
        ),
        "proxy": Field(PROXY_URL),
        "eventsWebhookUrl": Field(
            {
                "type": "string",
                "description": "where this session's incoming messages and receipts go "
                "instead of EVENTS_WEBHOOK_URL: http:// or https://, its host admitted by "
                "EVENTS_WEBHOOK_ALLOW_NETWORKS / EVENTS_WEBHOOK_DENY_NETWORKS (needs "
                "EVENTS_WEBHOOK_SECRET on the server)",
                "example": "http://127.0.0.1:8080/wafleet-events",
            }
        ),
        "limits": Field(
            obj(
                LIMITS,
                additionalProperties=False,
                minProperties=1,
                description="the session's own careful-sending limits from its first "
                "message, as PUT /api/sessions/{id}/limits takes them (the settings' defaults "
                "for those not named)",
            )
        ),
    }
)
_COUNTS = [f.name for f in dataclasses.fields(Counts)]
STATS = obj(
    {
        "reconciling": {"type": "boolean"},
        "nodes": array(serialize.NODE),
        "starting": obj(
            {
                "total": {"type": "integer"},
                "started": {"type": "integer"},
                "pending": {"type": "integer"},
            }
        ),
        "messages": obj(
            {name: {"type": "integer", "minimum": 0} for name in _COUNTS},
            description="messages of the whole fleet since counting began (a deleted "
            "session's stay counted)",
            required=_COUNTS,
        ),
    }
)


def _now(request: web.Request) -> int:
    return request.app[SERVICE].clock.now_ms()


@routes.post("/api/sessions/provision")
@operation(
    "Create a session: choose a proxy, start its worker",
    {201: answer("created", serialize.SESSION)},
    409,
    503,
    body=PROVISION,
)
async def provision(request: web.Request) -> web.Response:
    body = await PROVISION.read(request)
    record = await request.app[SERVICE].provision(
        body.get("phone"), body.get("proxy"), body.get("eventsWebhookUrl"), body.get("limits")
    )
    return web.json_response(serialize.session(record, _now(request)), status=201)


@routes.get("/api/sessions/{id}/qr")
@operation(
    "The current QR: JSON {qr}, or a PNG with Accept: image/png",
    {
        200: {
            "description": "the QR",
            "content": {
                "application/json": {
                    "schema": obj(
                        {
                            "qr": {"type": "string"},
                            "pairingCode": {"type": "string", "nullable": True},
                        }
                    )
                },
                "image/png": {"schema": {"type": "string", "format": "binary"}},
            },
        }
    },
    404,
    409,
)
async def get_qr(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    code = await service.qr(request.match_info["id"])
    if "image/png" in request.headers.get("Accept", ""):
        return web.Response(body=qr_render.png(code), content_type="image/png")
    # For operators who cannot scan: the code to type in on the phone, when one was asked.
    pairing = (await service.get(request.match_info["id"])).pairing_code
    return web.json_response({"qr": code, "pairingCode": pairing})


@routes.post("/api/sessions/{id}/qr")
@operation(
    "Start a new QR round (after the last one ran out, or a logout)",
    {202: answer("restarting with a new QR round", serialize.SESSION)},
    404,
    409,
)
async def new_qr(request: web.Request) -> web.Response:
    record = await request.app[SERVICE].request_new_qr(request.match_info["id"])
    return web.json_response(serialize.session(record, _now(request)), status=202)


@routes.get("/api/sessions/{id}/status")
@operation("One session", {200: answer("the session", serialize.SESSION)}, 404)
async def status(request: web.Request) -> web.Response:
    record = await request.app[SERVICE].get(request.match_info["id"])
    return web.json_response(serialize.session(record, _now(request)))


@routes.get("/api/sessions/{id}/events")
@operation(
    "Without since: the session's recent lifecycle events, newest first. With since: the "
    "replay of its incoming messages and receipts stored after that stream id (0: from the "
    "start), oldest first, delivered or not",
    {200: answer("events (with since: of type OperatorEvent)", operator_events.REPLAY_PAGE)},
    404,
    parameters=operator_events.REPLAY,
    mentions=[operator_events.OPERATOR_EVENT],
)
async def events(request: web.Request) -> web.Response:
    if "since" in request.query:  # the operator's stream of messages and receipts
        return await operator_events.replay(request)
    found = await request.app[SERVICE].events(request.match_info["id"])
    return web.json_response({"events": found})


@routes.post("/api/sessions/{id}/restart")
@operation("Restart the session's worker", {200: answer("restarted", serialize.SESSION)}, 404, 409)
async def restart(request: web.Request) -> web.Response:
    record = await request.app[SERVICE].restart(request.match_info["id"])
    return web.json_response(serialize.session(record, _now(request)))


@routes.delete("/api/sessions/{id}")
@operation(
    "Delete: stop the worker, remove its folder, release the proxy slot",
    {200: answer("deleted", {"type": "object"})},
    404,
    409,
)
async def delete(request: web.Request) -> web.Response:
    session_id = request.match_info["id"]
    await request.app[SERVICE].delete(session_id)
    return web.json_response({"deleted": session_id})


@routes.get("/api/v1/dashboard/sessions")
@operation(
    "The sessions, a page at a time in id order (worker_2 before worker_10): `limit` "
    f"sessions (default {DEFAULT_PAGE}, at most {MAX_PAGE}) after `cursor`; `next` is the "
    "cursor of the following page, null on the last one; `total` counts them all",
    {
        200: answer(
            "one page of sessions",
            obj(
                {
                    "sessions": array(serialize.SESSION),
                    "total": {"type": "integer"},
                    "next": {"type": "string", "nullable": True},
                }
            ),
        )
    },
    parameters=[
        query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}),
        query("cursor", {"type": "string", "pattern": f"^{SESSION_ID.pattern}$"}),
    ],
)
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
@operation(
    "Counts by status, the pool's capacity, the runner's nodes with their sessions, and the "
    "progress of a bulk start of workers (after a reboot or a restore; absent when none "
    "runs); `reconciling: true` while serve's start-up reconcile runs",
    {200: answer("stats", STATS)},
)
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
