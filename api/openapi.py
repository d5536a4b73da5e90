"""``/api/openapi.json``: the document assembled from the routes the app serves.

Each handler declares its operation beside it (api/describe.py); this walks the router, so
a path or method is documented exactly when it is served, and a served route without a
declaration stops the app from being built. Named schemas (api/schema.Component) are
collected from the operations that use them.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from api.describe import declared, operation
from api.schema import Component, answer

routes = web.RouteTableDef()
DOCUMENT = web.AppKey("openapi_document", dict)


def document(router: web.UrlDispatcher) -> dict[str, Any]:
    """The OpenAPI 3 document of every route of ``router`` but the implicit ``HEAD`` ones."""
    paths: dict[str, dict[str, Any]] = {}
    components: dict[str, Component] = {}
    for route in router.routes():
        if route.method == "HEAD" or route.resource is None:
            continue
        path = route.resource.canonical
        found = declared(route.handler)
        if found is None:
            raise LookupError(
                f"{route.method} {path} has no operation declared beside its handler "
                "(api/describe.py: @operation)"
            )
        for mentioned in found.mentions:
            _collect(mentioned, components)
        paths.setdefault(path, {})[route.method.lower()] = _refer(
            found.document(path, route.method), components
        )
    schemas: dict[str, Any] = {}
    while len(schemas) < len(components):  # a component's schema may name others
        for name, component in list(components.items()):
            if name not in schemas:
                schemas[name] = _refer(component.schema, components)
    return {
        "openapi": "3.0.3",
        "info": {"title": "wafleet", "version": "1"},
        "components": {
            "securitySchemes": {"apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}},
            "schemas": schemas,
        },
        "security": [{"apiKey": []}],
        "paths": paths,
    }


def _collect(component: Component, components: dict[str, Component]) -> None:
    known = components.setdefault(component.name, component)
    if known is not component:
        raise ValueError(f"two schemas are named {component.name}")


def _refer(node: Any, components: dict[str, Component]) -> Any:
    """``node`` with each component replaced by its ``$ref``; declarations stay untouched."""
    if isinstance(node, Component):
        _collect(node, components)
        return {"$ref": f"#/components/schemas/{node.name}"}
    if isinstance(node, dict):
        return {key: _refer(value, components) for key, value in node.items()}
    if isinstance(node, list | tuple):
        return [_refer(value, components) for value in node]
    return node


@routes.get("/api/openapi.json")
@operation("This document", {200: answer("OpenAPI 3")}, public=True)
async def openapi(request: web.Request) -> web.Response:
    return web.json_response(request.app[DOCUMENT])
