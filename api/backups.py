"""The backup endpoints: list, create, restore. Parse, call core, serialize.

A full disk answers 507 Insufficient Storage with the code ``disk_full``: it is the one
backup failure an operator can fix at once, so it must not hide behind a generic 500.
"""

from __future__ import annotations

from aiohttp import web

from api.body import Body, Field
from api.describe import operation
from api.errors import error_response
from api.schema import Component, answer, array, obj
from core.backups import RESTORE_WAIT_S, BackupService, DiskFull

BACKUPS = web.AppKey("backups", BackupService)
MAX_WAIT_S = 300

routes = web.RouteTableDef()

BACKUP = Component(
    "Backup",
    obj(
        {
            "id": {"type": "string", "example": "backup_2024-05-01"},
            "file": {"type": "string"},
            "size": {"type": "integer", "description": "bytes"},
            "created": {"type": "integer", "description": "ms since the epoch"},
            "sessions": {"type": "integer", "nullable": True},
        }
    ),
)
CREATED = {
    "allOf": [
        BACKUP,
        obj(
            {
                "mode": {"type": "string", "enum": ["rolling", "stop-all"]},
                "durationMs": {"type": "integer"},
                "maxPauseMs": {"type": "number"},
                "pausesMs": {"type": "object"},
            }
        ),
    ]
}
RESTORED = obj(
    {
        "backup": {"type": "string"},
        "sessions": array({"type": "string"}),
        "connected": array({"type": "string"}),
        "notConnected": array({"type": "string"}),
        "reassigned": array(
            {"type": "object"},
            description="sessions whose proxy is gone: moved to one from the pool (to: null "
            "when none had a slot)",
        ),
        "proxiesAdded": array({"type": "string"}),
    }
)
CREATE = Body({})
RESTORE = Body(
    {
        "waitSeconds": Field(
            {
                "type": "number",
                "minimum": 0,
                "maximum": MAX_WAIT_S,
                "description": "how long to wait for the sessions to connect before "
                f"answering (default {RESTORE_WAIT_S:g})",
            },
            refuse=f"waitSeconds must be a number from 0 to {MAX_WAIT_S}",
        )
    }
)


@routes.get("/api/v1/backups")
@operation(
    "The backups in BACKUPS_DIR, newest first",
    {200: answer("backups", obj({"backups": array(BACKUP)}))},
)
async def list_backups(request: web.Request) -> web.Response:
    found = await request.app[BACKUPS].list()
    return web.json_response({"backups": [b.as_dict() for b in found]})


@routes.post("/api/v1/backups/create")
@operation(
    "Back up every session now (BACKUP_MODE: rolling pauses or stop-all), then apply "
    "MAX_BACKUPS retention",
    {201: answer("written", CREATED)},
    409,
    507,
    body=CREATE,
    audit="backup",
)
async def create_backup(request: web.Request) -> web.Response:
    await CREATE.read(request)
    try:
        result = await request.app[BACKUPS].create()
    except DiskFull as exc:
        return error_response(507, exc.code, exc.message)
    return web.json_response(result.as_dict(), status=201)


@routes.post("/api/v1/backups/restore/{id}")
@operation(
    "Check the archive, then replace every session with the archive's, rebuild the state and "
    "start the workers; answers which sessions came back connected. A bad archive: 400 with "
    "its own code, and nothing changed",
    {200: answer("restored", RESTORED)},
    400,
    404,
    409,
    500,
    507,
    body=RESTORE,
    audit="restore",
)
async def restore_backup(request: web.Request) -> web.Response:
    body = await RESTORE.read(request)
    wait = body.get("waitSeconds", RESTORE_WAIT_S)
    try:
        report = await request.app[BACKUPS].restore(request.match_info["id"], wait_s=float(wait))
    except DiskFull as exc:
        return error_response(507, exc.code, exc.message)
    return web.json_response(report.as_dict())
