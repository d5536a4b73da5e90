"""Request bodies: JSON objects or a clear 400, never a stack trace.

Bodies of the REST API are small; a cap read from the stream (not aiohttp's 1 MB
``client_max_size``) keeps a hostile one cheap, and a document nested deeper than any
real request is refused instead of exhausting the parser's stack (RecursionError).
Every string in it, field names included, passes core/text.py's one rule.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from core import text
from core.errors import InvalidInput

MAX_BODY = 64 * 1024


def parse(raw: bytes) -> Any:
    """``json.loads`` with its failures (bad syntax, bad UTF-8, too deep) as ``InvalidInput``."""
    try:
        return json.loads(raw)
    except RecursionError:
        raise InvalidInput("the body is nested too deeply") from None
    except ValueError:  # JSONDecodeError and UnicodeDecodeError alike
        raise InvalidInput("the body is not valid JSON") from None


async def read_capped(request: web.Request, limit: int = MAX_BODY) -> bytes:
    raw = await request.content.read(limit + 1)
    if len(raw) > limit:
        raise InvalidInput(f"the body is larger than {limit // 1024} KiB")
    return raw


async def json_object(request: web.Request, allowed: frozenset[str]) -> dict[str, Any]:
    raw = await read_capped(request)
    if not raw.strip():
        return {}
    body = parse(raw)
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object")
    if not text.plain_json(raw):
        text.check_tree(body)  # first: the message below names fields
    unknown = set(body) - allowed
    if unknown:
        names = ", ".join(sorted(name[:40] for name in unknown)[:5])
        raise InvalidInput(f"unknown field(s): {names}")
    return body


@web.middleware
async def path_params_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Ids in the path obey the same rule as bodies: a lone surrogate in ``{id}`` could not
    even be sent to Redis as a key (a 500), a NUL would reach the log."""
    for name, value in request.match_info.items():
        text.check(value, name)
    response: web.StreamResponse = await handler(request)
    return response
