"""``PUT /worker/media/<sha256>``: a worker hands ``serve`` the file of an incoming message.

A file may be 100 MiB, too large to hold and sign whole before sending, so the worker signs a
small descriptor instead (session, hash, size, kind: ``core.signing.media_descriptor``) with
its session's own secret, in the headers, exactly as ``/webhook`` signs a body. ``serve``
checks that signature and the kind's size limit before it reads a byte, then streams the body
into ``MEDIA_DIR`` while hashing and counting it, and keeps it only if both match what was
signed: a bad signature is 401, a body over the kind's limit 413, bytes that are not the
signed ones 400; none of them leaves anything stored.

Idempotent: a file ``serve`` already has is answered at once (200), before its bytes are
read. A worker sends ``Expect: 100-continue``, so the checks and that answer come before it
sends the body at all (the expect handler below; aiohttp runs it ahead of the middlewares,
so it answers refusals itself).
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from api.context import SETTINGS
from api.describe import header, operation
from api.errors import ERROR, error_response
from api.media import MEDIA
from api.promise import NO_PROMISE
from api.schema import answer
from api.webhook import SESSION_ID, SIGNED, signature_problem
from core import signing
from core.media.registry import KINDS
from core.media.store import SHA256, MediaTooLarge

log = logging.getLogger("wafleet.media")
routes = web.RouteTableDef()

SESSION_HEADER = "X-Wafleet-Session"
SIZE_HEADER = "X-Wafleet-Media-Size"
KIND_HEADER = "X-Wafleet-Media-Kind"
CHUNK = 256 * 1024
UPLOADED = {"type": "object", "properties": {"stored": {"type": "boolean"}}}


async def _refusal(request: web.Request) -> web.Response | None:
    """The answer that ends the upload before its body (a refusal, or "already here"), or
    None: read the body."""
    sha256 = request.match_info["sha256"]
    session_id = request.headers.get(SESSION_HEADER, "")
    kind = request.headers.get(KIND_HEADER, "")
    size_text = request.headers.get(SIZE_HEADER, "")
    if not SHA256.fullmatch(sha256):
        return error_response(400, "invalid_input", "the path must name a sha256 (hex)")
    if not SESSION_ID.fullmatch(session_id):
        return error_response(400, "invalid_input", f"{SESSION_HEADER} must be worker_<n>")
    if kind not in KINDS:
        return error_response(400, "invalid_input", f"{KIND_HEADER}: one of {', '.join(KINDS)}")
    if not (size_text.isascii() and size_text.isdigit() and 0 < len(size_text) <= 15):
        return error_response(400, "invalid_input", f"{SIZE_HEADER} must be a size in bytes")
    size = int(size_text)
    problem = signature_problem(
        request, session_id, signing.media_descriptor(session_id, sha256, size, kind)
    )
    if problem is not None:
        log.warning("media upload for %s refused: %s", session_id, problem)
        return error_response(401, "unauthorized", f"media upload refused: {problem}")
    limit = request.app[SETTINGS].media_max_bytes(kind)
    if size > limit:
        return error_response(
            413, "media_too_large", f"a {kind} may be at most {limit} bytes, this is {size}"
        )
    if request.app[MEDIA].store.has(sha256):
        return web.json_response({"stored": True})
    return None


async def _expect(request: web.Request) -> web.StreamResponse | None:
    """``Expect: 100-continue``: answer now, or let the body come."""
    early = await _refusal(request)
    if early is not None:
        return early
    if request.headers.get("Expect", "").lower() == "100-continue":
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0
    return None


@routes.put("/worker/media/{sha256}", expect_handler=_expect)
@operation(
    "A worker uploads the file of an incoming message (the descriptor is signed)",
    {200: answer("already stored", UPLOADED), 201: answer("stored", UPLOADED)},
    400,
    401,
    parameters=(
        *SIGNED,
        header(SESSION_HEADER),
        header(SIZE_HEADER),
        header(KIND_HEADER),
    ),
    public=True,
    responses={413: answer("over the kind's MEDIA_MAX_BYTES_*", ERROR)},
    description="The signature covers '<session>\\n<sha256>\\n<size>\\n<kind>' (HMAC-SHA256 "
    "with the session's secret, as /webhook); the body must be exactly those bytes",
)
async def upload(request: web.Request) -> web.Response:
    request[NO_PROMISE] = True  # a file on disk, nothing in Redis: no replica to wait for
    early = await _refusal(request)
    if early is not None:
        return early
    sha256 = request.match_info["sha256"]
    size = int(request.headers[SIZE_HEADER])
    writer = request.app[MEDIA].store.writer(size)
    try:
        async for chunk in request.content.iter_chunked(CHUNK):
            writer.write(chunk)
    except MediaTooLarge:
        return error_response(400, "media_mismatch", "the body is larger than the signed size")
    except BaseException:
        writer.discard()
        raise
    if writer.size != size or writer.sha256 != sha256:
        writer.discard()
        return error_response(
            400, "media_mismatch", "the body is not the signed file (its size or sha256 differs)"
        )
    await asyncio.to_thread(writer.commit)  # fsync: not on the loop
    log.info("stored an incoming %s of %d bytes", request.headers[KIND_HEADER], size)
    return web.json_response({"stored": True}, status=201)
