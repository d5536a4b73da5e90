"""Proxy administration: list, add, remove. Proxies are addressed by id, never by URL."""

from __future__ import annotations

from aiohttp import web

from api import serialize
from api.body import Body, Field
from api.context import POOL, SETTINGS
from api.describe import operation
from api.schema import answer, array, obj

routes = web.RouteTableDef()

# Examples point at loopback: a fuzzer sends the schema's examples, and a provision makes a
# worker connect to the proxy host it names.
PROXY_URL = {
    "type": "string",
    "description": "socks5h:// only; its host must be admitted by PROXY_ALLOW_NETWORKS / "
    "PROXY_DENY_NETWORKS",
    "example": "socks5h://user:pass@127.0.0.1:1080",
}
ADD = Body({"url": Field(PROXY_URL, required=True)}, required=True)


@routes.get("/api/v1/proxies")
@operation(
    "The proxy pool (passwords masked)",
    {200: answer("proxies", obj({"proxies": array(serialize.PROXY)}))},
)
async def list_proxies(request: web.Request) -> web.Response:
    cap = request.app[SETTINGS].max_sessions_per_proxy
    records = await request.app[POOL].all_proxies()
    return web.json_response({"proxies": [serialize.proxy(p, cap) for p in records]})


@routes.post("/api/v1/proxies")
@operation(
    "Add a proxy", {201: answer("added", serialize.PROXY)}, 409, body=ADD, audit="proxy_add"
)
async def add_proxy(request: web.Request) -> web.Response:
    body = await ADD.read(request)
    record = await request.app[POOL].add_from_input(body.get("url"))
    cap = request.app[SETTINGS].max_sessions_per_proxy
    return web.json_response(serialize.proxy(record, cap), status=201)


@routes.delete("/api/v1/proxies/{id}")
@operation(
    "Remove an unused proxy",
    {200: answer("removed", {"type": "object"})},
    404,
    409,
    audit="proxy_remove",
)
async def remove_proxy(request: web.Request) -> web.Response:
    pool = request.app[POOL]
    record = await pool.get(request.match_info["id"])
    await pool.remove(record.url)
    return web.json_response({"deleted": request.match_info["id"]})
