"""Who is calling, and may they: every ``/api/`` route but the OpenAPI document.

The key comes in ``X-API-Key`` or ``Authorization: Bearer``. ``API_KEY`` is the admin; any
other key must be a live issued one (core/api_keys.py). Then, before any input is read:
the route's scopes (declared beside its handler, api/describe.py) — a valid key outside
them is 403 ``forbidden``; the key's rate — over it 429 with ``Retry-After``; and for a
client key on a route with a session id, the session must be its own — any other is 404,
exactly as a session that does not exist, so a client cannot probe for others' ids.

``/webhook`` and the worker command channel are not under ``/api/`` and never pay for this.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Handler

from api.context import KEYS, OWNERS, RATE, SETTINGS
from api.describe import declared
from api.errors import Forbidden, RateLimited, Unauthorized
from core.errors import NotFound

PUBLIC = frozenset({"/api/openapi.json"})


@dataclass(frozen=True)
class Principal:
    """The caller: ``name`` is what the audit trail shows (``admin`` for ``API_KEY``)."""

    name: str
    scope: str
    key_id: str | None = None
    rate_per_s: int | None = None

    @property
    def is_client(self) -> bool:
        return self.scope == "client"


ADMIN = Principal("admin", "admin")
PRINCIPAL = web.RequestKey("principal", Principal)


def _raw(value: str) -> bytes:
    """The header's bytes as sent: aiohttp decodes non-UTF-8 bytes to lone surrogates, which
    a plain ``encode()`` refuses (UnicodeEncodeError: a 500 for any stray byte)."""
    return value.encode("utf-8", "surrogateescape")


def presented(request: web.Request) -> str:
    given = request.headers.get("X-API-Key", "")
    bearer = request.headers.get("Authorization", "")
    if not given and bearer.startswith("Bearer "):
        given = bearer.removeprefix("Bearer ").strip()
    return given


async def identify(request: web.Request, given: str) -> Principal | None:
    """The principal of key ``given``, or None when it is no live key."""
    if not given:
        return None
    if hmac.compare_digest(_raw(given), request.app[SETTINGS].api_key.encode()):
        return ADMIN
    if not given.isascii():
        return None
    found = await request.app[KEYS].verify(given)
    if found is None:
        return None
    return Principal(found.name, found.scope, found.id, found.rate_per_s)


def principal(request: web.Request) -> Principal | None:
    return request.get(PRINCIPAL)


@web.middleware
async def api_key_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith("/api/") and request.path not in PUBLIC:
        caller = await identify(request, presented(request))
        if caller is None:
            raise Unauthorized("missing or wrong API key (X-API-Key header)")
        request[PRINCIPAL] = caller
        await _admit(request, caller)
    response: web.StreamResponse = await handler(request)
    return response


async def _admit(request: web.Request, caller: Principal) -> None:
    if caller.key_id is not None:
        wait = await request.app[RATE].take(caller.key_id, caller.rate_per_s)
        if wait:
            raise RateLimited(wait)
    route = request.match_info.route
    found = declared(route.handler)
    if found is None:  # no such route: the router's own 404 / 405 answers
        return
    if caller.scope not in found.allowed(request.method):
        raise Forbidden(f"this key's scope ({caller.scope}) may not {request.method} this route")
    session_id = request.match_info.get("id")
    owned = caller.is_client and session_id is not None
    if owned and await request.app[OWNERS].of(str(session_id)) != caller.key_id:
        raise NotFound(f"no session {session_id!r}")
