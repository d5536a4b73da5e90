"""``X-API-Key`` (or ``Authorization: Bearer``) on every ``/api/`` route but the OpenAPI doc.

Runs before any handler, so an unauthenticated request is refused before its body is read.
"""

from __future__ import annotations

import hmac

from aiohttp import web
from aiohttp.typedefs import Handler

from api.context import SETTINGS
from api.errors import Unauthorized

PUBLIC = frozenset({"/api/openapi.json"})


def _raw(value: str) -> bytes:
    """The header's bytes as sent: aiohttp decodes non-UTF-8 bytes to lone surrogates, which
    a plain ``encode()`` refuses (UnicodeEncodeError: a 500 for any stray byte)."""
    return value.encode("utf-8", "surrogateescape")


@web.middleware
async def api_key_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith("/api/") and request.path not in PUBLIC:
        given = request.headers.get("X-API-Key", "")
        bearer = request.headers.get("Authorization", "")
        if not given and bearer.startswith("Bearer "):
            given = bearer.removeprefix("Bearer ").strip()
        expected = request.app[SETTINGS].api_key
        if not given or not hmac.compare_digest(_raw(given), expected.encode()):
            raise Unauthorized("missing or wrong API key (X-API-Key header)")
    response: web.StreamResponse = await handler(request)
    return response
