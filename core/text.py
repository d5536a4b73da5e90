"""One rule for every string that enters from outside: it must be storable and showable.

A value with a NUL or another control character, or a lone surrogate (``\\ud800``, which
JSON allows and UTF-8 cannot encode), cannot be written to Redis, put in a worker's
environment, logged on one line or shown in a chat. Such a value is refused at the door,
before anything is written, instead of failing half-way through a request.
"""

from __future__ import annotations

import unicodedata
from typing import Any

from core.errors import InvalidInput

# Cc: C0/C1 controls (NUL, ESC, newline, DEL...); Cs: surrogates.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cs"})


def problem(value: str) -> str | None:
    """What makes ``value`` unusable, or None; never echoes the value itself."""
    if value.isascii():
        if value.isprintable():
            return None
        return "contains a control character"
    for char in value:
        category = unicodedata.category(char)
        if category == "Cs":
            return "is not valid Unicode (a lone surrogate)"
        if category in _REFUSED_CATEGORIES:
            return "contains a control character"
    return None


def check(value: str, name: str) -> str:
    """``value`` unchanged, or ``InvalidInput`` naming the field (not its content)."""
    why = problem(value)
    if why is not None:
        raise InvalidInput(f"{name} {why}")
    return value


def plain_json(raw: bytes) -> bool:
    """True when a JSON document's bytes cannot decode to a refused string: printable ASCII
    with no escapes (a strict JSON parser refuses raw control characters in strings), so
    the webhook's hot path can skip :func:`check_tree` for nearly every event."""
    return raw.isascii() and b"\\" not in raw and b"\x7f" not in raw


def check_tree(value: Any, name: str = "body") -> None:
    """Every string of a parsed JSON document, keys included, passes :func:`check`.

    Iterative, so a deeply nested document cannot exhaust the stack here.
    """
    pending: list[tuple[Any, str]] = [(value, name)]
    while pending:
        item, where = pending.pop()
        if isinstance(item, str):
            check(item, where)
        elif isinstance(item, dict):
            for key, child in item.items():
                check(key, f"a field name in {where}")
                pending.append((child, f"{where}.{key[:40]}"))
        elif isinstance(item, list):
            pending.extend((child, f"{where}[{i}]") for i, child in enumerate(item))
