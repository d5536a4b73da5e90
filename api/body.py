"""Request bodies: JSON objects or a clear 400, never a stack trace."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from core.errors import InvalidInput


async def json_object(request: web.Request, allowed: frozenset[str]) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise InvalidInput("the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object")
    unknown = set(body) - allowed
    if unknown:
        raise InvalidInput(f"unknown field(s): {', '.join(sorted(unknown))}")
    return body
