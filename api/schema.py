"""JSON Schema as the API uses it: named components, documented answers, one check of a value.

The OpenAPI document and the request checks read the same schema dicts (api/body.py), so a
bound the document gives a field is the bound the server enforces. Only the part of JSON
Schema the API's own bodies use is checked here; anything else a schema says is description.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

JSON = "application/json"


@dataclass(frozen=True, eq=False)
class Component:
    """A schema the document lists once under ``components/schemas`` and refers to by
    ``$ref``; api/openapi.py turns each use into the reference and collects the schema."""

    name: str
    schema: dict[str, Any]


def answer(description: str, schema: Any = None) -> dict[str, Any]:
    """An OpenAPI response: a description and, when it has a body, its JSON schema."""
    if schema is None:
        return {"description": description}
    return {"description": description, "content": {JSON: {"schema": schema}}}


def obj(properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties, **extra}


def array(items: Any, **extra: Any) -> dict[str, Any]:
    return {"type": "array", "items": items, **extra}


_TYPES: dict[str, type | tuple[type, ...]] = {
    "string": str,
    "integer": int,
    "number": (int, float),
    "boolean": bool,
    "object": dict,
    "array": list,
}


def conforms(schema: dict[str, Any], value: object) -> bool:
    """Whether ``value`` (parsed JSON) fits ``schema``: ``type`` (a bool is no number),
    ``nullable``, ``enum``, ``minimum`` / ``maximum``, ``minLength`` / ``maxLength``,
    ``pattern``, ``minItems`` / ``maxItems`` / ``items`` and an object's ``required`` and
    ``properties``. NaN and infinities fit no bound."""
    if value is None:
        return bool(schema.get("nullable"))
    kind = schema.get("type")
    if kind is not None:
        if not isinstance(value, _TYPES[kind]):
            return False
        if isinstance(value, bool) and kind != "boolean":
            return False
    if "enum" in schema and value not in schema["enum"]:
        return False
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and not value >= schema["minimum"]:
            return False
        if "maximum" in schema and not value <= schema["maximum"]:
            return False
    if isinstance(value, str):
        if not schema.get("minLength", 0) <= len(value) <= schema.get("maxLength", len(value)):
            return False
        if "pattern" in schema and re.search(schema["pattern"], value) is None:
            return False
    if isinstance(value, list):
        if not schema.get("minItems", 0) <= len(value) <= schema.get("maxItems", len(value)):
            return False
        items = schema.get("items")
        if items is not None and not all(conforms(items, item) for item in value):
            return False
    if isinstance(value, dict):
        if any(name not in value for name in schema.get("required", ())):
            return False
        for name, inner in schema.get("properties", {}).items():
            if name in value and not conforms(inner, value[name]):
                return False
    return True
