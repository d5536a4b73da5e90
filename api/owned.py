"""Sessions as a caller may see them: a client key only its own; ``owner`` for admins.

``owner`` is the id of the client key a session was provisioned with (null: provisioned by
an admin or read before keys existed); only admin-scoped callers see it.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from api import serialize
from api.auth import principal
from api.context import OWNERS, SERVICE
from core.models import SessionRecord


def _admin(request: web.Request) -> bool:
    caller = principal(request)
    return caller is not None and caller.scope == "admin"


async def session_json(request: web.Request, record: SessionRecord) -> dict[str, Any]:
    return (await sessions_json(request, [record]))[0]


async def sessions_json(
    request: web.Request, records: list[SessionRecord]
) -> list[dict[str, Any]]:
    now = request.app[SERVICE].clock.now_ms()
    views = [serialize.session(r, now) for r in records]
    if _admin(request):
        owners = await request.app[OWNERS].of_many([r.id for r in records])
        for view in views:
            view["owner"] = owners.get(view["id"])
    return views


def client_key(request: web.Request) -> str | None:
    """The key id of a client caller; None for admin and read keys (they see every session)."""
    caller = principal(request)
    return caller.key_id if caller is not None and caller.is_client else None
