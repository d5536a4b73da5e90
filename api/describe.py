"""Each operation of the API declared beside its handler, for api/openapi.py to assemble.

A handler without a declaration cannot be served undocumented: assembling the document
fails (``GET /api/openapi.json`` is built when the app is). Adding an operation is a
decorator under the route's::

    @routes.get("/api/v1/things/{id}")
    @operation("One thing", {200: answer("the thing", THING)}, 404)
    async def get_thing(request: web.Request) -> web.Response: ...

What every ``/api/`` route can answer is added here, not repeated beside each handler:
401 (the key is checked first), 403 and 429 (a key's scope and rate), 503 (Redis down), and
400 for a route that takes a path id, a query parameter or a body (each passes
core/text.py's rule; bodies must be objects).

``scopes`` says which keys may call the route (api/auth.py enforces exactly this, and the
document shows it as ``x-scopes``): admin only unless the route says more, so a new route is
closed to client and read keys until someone decides otherwise. A ``read`` key passes only
on a GET. ``audit`` names the action the route is in the audit trail as (api/audit_trail.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from api.body import Body
from api.errors import refusals
from api.schema import Component

_ATTRIBUTE = "__openapi_operation__"
ADMIN = ("admin",)
# A session's own routes: a client key reaches its own sessions there, a read key GETs.
SESSION = ("admin", "read", "client")
_PATH_PARAMETER = re.compile(r"\{([^}:]+)")

H = TypeVar("H", bound=Callable[..., Any])


@dataclass(frozen=True, eq=False)
class Operation:
    """One method of one path. ``ok``: the answers of success by status; ``refuses``: the
    error statuses this route has besides those every route has; ``parameters``: the query
    and header parameters (path ids come from the route's path); ``public``: no API key
    (and none of the API's common answers); ``responses``: answers written out in full;
    ``mentions``: components the text names that no schema refers to."""

    summary: str
    ok: Mapping[int, dict[str, Any]]
    refuses: tuple[int, ...] = ()
    parameters: Sequence[dict[str, Any]] = ()
    body: Body | None = None
    public: bool = False
    description: str | None = None
    responses: Mapping[int, dict[str, Any]] = field(default_factory=dict)
    mentions: Sequence[Component] = ()
    scopes: tuple[str, ...] = ADMIN
    audit: str | None = None

    def allowed(self, method: str) -> tuple[str, ...]:
        """The scopes that may call this operation with ``method`` (read: GETs only)."""
        return tuple(s for s in self.scopes if s != "read" or method in ("GET", "HEAD"))

    def document(self, path: str, method: str = "GET") -> dict[str, Any]:
        """The OpenAPI operation object at ``path`` (aiohttp's canonical ``/x/{id}`` form)."""
        parameters = [*path_parameters(path), *self.parameters]
        statuses = set(self.refuses)
        if not self.public:
            statuses |= {401, 403, 429, 503}
            if parameters or self.body is not None:
                statuses.add(400)
        found: dict[str, Any] = {"summary": self.summary}
        if self.description is not None:
            found["description"] = self.description
        if self.public:
            found["security"] = []
        else:
            found["x-scopes"] = list(self.allowed(method))
        if parameters:
            found["parameters"] = parameters
        if self.body is not None:
            found["requestBody"] = self.body.request_body()
        found["responses"] = {
            **{str(status): ok for status, ok in self.ok.items()},
            **refusals(*sorted(statuses)),
            **{str(status): other for status, other in self.responses.items()},
        }
        return found


def operation(
    summary: str,
    ok: Mapping[int, dict[str, Any]],
    *refuses: int,
    parameters: Sequence[dict[str, Any]] = (),
    body: Body | None = None,
    public: bool = False,
    description: str | None = None,
    responses: Mapping[int, dict[str, Any]] | None = None,
    mentions: Sequence[Component] = (),
    scopes: tuple[str, ...] = ADMIN,
    audit: str | None = None,
) -> Callable[[H], H]:
    """Declare the operation of the handler below; the handler itself is left as it is."""
    declared = Operation(
        summary,
        ok,
        refuses,
        parameters,
        body,
        public,
        description,
        responses or {},
        mentions,
        scopes,
        audit,
    )

    def attach(handler: H) -> H:
        setattr(handler, _ATTRIBUTE, declared)
        return handler

    return attach


def declared(handler: object) -> Operation | None:
    found = getattr(handler, _ATTRIBUTE, None)
    return found if isinstance(found, Operation) else None


def path_parameters(path: str) -> list[dict[str, Any]]:
    return [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _PATH_PARAMETER.findall(path)
    ]


def query(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema}


def header(name: str) -> dict[str, Any]:
    return {"name": name, "in": "header", "required": True, "schema": {"type": "string"}}
