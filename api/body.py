"""Request bodies: JSON objects or a clear 400, never a stack trace.

Bodies of the REST API are small; a cap read from the stream (not aiohttp's 1 MB
``client_max_size``) keeps a hostile one cheap, and a document nested deeper than any
real request is refused instead of exhausting the parser's stack (RecursionError).
Every string in it, field names included, passes core/text.py's one rule.

Each body is declared once (``Body``), beside its handler: the same declaration names the
fields the handler takes (any other is refused), checks those the API checks itself, and is
the ``requestBody`` of the OpenAPI document.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from api.schema import JSON, conforms
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


async def read_capped(request: web.Request, limit: int = MAX_BODY, what: str = "body") -> bytes:
    """The whole body, or InvalidInput once it passes ``limit`` (nothing more is read).

    Read until the end: one ``read(n)`` answers only what has arrived so far, and a body
    that came in several TCP segments would be cut short (a signature then fails on it,
    a JSON body is "not valid JSON")."""
    parts: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = await request.content.read(limit + 1 - size)
        if not chunk:
            break
        parts.append(chunk)
        size += len(chunk)
    if size > limit:
        raise InvalidInput(f"the {what} is larger than {limit // 1024} KiB")
    return b"".join(parts)


async def json_object(request: web.Request, allowed: frozenset[str]) -> dict[str, Any]:
    return object_of(await read_capped(request), allowed)


def object_of(raw: bytes, allowed: frozenset[str]) -> dict[str, Any]:
    """A body already read: a JSON object of ``allowed`` fields, every string checked."""
    if not raw.strip():
        return {}
    body = parse(raw)
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object")
    if not text.plain_json(raw):
        text.check_tree(body)  # first: the message below names fields
    return only(body, allowed)


def only(body: dict[str, Any], allowed: frozenset[str]) -> dict[str, Any]:
    """``body`` if it has no field but ``allowed``; else a 400 naming them."""
    unknown = set(body) - allowed
    if unknown:
        names = ", ".join(sorted(name[:40] for name in unknown)[:5])
        raise InvalidInput(f"unknown field(s): {names}")
    return body


@dataclass(frozen=True)
class Field:
    """One field of a body: its JSON schema, and who checks its value.

    With ``refuse``, the API checks the value against ``schema`` (a required field also for
    being there) and answers 400 with that message. Without, the value goes to core as
    given, which checks it with its own message and in its own order (a restore in progress
    answers 409 before a bad phone is looked at): ``schema`` then describes what core takes.
    """

    schema: dict[str, Any]
    required: bool = False
    refuse: str | None = None


@dataclass(frozen=True, eq=False)
class Body:
    """A JSON object body: ``read`` for a handler, ``request_body`` for the document.

    ``required``: the body itself must be sent. ``closed``: unknown fields are refused (every
    REST body; a worker's signed body may carry more than this one reads). ``extra``: more
    schema keywords for the document (``minProperties``).
    """

    fields: Mapping[str, Field]
    required: bool = False
    closed: bool = True
    extra: Mapping[str, Any] = field(default_factory=dict)

    def schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {
            "type": "object",
            "properties": {name: f.schema for name, f in self.fields.items()},
        }
        if self.closed:
            schema["additionalProperties"] = False
        required = [name for name, f in self.fields.items() if f.required]
        if required:
            schema["required"] = required
        return {**schema, **self.extra}

    def request_body(self) -> dict[str, Any]:
        return {"required": self.required, "content": {JSON: {"schema": self.schema()}}}

    def check(self, body: dict[str, Any]) -> dict[str, Any]:
        """``body`` if the fields the API checks fit their schema (in declaration order)."""
        for name, f in self.fields.items():
            if f.refuse is None:
                continue
            if name in body:
                if not conforms(f.schema, body[name]):
                    raise InvalidInput(f.refuse)
            elif f.required:
                raise InvalidInput(f.refuse)
        return body

    async def read(self, request: web.Request) -> dict[str, Any]:
        """The request's body, checked; an empty body is ``{}``."""
        return self.check(await json_object(request, frozenset(self.fields)))


@web.middleware
async def path_params_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Ids in the path obey the same rule as bodies: a lone surrogate in ``{id}`` could not
    even be sent to Redis as a key (a 500), a NUL would reach the log."""
    for name, value in request.match_info.items():
        text.check(value, name)
    response: web.StreamResponse = await handler(request)
    return response
