"""``X-API-Key`` (or ``Authorization: Bearer``) on every ``/api/`` route but the OpenAPI doc."""

from __future__ import annotations

import hmac

from aiohttp import web
from aiohttp.typedefs import Handler

from api.context import SETTINGS
from api.errors import Unauthorized

PUBLIC = frozenset({"/api/openapi.json"})


@web.middleware
async def api_key_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith("/api/") and request.path not in PUBLIC:
        given = request.headers.get("X-API-Key", "")
        bearer = request.headers.get("Authorization", "")
        if not given and bearer.startswith("Bearer "):
            given = bearer.removeprefix("Bearer ").strip()
        expected = request.app[SETTINGS].api_key
        if not given or not hmac.compare_digest(given.encode(), expected.encode()):
            raise Unauthorized("missing or wrong API key (X-API-Key header)")
    response: web.StreamResponse = await handler(request)
    return response
