"""Proxy administration: list, add, remove. Proxies are addressed by id, never by URL."""

from __future__ import annotations

from aiohttp import web

from api import serialize
from api.body import json_object
from api.context import POOL, SETTINGS

routes = web.RouteTableDef()


@routes.get("/api/v1/proxies")
async def list_proxies(request: web.Request) -> web.Response:
    cap = request.app[SETTINGS].max_sessions_per_proxy
    records = await request.app[POOL].all_proxies()
    return web.json_response({"proxies": [serialize.proxy(p, cap) for p in records]})


@routes.post("/api/v1/proxies")
async def add_proxy(request: web.Request) -> web.Response:
    body = await json_object(request, frozenset({"url"}))
    record = await request.app[POOL].add_from_input(body.get("url"))
    cap = request.app[SETTINGS].max_sessions_per_proxy
    return web.json_response(serialize.proxy(record, cap), status=201)


@routes.delete("/api/v1/proxies/{id}")
async def remove_proxy(request: web.Request) -> web.Response:
    pool = request.app[POOL]
    record = await pool.get(request.match_info["id"])
    await pool.remove(record.url)
    return web.json_response({"deleted": request.match_info["id"]})
