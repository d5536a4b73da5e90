"""The session endpoints and the dashboard. Parse, call core, serialize."""

from __future__ import annotations

import asyncio
import dataclasses

from aiohttp import web

from api import events as operator_events
from api import serialize
from api.audit_trail import SESSION_OF_ACTION
from api.body import Body, Field
from api.context import OWNERS, POOL, SERVICE
from api.describe import SESSION, operation, query
from api.messages import LIMITS
from api.owned import client_key, session_json, sessions_json
from api.proxies import PROXY_URL
from api.schema import answer, array, obj
from api.webhook import SESSION_ID
from core import fleet_stats
from core import qr as qr_render
from core.errors import InvalidInput
from core.messages import Counts
from core.store.sessions import id_order

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
    scopes=SESSION,
    audit="provision",
)
async def provision(request: web.Request) -> web.Response:
    body = await PROVISION.read(request)
    # The owner is written with the record (an admin's provision clearing it: an id used
    # again after a restore must not inherit an old owner).
    record = await request.app[SERVICE].provision(
        body.get("phone"),
        body.get("proxy"),
        body.get("eventsWebhookUrl"),
        body.get("limits"),
        owner=client_key(request),
    )
    request[SESSION_OF_ACTION] = record.id
    return web.json_response(await session_json(request, record), status=201)


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
    scopes=SESSION,
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
    scopes=SESSION,
    audit="qr",
)
async def new_qr(request: web.Request) -> web.Response:
    record = await request.app[SERVICE].request_new_qr(request.match_info["id"])
    return web.json_response(await session_json(request, record), status=202)


@routes.get("/api/sessions/{id}/status")
@operation("One session", {200: answer("the session", serialize.SESSION)}, 404, scopes=SESSION)
async def status(request: web.Request) -> web.Response:
    record = await request.app[SERVICE].get(request.match_info["id"])
    return web.json_response(await session_json(request, record))


@routes.get("/api/sessions/{id}/events")
@operation(
    "Without since: the session's recent lifecycle events, newest first. With since: the "
    "replay of its incoming messages and receipts stored after that stream id (0: from the "
    "start), oldest first, delivered or not",
    {200: answer("events (with since: of type OperatorEvent)", operator_events.REPLAY_PAGE)},
    404,
    parameters=operator_events.REPLAY,
    mentions=[operator_events.OPERATOR_EVENT],
    scopes=SESSION,
)
async def events(request: web.Request) -> web.Response:
    if "since" in request.query:  # the operator's stream of messages and receipts
        return await operator_events.replay(request)
    found = await request.app[SERVICE].events(request.match_info["id"])
    return web.json_response({"events": found})


@routes.post("/api/sessions/{id}/restart")
@operation(
    "Restart the session's worker",
    {200: answer("restarted", serialize.SESSION)},
    404,
    409,
    scopes=SESSION,
    audit="restart",
)
async def restart(request: web.Request) -> web.Response:
    record = await request.app[SERVICE].restart(request.match_info["id"])
    return web.json_response(await session_json(request, record))


@routes.delete("/api/sessions/{id}")
@operation(
    "Delete: stop the worker, remove its folder, release the proxy slot",
    {200: answer("deleted", {"type": "object"})},
    404,
    409,
    scopes=SESSION,
    audit="delete",
)
async def delete(request: web.Request) -> web.Response:
    session_id = request.match_info["id"]
    await request.app[SERVICE].delete(session_id)
    await request.app[OWNERS].set(session_id, None)
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
    scopes=SESSION,
)
async def dashboard_sessions(request: web.Request) -> web.Response:
    after, limit = _page_query(request)
    own = client_key(request)
    if own is None:
        records, cursor, total = await request.app[SERVICE].session_page(after, limit)
    else:  # a client's own sessions, paged the same way
        mine = await request.app[OWNERS].records(request.app[SERVICE].store, own)
        total = len(mine)
        later = [r for r in mine if after is None or id_order(r.id) > id_order(after)]
        records = later[:limit]
        cursor = records[-1].id if len(later) > limit else None
    return web.json_response(
        {
            "sessions": await sessions_json(request, records),
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
    scopes=SESSION,
)
async def dashboard_stats(request: web.Request) -> web.Response:
    own = client_key(request)
    if own is not None:  # a client's own sessions only: no pool, no nodes
        return web.json_response(await _client_stats(request, own))
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


async def _client_stats(request: web.Request, key_id: str) -> dict[str, object]:
    service = request.app[SERVICE]
    mine = await request.app[OWNERS].records(service.store, key_id)
    by_status: dict[str, int] = {}
    for record in mine:
        by_status[record.status] = by_status.get(record.status, 0) + 1
    totals = dict.fromkeys(_COUNTS, 0)
    for counts in await asyncio.gather(*(service.messages.counts(r.id) for r in mine)):
        for name, n in dataclasses.asdict(counts).items():
            totals[name] += n
    return {
        "sessions": {"total": len(mine), "byStatus": by_status},
        "messages": totals,
    }
