"""Issued keys for the tests of scopes, ownership and the audit trail: made through the API,
used through the API, as a client of wafleet would."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from api.app import create_app
from api.describe import declared
from tests.fleet import Fleet

OTHER_PHONE = "972501234568"


async def issue(fleet: Fleet, name: str, scope: str, **extra: Any) -> dict[str, Any]:
    status, body = await fleet.call(
        "POST", "/api/v1/keys", {"name": name, "scope": scope, **extra}
    )
    assert status == 201, body
    found: dict[str, Any] = body
    return found


async def call_as(
    fleet: Fleet, key: str, method: str, path: str, body: Any = None
) -> tuple[int, Any]:
    return await fleet.call(method, path, body, headers={"X-API-Key": key})


async def provision_as(fleet: Fleet, key: str, phone: str) -> str:
    status, body = await call_as(fleet, key, "POST", "/api/sessions/provision", {"phone": phone})
    assert status == 201, body
    return str(body["id"])


def served_routes() -> list[tuple[str, str, tuple[str, ...]]]:
    """``(method, path, scopes allowed)`` of every key-checked route the app serves, read from
    its router: a route added later is in every test that walks these."""
    app: web.Application = create_app(None, None, None, None, None)  # type: ignore[arg-type]
    found = []
    for route in app.router.routes():
        op = declared(route.handler)
        if route.method == "HEAD" or route.resource is None or op is None or op.public:
            continue
        found.append((route.method, route.resource.canonical, op.allowed(route.method)))
    return found


def fill(path: str, session_id: str) -> str:
    """The route's path with ``session_id`` for ``{id}`` and a made-up id for the rest."""
    return path.replace("{id}", session_id).replace("{mid}", "msg_0")
