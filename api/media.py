"""``GET /media/<id>?exp=&sig=``: a media file, to whoever holds a signed link to it.

No API key: the link's signature is the credential (core/media/links.py), so a worker and the
operator's systems fetch with nothing else. A bad or missing signature is 403, a link past
its ``exp`` 410, an id no record names (never was, or past its retention) 404; nothing about
the file is told before the signature is good. The file is streamed from ``MEDIA_DIR``,
never read whole into memory; any replica serves it.
"""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web

from api.describe import operation
from api.errors import ERROR, error_response
from api.schema import answer
from core.media import Media
from core.media.links import MEDIA_ID, LinkProblem

routes = web.RouteTableDef()
MEDIA = web.AppKey("media", Media)

LINK = (
    {"name": "exp", "in": "query", "required": True, "schema": {"type": "integer"}},
    {"name": "sig", "in": "query", "required": True, "schema": {"type": "string"}},
)


@routes.get("/media/{id}")
@operation(
    "One media file, by its signed link",
    {200: {"description": "the file's bytes, with its type"}},
    parameters=LINK,
    public=True,
    responses={
        400: answer("an id that cannot be one (a control character)", ERROR),
        403: answer("no valid signature", ERROR),
        404: answer("no such media (or past its retention)", ERROR),
        410: answer("the link's time is over", ERROR),
    },
)
async def get_media(request: web.Request) -> web.StreamResponse:
    media = request.app[MEDIA]
    media_id = request.match_info["id"]
    exp, sig = request.query.get("exp", ""), request.query.get("sig", "")
    now_s = media.clock.now_ms() // 1000
    problem = (
        LinkProblem.BAD_SIGNATURE
        if not MEDIA_ID.fullmatch(media_id)
        else media.links.check(media_id, exp, sig, now_s)
    )
    if problem is LinkProblem.BAD_SIGNATURE:
        return error_response(403, "forbidden", "this link's signature is not valid")
    if problem is LinkProblem.EXPIRED:
        return error_response(410, "link_expired", "this link's time is over; ask for a new one")
    record = await media.registry.get(media_id)
    if record is None or not media.store.has(record.sha256):
        return error_response(404, "not_found", "no such media")
    headers = {"Content-Type": record.mime, "Cache-Control": "private, max-age=0"}
    if record.filename:
        headers["Content-Disposition"] = _attachment(record.filename)
    return web.FileResponse(media.store.path_of(record.sha256), headers=headers)


def _attachment(filename: str) -> str:
    """RFC 6266 with the name percent-encoded: a name is the sender's text, never a header."""
    return f"attachment; filename*=UTF-8''{quote(filename, safe='')}"
