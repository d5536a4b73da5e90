"""One middleware turns domain errors into the one JSON error shape
(``{"error": {"code", "message"}}``); handlers never try."""

from __future__ import annotations

import logging
from http import HTTPStatus

from aiohttp import web
from aiohttp.typedefs import Handler

from api.schema import Component, answer
from core.errors import (
    Conflict,
    InvalidInput,
    MediaRefused,
    MediaTooLarge,
    NoCapacity,
    NotFound,
    WafleetError,
)
from core.media.incoming import MediaMissing
from core.promise import NotReplicated
from core.redis_client import switching

log = logging.getLogger("wafleet.api")

STATUS_OF: tuple[tuple[type[WafleetError], int], ...] = (
    (InvalidInput, 400),
    (NotFound, 404),
    (Conflict, 409),
    (MediaTooLarge, 413),
    (MediaRefused, 415),
    (NoCapacity, 503),
    (NotReplicated, 503),  # code redis_unavailable: the write is not on a replica yet
    (MediaMissing, 503),  # a worker's event before its file: it uploads again and retries
)


class Unauthorized(WafleetError):
    code = "unauthorized"


class Forbidden(WafleetError):
    """A valid key outside its scope."""

    code = "forbidden"


class RateLimited(WafleetError):
    """A key over its rate; ``retry_after``: whole seconds until a request may pass."""

    code = "rate_limited"

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many requests for this key: retry in {retry_after} s")
        self.retry_after = retry_after


ERROR = Component(
    "Error",
    {
        "type": "object",
        "properties": {
            "error": {
                "type": "object",
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
            }
        },
    },
)
# What each refusal means across the API, for the document (api/describe.py).
MEANING = {
    400: "bad input (invalid_input), or a request that could not be read",
    401: "missing or wrong API key",
    403: "forbidden: a valid key outside its scope (x-scopes)",
    404: "not found",
    409: "conflict: busy (a restore runs), phone_limit, qr_unavailable, in use",
    413: "media_too_large: the file is over its kind's limit (MEDIA_MAX_BYTES_*)",
    415: "media_type_mismatch (the bytes are not the kind) or media_unreadable (an image "
    "that does not decode within MEDIA_MAX_IMAGE_PIXELS)",
    429: "rate_limited: over the key's rate (KEY_RATE_PER_S); Retry-After says when to retry",
    500: "restore_failed: the restore failed after the swap and the previous fleet was put back",
    503: "redis_unavailable: the state store is unreachable or changing primary (any "
    "route), or a write did not reach REDIS_WAIT_REPLICAS replicas in time (retry), or "
    "no_proxy_capacity: no proxy has a free slot, or media_missing: a worker's MESSAGE_IN "
    "before its file was uploaded (the worker uploads it and retries)",
    507: "disk_full: no space left for the archive",
}


def refusals(*statuses: int) -> dict[str, dict[str, object]]:
    """The documented error answers for these statuses, each in the error shape."""
    return {str(status): answer(MEANING[status], ERROR) for status in statuses}


def error_response(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


def protocol_error(status: int) -> web.Response:
    """What aiohttp's parser answers for a request it could not read (a 20,000-char path, a
    NUL in a header, a broken request line): the usual JSON shape instead of ``text/plain``
    that echoes the offending header, since that header may carry a key."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Bad Request"
    code = phrase.lower().replace(" ", "_").replace("-", "_")
    return error_response(status, code, f"the request could not be read: {phrase.lower()}")


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except Unauthorized as exc:
        return error_response(401, exc.code, exc.message)
    except Forbidden as exc:
        return error_response(403, exc.code, exc.message)
    except RateLimited as exc:
        response = error_response(429, exc.code, exc.message)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    except WafleetError as exc:
        status = next((s for kind, s in STATUS_OF if isinstance(exc, kind)), 500)
        return error_response(status, exc.code, exc.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = error_response(exc.status, exc.reason.lower().replace(" ", "_"), exc.reason)
        if "Allow" in exc.headers:  # a 405 says which methods the resource has
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except Exception as exc:
        if switching(exc):
            # Still unreachable after the client's own reconnects and retries, or changing
            # primary (core/redis_client.py): down for now, not broken.
            log.warning(
                "Redis unavailable on %s %s (%s)", request.method, request.path, _reason(exc)
            )
            return error_response(
                503, "redis_unavailable", "the state store is unreachable: retry"
            )
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal", "internal error: see the server log")


def _reason(exc: BaseException) -> str:
    """The error's class and Redis's reply code (``MASTERDOWN``), no more: a reply's text
    may quote a key, and keys hold phone numbers."""
    code = getattr(exc, "status_code", None)
    return f"{type(exc).__name__} {code}" if code else type(exc).__name__
