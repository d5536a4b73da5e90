"""The key endpoints (admin only): create, list, revoke, rotate. A key's full value is in
the answer of its creation or rotation and nowhere else, ever."""

from __future__ import annotations

from aiohttp import web

from api.body import Body, Field
from api.context import KEYS
from api.describe import operation
from api.schema import answer, array, obj
from core.api_keys import MAX_RATE, SCOPES

routes = web.RouteTableDef()

KEY = obj(
    {
        "id": {"type": "string"},
        "name": {"type": "string", "description": "the actor of its audit entries"},
        "scope": {"type": "string", "enum": list(SCOPES)},
        "created": {"type": "integer", "description": "epoch ms"},
        "expiresAt": {"type": "integer", "nullable": True, "description": "epoch ms"},
        "ratePerS": {"type": "integer", "description": "its own rate, when given"},
    }
)
SHOWN_ONCE = {
    "allOf": [
        KEY,
        obj({"key": {"type": "string", "description": "the key: shown this once (wfk_...)"}}),
    ]
}
CREATE = Body(
    {
        "name": Field({"type": "string", "example": "client-a"}, required=True),
        "scope": Field({"type": "string", "enum": list(SCOPES)}, required=True),
        "expiresAt": Field({"type": "integer", "description": "epoch ms, in the future"}),
        "ratePerS": Field({"type": "integer", "minimum": 1, "maximum": MAX_RATE}),
    },
    required=True,
)


@routes.post("/api/v1/keys")
@operation(
    "Issue a key (admin, read or client scope); its value is shown this once",
    {201: answer("created", SHOWN_ONCE)},
    409,
    body=CREATE,
    audit="key_create",
)
async def create_key(request: web.Request) -> web.Response:
    body = await CREATE.read(request)
    record, key = await request.app[KEYS].create(
        body.get("name"), body.get("scope"), body.get("expiresAt"), body.get("ratePerS")
    )
    return web.json_response({**record.view(), "key": key}, status=201)


@routes.get("/api/v1/keys")
@operation(
    "The issued keys, without their values", {200: answer("keys", obj({"keys": array(KEY)}))}
)
async def list_keys(request: web.Request) -> web.Response:
    return web.json_response({"keys": [k.view() for k in await request.app[KEYS].list()]})


@routes.delete("/api/v1/keys/{id}")
@operation(
    "Revoke a key: refused from the next request on",
    {204: {"description": "revoked"}},
    404,
    audit="key_revoke",
)
async def revoke_key(request: web.Request) -> web.Response:
    await request.app[KEYS].revoke(request.match_info["id"])
    return web.Response(status=204)


@routes.post("/api/v1/keys/{id}/rotate")
@operation(
    "A new value for the key (same id, name and sessions); the old value keeps working for "
    "KEY_ROTATE_GRACE_S",
    {201: answer("rotated", SHOWN_ONCE)},
    404,
    audit="key_rotate",
)
async def rotate_key(request: web.Request) -> web.Response:
    record, key = await request.app[KEYS].rotate(request.match_info["id"])
    return web.json_response({**record.view(), "key": key}, status=201)
