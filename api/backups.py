"""The backup endpoints: list, create, restore. Parse, call core, serialize.

A full disk answers 507 Insufficient Storage with the code ``disk_full``: it is the one
backup failure an operator can fix at once, so it must not hide behind a generic 500.
"""

from __future__ import annotations

from aiohttp import web

from api.body import json_object
from api.errors import error_response
from core.backups import RESTORE_WAIT_S, BackupService, DiskFull
from core.errors import InvalidInput

BACKUPS = web.AppKey("backups", BackupService)
MAX_WAIT_S = 300

routes = web.RouteTableDef()


@routes.get("/api/v1/backups")
async def list_backups(request: web.Request) -> web.Response:
    found = await request.app[BACKUPS].list()
    return web.json_response({"backups": [b.as_dict() for b in found]})


@routes.post("/api/v1/backups/create")
async def create_backup(request: web.Request) -> web.Response:
    await json_object(request, frozenset())
    try:
        result = await request.app[BACKUPS].create()
    except DiskFull as exc:
        return error_response(507, exc.code, exc.message)
    return web.json_response(result.as_dict(), status=201)


@routes.post("/api/v1/backups/restore/{id}")
async def restore_backup(request: web.Request) -> web.Response:
    body = await json_object(request, frozenset({"waitSeconds"}))
    wait = body.get("waitSeconds", RESTORE_WAIT_S)
    if isinstance(wait, bool) or not isinstance(wait, int | float) or not 0 <= wait <= MAX_WAIT_S:
        raise InvalidInput(f"waitSeconds must be a number from 0 to {MAX_WAIT_S}")
    try:
        report = await request.app[BACKUPS].restore(request.match_info["id"], wait_s=float(wait))
    except DiskFull as exc:
        return error_response(507, exc.code, exc.message)
    return web.json_response(report.as_dict())
